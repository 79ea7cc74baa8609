// Placeholder until the process layer lands.
export interface ChildIdentity {
  user: string;
  email?: string;
  groups: string[];
}
export function childEnvironment(_input: {
  parent: NodeJS.ProcessEnv;
  allowed: readonly string[];
  secretValues: readonly string[];
  identity?: ChildIdentity;
}): { env: Record<string, string>; withheld: string[] } {
  return { env: {}, withheld: [] };
}
