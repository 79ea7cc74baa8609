// Interface placeholder: the rule engine lands separately.
export type McpItemKind = 'tool' | 'prompt' | 'resource';
export interface McpCaller {
  email?: string;
  emailVerified?: boolean;
  groups: readonly string[];
  scopes?: readonly string[];
}
export type McpAccessDecision =
  | { allowed: true }
  | { allowed: false; reason: 'denied'; rule: number | 'default' }
  | { allowed: false; reason: 'scope'; required: string[] };
export declare class McpAccessPolicy {
  decide(kind: McpItemKind, name: string, caller: McpCaller | undefined): McpAccessDecision;
  visible(kind: McpItemKind, name: string, caller: McpCaller | undefined): boolean;
  readonly scopes: readonly string[];
  grantableScopes(caller: Omit<McpCaller, 'scopes'>): string[];
  readonly usesIdentity: boolean;
}
