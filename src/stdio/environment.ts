/** Always passed to a child (when set in the proxy's environment). */
export const BASE_ENV_NAMES: readonly string[] = ['PATH', 'HOME', 'LANG', 'TZ', 'TMPDIR'];

/** Set only from the signed-in user, never taken from the proxy's own environment. */
const IDENTITY_ENV_NAMES: readonly string[] = ['MCP_USER', 'MCP_USER_EMAIL', 'MCP_USER_GROUPS'];

/**
 * Below this length a secret is only compared for equality: a short value (`abc`, `1`) would
 * turn up inside unrelated values such as PATH and withhold them for nothing.
 */
const SECRET_CONTAINS_MIN_LENGTH = 8;

export interface ChildIdentity {
  user: string;
  email?: string;
  groups: string[];
}

/**
 * A child's whole environment: BASE_ENV_NAMES and the names in `allowed` (STDIO_ENV) taken from
 * `parent`, then MCP_USER / MCP_USER_EMAIL / MCP_USER_GROUPS (comma-separated) from `identity`
 * when given. A variable whose value contains one of `secretValues` (the proxy's secrets:
 * SESSION_SECRET, OIDC_CLIENT_SECRET, ADMIN_TOKEN, the Redis password, tracing header values)
 * is left out and reported in `withheld` — even a base name — so no secret reaches a child
 * by name or by value. Secret values shorter than 8 characters are ignored for the contains-check
 * but still compared for equality.
 *
 * Identity values come from the identity provider: control characters (NUL included, which
 * spawn refuses) are removed, and a group whose name contains a comma is left out, because in
 * the comma-separated list it would read as other groups the user may not have.
 */
export function childEnvironment(input: {
  parent: NodeJS.ProcessEnv;
  allowed: readonly string[];
  secretValues: readonly string[];
  identity?: ChildIdentity;
}): { env: Record<string, string>; withheld: string[] } {
  const env: Record<string, string> = {};
  const withheld: string[] = [];
  const names = new Set([...BASE_ENV_NAMES, ...input.allowed]);
  for (const name of names) {
    if (IDENTITY_ENV_NAMES.includes(name)) continue;
    const value = input.parent[name];
    if (value === undefined) continue;
    if (revealsSecret(value, input.secretValues)) withheld.push(name);
    else env[name] = value;
  }
  if (input.identity) Object.assign(env, identityEnvironment(input.identity));
  return { env, withheld };
}

function revealsSecret(value: string, secretValues: readonly string[]): boolean {
  return secretValues.some(
    (secret) =>
      secret !== '' &&
      (value === secret || (secret.length >= SECRET_CONTAINS_MIN_LENGTH && value.includes(secret))),
  );
}

function identityEnvironment(identity: ChildIdentity): Record<string, string> {
  const env: Record<string, string> = { MCP_USER: withoutControlCharacters(identity.user) };
  if (identity.email !== undefined) env.MCP_USER_EMAIL = withoutControlCharacters(identity.email);
  env.MCP_USER_GROUPS = identity.groups
    .map(withoutControlCharacters)
    .filter((group) => group !== '' && !group.includes(','))
    .join(',');
  return env;
}

/** C0 controls (NUL, newline, escape, ...), DEL and the C1 controls. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f]/g;

function withoutControlCharacters(value: string): string {
  return value.replace(CONTROL_CHARACTERS, '');
}
