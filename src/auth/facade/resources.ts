import type { Config, ServerConfig } from '../../config/types.js';
import type { McpAccessPolicy } from '../../mcp/access-policy.js';
import { evaluatePolicy, type PolicyConfig, type PolicySubject } from '../policy/policy.js';
import { protectedResourceMetadataUrl, resourceUrl } from './metadata.js';

/**
 * One MCP server as the authorization server sees it: a protected resource (RFC 8707, RFC 9728)
 * with its own audience, metadata, challenge, allow-lists and step-up scopes.
 */
export interface ProtectedResource {
  /** The server's name (`servers[].name`, `default` for the single target). */
  name: string;
  /** Its public path (MCP_PATH, or `servers[].path`). */
  path: string;
  /** `PUBLIC_URL + path`: the `aud` of every token minted for it. */
  url: string;
  /** Where its metadata lives, named in its 401 challenges. */
  metadataUrl: string;
  /** Its own allow-lists, applied on top of ALLOWED_* (empty lists: no further restriction). */
  policy: PolicyConfig;
  access: McpAccessPolicy | undefined;
}

/**
 * The protected resources of a configuration, the first one the default (a token request
 * without `resource`, the root metadata document). Rebuilt only when a reload replaced
 * `config.servers`, so every request may ask.
 */
export class ProtectedResources {
  private built: { servers: readonly ServerConfig[]; list: ProtectedResource[] } | undefined;

  constructor(private readonly config: Config) {}

  all(): readonly ProtectedResource[] {
    const { servers } = this.config;
    if (this.built?.servers !== servers) {
      const { publicUrl } = this.config.server;
      this.built = {
        servers,
        list: servers.map((server) => ({
          name: server.name,
          path: server.path,
          url: resourceUrl(publicUrl, server.path),
          metadataUrl: protectedResourceMetadataUrl(publicUrl, server.path),
          policy: server.policy,
          access: server.access,
        })),
      };
    }
    return this.built.list;
  }

  /** The default resource: the first server. */
  first(): ProtectedResource {
    return this.all()[0] as ProtectedResource;
  }

  /** The resource whose URL is exactly `url`, if any. */
  byUrl(url: string): ProtectedResource | undefined {
    return this.all().find((resource) => resource.url === url);
  }

  /** The resource named `name` (a request's server), if it still exists. */
  byName(name: string): ProtectedResource | undefined {
    return this.all().find((resource) => resource.name === name);
  }
}

/**
 * A server's own allow-lists, after ALLOWED_* let the user in: the reason names the server and
 * its keys, so an operator can tell this refusal from the global one.
 */
export function serverPolicyRefusal(resource: ProtectedResource, subject: PolicySubject): string | undefined {
  if (evaluatePolicy(subject, resource.policy).allowed) return undefined;
  return `The account may not use the MCP server "${resource.name}" (its allowed_emails, allowed_domains, allowed_groups).`;
}
