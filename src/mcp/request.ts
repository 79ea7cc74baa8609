// Interface placeholder: the strict parser lands separately.
import type { IncomingHttpHeaders } from 'node:http';
export interface McpMessage {
  id?: string | number | null;
  method?: string;
  name?: string;
  uri?: string;
  argumentBytes?: number;
  kind: 'request' | 'notification' | 'response';
}
export type McpBodyVerdict =
  | { ok: true; messages: McpMessage[]; batch: boolean }
  | {
      ok: false;
      status: 400 | 413 | 415;
      error: string;
      description: string;
      jsonrpc?: { code: number; message: string; id: string | number | null };
    };
export declare function inspectMcpBody(
  body: Buffer,
  headers: IncomingHttpHeaders,
  limit: number,
): McpBodyVerdict;
