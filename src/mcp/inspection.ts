import type { IncomingMessage } from 'node:http';
import { BodyError, readBody } from '../http/body.js';
import type { ErrorAnswer } from '../http/errors.js';
import type { TraceSpan } from '../observability/spans.js';
import type { ResponseEditor } from '../proxy/message-editor.js';
import type { McpAccessPolicy, McpCaller, McpItemKind } from './access-policy.js';
import type { McpCall, McpCallAudit, McpCallCaller, McpCallOutcome } from './call-audit.js';
import { inspectMcpBody, type McpMessage } from './request.js';

/**
 * The MCP inspection stage: a POST on the MCP path is read (bounded by MCP_MAX_BODY_BYTES),
 * parsed strictly (request.ts), and judged against the mcp_access rules before anything reaches
 * the backend. A call the user may not make is answered here; a list the user may see only in
 * part is forwarded with an editor that filters the response; the backend gets exactly the bytes
 * that were judged.
 */

/** The JSON-RPC error code of a call the rules refuse (implementation-defined range, JSON-RPC 2.0 §5.1). */
export const ACCESS_DENIED_CODE = -32003;

/** Methods that use one item, and which kind of item their `name` or `uri` names. */
const ITEM_METHODS: Readonly<Record<string, McpItemKind>> = {
  'tools/call': 'tool',
  'prompts/get': 'prompt',
  'resources/read': 'resource',
  'resources/subscribe': 'resource',
};

/** Methods that list items, where their result holds them, and which field names each one. */
interface ListMethod {
  kind: McpItemKind;
  field: string;
  key: string;
}

const LIST_METHODS: Readonly<Record<string, ListMethod>> = {
  'tools/list': { kind: 'tool', field: 'tools', key: 'name' },
  'prompts/list': { kind: 'prompt', field: 'prompts', key: 'name' },
  'resources/list': { kind: 'resource', field: 'resources', key: 'uri' },
  'resources/templates/list': { kind: 'resource', field: 'resourceTemplates', key: 'uriTemplate' },
};

const ITEM_LABELS: Readonly<Record<McpItemKind, string>> = {
  tool: 'Tool',
  prompt: 'Prompt',
  resource: 'Resource',
};

export type Inspection =
  /** Forward exactly `body`; `editor`, when set, filters the list results in the response. */
  | { kind: 'forward'; body: Buffer; editor?: ResponseEditor }
  /** A body that cannot be judged: too large, not JSON, another encoding. Nothing is forwarded. */
  | { kind: 'refuse'; answer: ErrorAnswer }
  /** Answered here with JSON-RPC: refused calls (HTTP 200), or a mismatch the spec answers so (400). */
  | { kind: 'reply'; status: number; payload: unknown }
  /** A rule allows the user but needs scopes the token lacks: the step-up challenge. */
  | { kind: 'step_up'; required: string[]; description: string };

/** The audit trail and who is calling, for the `mcp_call` events. */
export interface InspectionAudit {
  calls: McpCallAudit;
  caller: McpCallCaller;
}

export async function inspectMcpRequest(
  req: IncomingMessage,
  policy: McpAccessPolicy,
  caller: McpCaller | undefined,
  maxBodyBytes: number,
  audit?: InspectionAudit,
  trace?: TraceSpan,
): Promise<Inspection> {
  // Node keeps the first Content-Type and the backend may read another: judged is only what is one.
  if (headerCount(req.rawHeaders, 'content-type') > 1) {
    req.resume();
    return {
      kind: 'refuse',
      answer: {
        status: 400,
        error: 'invalid_request',
        description: 'Content-Type is sent more than once; send it once, as application/json.',
        headers: [['connection', 'close']],
      },
    };
  }
  let body: Buffer;
  try {
    body = await readBody(req, maxBodyBytes);
  } catch (error) {
    if (!(error instanceof BodyError)) throw error;
    const tooLarge = error.reason === 'too_large';
    return {
      kind: 'refuse',
      answer: {
        status: tooLarge ? 413 : 400,
        error: tooLarge ? 'request_too_large' : 'invalid_request',
        description: tooLarge
          ? `The MCP request body is larger than MCP_MAX_BODY_BYTES (${maxBodyBytes} bytes); nothing was forwarded.`
          : 'The MCP request body could not be read.',
        // The unread rest must not be taken for the next request on this connection.
        headers: [['connection', 'close']],
      },
    };
  }
  const verdict = inspectMcpBody(body, req.headers, maxBodyBytes);
  if (!verdict.ok) {
    if (verdict.jsonrpc) {
      const { code, message, id } = verdict.jsonrpc;
      return { kind: 'reply', status: verdict.status, payload: jsonRpcError(id, code, message) };
    }
    return {
      kind: 'refuse',
      answer: { status: verdict.status, error: verdict.error, description: verdict.description },
    };
  }

  const first = verdict.messages.find((m) => m.method !== undefined);
  if (trace?.recording && first) {
    trace.setAttributes({
      'mcp.method': first.method,
      'mcp.tool.name': first.method === 'tools/call' ? first.name : undefined,
    });
  }
  const refused: Array<{ message: McpMessage; text: string }> = [];
  const required = new Set<string>();
  const lists = new Map<string, ListMethod>();
  const calls: Array<{ message: McpMessage; call: McpCall }> = [];
  for (const message of verdict.messages) {
    if (message.kind !== 'request' || message.method === undefined) continue;
    const list = LIST_METHODS[message.method];
    if (list) lists.set(idKey(message.id), list);
    const kind = ITEM_METHODS[message.method];
    const name = message.name ?? message.uri;
    if (kind === undefined || name === undefined) continue;
    const call = { method: message.method, name, id: message.id, argumentBytes: message.argumentBytes };
    const decision = policy.decide(kind, name, caller);
    if (decision.allowed) calls.push({ message, call });
    else if (decision.reason === 'scope') for (const scope of decision.required) required.add(scope);
    else {
      refused.push({ message, text: `${ITEM_LABELS[kind]} "${name}" is not allowed for this user.` });
      audit?.calls.record(call, audit.caller, 'denied');
    }
  }

  if (refused.length > 0) {
    // A batch holding a refused call is refused whole: none of it reaches the backend.
    const replies = verdict.messages
      .filter((m) => m.kind === 'request')
      .map((m) => {
        const own = refused.find((r) => r.message === m);
        const text = own?.text ?? 'Not forwarded: the batch holds a call this user may not make.';
        return jsonRpcError(m.id ?? null, ACCESS_DENIED_CODE, text);
      });
    return { kind: 'reply', status: 200, payload: verdict.batch ? replies : replies[0] };
  }
  if (required.size > 0) {
    return {
      kind: 'step_up',
      required: [...required],
      description: 'This call needs a scope the access token does not carry; authorize again for it.',
    };
  }
  if (lists.size === 0 && (calls.length === 0 || audit === undefined)) return { kind: 'forward', body };
  const pending = new Map<string, (outcome: McpCallOutcome) => void>();
  if (audit)
    for (const { message, call } of calls)
      pending.set(idKey(message.id), audit.calls.start(call, audit.caller));
  return { kind: 'forward', body, editor: responseWatcher(policy, caller, lists, pending, audit?.calls) };
}

/**
 * Watches the response: list results lose the items the user may not use (nextCursor and the
 * rest kept), and each forwarded call's outcome and duration go to the audit trail.
 */
function responseWatcher(
  policy: McpAccessPolicy,
  caller: McpCaller | undefined,
  lists: ReadonlyMap<string, ListMethod>,
  pending: Map<string, (outcome: McpCallOutcome) => void>,
  calls: McpCallAudit | undefined,
): ResponseEditor {
  return {
    message(message) {
      if (!('id' in message)) return undefined;
      const key = idKey(message.id as McpMessage['id']);
      const finish = pending.get(key);
      if (finish) {
        pending.delete(key);
        const result = message.result as { isError?: unknown } | undefined;
        finish('error' in message ? 'error' : result?.isError === true ? 'tool_error' : 'ok');
      }
      const list = lists.get(key);
      const result = message.result as Record<string, unknown> | undefined;
      if (list === undefined || typeof result !== 'object' || result === null) return undefined;
      const items = result[list.field];
      if (!Array.isArray(items)) return undefined;
      const kept = items.filter((item: unknown) => {
        const name = (item as Record<string, unknown> | null)?.[list.key];
        if (typeof name === 'string') calls?.noteListed(name);
        // An entry without a usable name cannot be judged, so it is not shown.
        return typeof name === 'string' && policy.visible(list.kind, name, caller);
      });
      if (kept.length === items.length) return undefined;
      return { ...message, result: { ...result, [list.field]: kept } };
    },
    end() {
      // A call whose response never came (the backend failed, the client left) ended in error.
      for (const finish of pending.values()) finish('error');
      pending.clear();
    },
  };
}

/** How many times a header (lower-case name) appears in the request, whatever its spelling. */
function headerCount(rawHeaders: readonly string[], name: string): number {
  let count = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) if (rawHeaders[i]?.toLowerCase() === name) count++;
  return count;
}

/** A JSON-RPC id as a map key: `1` and `"1"` are different ids. */
function idKey(id: McpMessage['id']): string {
  return `${typeof id}:${String(id)}`;
}

function jsonRpcError(id: string | number | null, code: number, message: string): unknown {
  return { jsonrpc: '2.0', id, error: { code, message } };
}
