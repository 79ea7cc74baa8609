import type { Logger } from '../../observability/logger.js';
import { type TraceSpan, traceCall } from '../../observability/spans.js';
import { LoginRejectedError, ProviderUnavailableError } from './provider.js';

/**
 * Microsoft Entra ID's "groups overage": a user in more groups than fit in a token (200 in a JWT)
 * gets no `groups` claim. The ID token says so instead, with `_claim_names: {"groups": "src1"}` and
 * `_claim_sources` (a distributed claim, OpenID Connect Core 1.0 §5.6.2), or in some flows with
 * `hasgroups: true`; the application is then to read the memberships from Microsoft Graph:
 * https://learn.microsoft.com/entra/identity-platform/id-token-claims-reference#groups-overage-claim
 *
 * Microsoft's guidance names the call: "List a user's memberships (direct and transitive)",
 * `GET /me/transitiveMemberOf` (transitive like the `groups` claim, paged with `@odata.nextLink`,
 * up to 999 a page), and warns against the `_claim_sources` endpoint, which points at the retired
 * Azure AD Graph:
 * https://learn.microsoft.com/security/zero-trust/develop/configure-tokens-group-claims-app-roles#group-overages
 * https://learn.microsoft.com/graph/api/user-list-transitivememberof
 * The endpoint a token names is never fetched anyway: the user's access token goes only to the
 * configured MICROSOFT_GRAPH_URL (a URL taken from a token would let whoever shaped the token
 * choose where the token is sent).
 *
 * Not `getMemberObjects` (POST, one answer of at most 11,000 ids, which Microsoft says to replace
 * by transitiveMemberOf beyond that) and not the `/microsoft.graph.group` cast: the cast is an
 * "advanced query" (ConsistencyLevel: eventual), answered from an index that may lag membership
 * changes, so a user just removed from a group could still pass. The plain query is consistent;
 * its directory roles and administrative units are dropped here by their `@odata.type`.
 *
 * Permission: the delegated User.Read is the least privilege for the signed-in user's memberships
 * (groups then come with their id only, which is all this needs); GroupMember.Read.All,
 * Group.Read.All or Directory.Read.All also do.
 */

/** Largest page Graph serves for this list. */
const PAGE_SIZE = 999;
/** Pages read at most: ~10,000 memberships, about Graph's own limit for such lists. */
const MAX_PAGES = 10;
/** Each call to Graph. */
const REQUEST_TIMEOUT_MS = 10_000;
/** The whole lookup, waits for Retry-After included. */
const DEADLINE_MS = 20_000;
/** Longest Retry-After (429/503) waited for, once per lookup; longer ones fail the login at once. */
const MAX_RETRY_AFTER_MS = 5_000;

const GROUP_TYPE = '#microsoft.graph.group';
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);

export interface EntraGroupsOptions {
  /** MICROSOFT_GRAPH_URL: https://graph.microsoft.com, or a national cloud's Graph. */
  graphUrl: URL;
  logger: Logger;
}

interface GraphPage {
  value?: unknown;
  '@odata.nextLink'?: unknown;
}

interface GraphError {
  status: number;
  code: string;
  message: string;
  retryAfterMs: number | undefined;
}

/**
 * True when the claims carry no `groups` but say the user has some (Entra's overage indicators):
 * `_claim_names` naming `groups`, or `hasgroups: true`.
 */
export function hasGroupsOverage(claims: Record<string, unknown>): boolean {
  if (claims.groups !== undefined) return false;
  if (claims.hasgroups === true || claims.hasgroups === 'true') return true;
  const names = claims._claim_names;
  return typeof names === 'object' && names !== null && Object.hasOwn(names, 'groups');
}

/** Reads a signed-in user's groups from Microsoft Graph, bounded in time, pages and size. */
export class EntraGroups {
  private readonly base: string;
  private readonly origin: string;
  private readonly spanAttributes = { 'mcp_oidc_proxy.idp': 'microsoft' };

  constructor(private readonly options: EntraGroupsOptions) {
    const { graphUrl } = options;
    // The configuration refuses plain http beyond loopback; kept here too, since tokens go there.
    if (
      graphUrl.protocol !== 'https:' &&
      !(graphUrl.protocol === 'http:' && LOOPBACK.has(graphUrl.host.replace(/:\d+$/, '')))
    ) {
      throw new Error(`MICROSOFT_GRAPH_URL must be https: ${graphUrl.href}`);
    }
    this.base = `${graphUrl.origin}${graphUrl.pathname.replace(/\/+$/, '')}`;
    this.origin = graphUrl.origin;
  }

  /**
   * The object ids of the groups the access token's user belongs to, directly or through other
   * groups. Fails (never answers "no groups") when Graph refuses, fails, is too slow or the list
   * is longer than the bound: LoginRejectedError for what configuration must fix,
   * ProviderUnavailableError for an outage. Each failure is logged with its cause.
   */
  async groups(accessToken: string, trace: TraceSpan): Promise<string[]> {
    const deadline = Date.now() + DEADLINE_MS;
    const groups = new Set<string>();
    let untyped = 0;
    let retried = false;
    let next: URL | undefined = new URL(`${this.base}/v1.0/me/transitiveMemberOf`);
    next.search = `$select=id&$top=${PAGE_SIZE}`;
    let pages = 0;
    while (next) {
      if (pages === MAX_PAGES) {
        throw this.fail(
          new LoginRejectedError(
            `the user is a member of more groups than the proxy reads from Microsoft Graph (${MAX_PAGES} pages of up to ${PAGE_SIZE}); have the groups claim list only the groups assigned to the application, or use app roles`,
            'too_many_groups',
            { userMessage: GROUPS_UNREADABLE },
          ),
        );
      }
      const answer = await this.get(next, accessToken, deadline, trace);
      if ('error' in answer) {
        const { error } = answer;
        const waitMs = error.retryAfterMs;
        // Throttling (429, or 503 with Retry-After): Graph's guidance is to wait as told and retry.
        // Once, and only for a short wait that fits the deadline: a login cannot wait minutes.
        if (
          (error.status === 429 || error.status === 503) &&
          !retried &&
          waitMs !== undefined &&
          waitMs <= MAX_RETRY_AFTER_MS &&
          Date.now() + waitMs < deadline
        ) {
          retried = true;
          this.options.logger.warn(
            { status: error.status, retry_after_ms: waitMs },
            'Microsoft Graph throttled the group lookup; retrying once after Retry-After',
          );
          await new Promise((resolve) => setTimeout(resolve, waitMs));
          continue;
        }
        throw this.fail(this.translate(error));
      }
      pages++;
      const { body } = answer;
      if (!Array.isArray(body.value)) throw this.fail(invalid('a page without a `value` list'));
      if (body.value.length > PAGE_SIZE) throw this.fail(invalid(`a page of more than ${PAGE_SIZE} entries`));
      for (const item of body.value as unknown[]) {
        const { id, '@odata.type': type } = (item ?? {}) as { id?: unknown; '@odata.type'?: unknown };
        if (typeof id !== 'string' || id === '') throw this.fail(invalid('a membership without an id'));
        if (type === GROUP_TYPE) groups.add(id);
        else if (type === undefined) untyped++;
        // Directory roles and administrative units are memberships, not groups.
      }
      next = this.nextPage(body['@odata.nextLink']);
    }
    if (untyped > 0) {
      this.options.logger.warn(
        { untyped },
        'Microsoft Graph listed memberships without @odata.type; they are not counted as groups',
      );
    }
    this.options.logger.debug(
      { groups: groups.size, pages },
      'groups read from Microsoft Graph (groups overage)',
    );
    return [...groups];
  }

  /** One GET; a Graph error is returned (for the retry decision), not thrown. */
  private async get(
    url: URL,
    accessToken: string,
    deadline: number,
    trace: TraceSpan,
  ): Promise<{ body: GraphPage } | { error: GraphError }> {
    const left = deadline - Date.now();
    if (left <= 0) {
      throw this.fail(
        new ProviderUnavailableError(
          `Microsoft Graph did not complete the group lookup within ${Math.round(DEADLINE_MS / 1000)} s`,
        ),
      );
    }
    const timeoutMs = Math.min(REQUEST_TIMEOUT_MS, left);
    let res: Response;
    let body: unknown;
    try {
      ({ res, body } = await traceCall(
        trace,
        'idp.api',
        url,
        async () => {
          const signal = AbortSignal.timeout(timeoutMs);
          const response = await fetch(url, {
            headers: { authorization: `Bearer ${accessToken}`, accept: 'application/json' },
            redirect: 'error',
            signal,
          });
          // The body is read under the same timeout: a stalled body is as bad as no answer.
          const text = await response.text();
          let parsed: unknown;
          try {
            parsed = text === '' ? undefined : JSON.parse(text);
          } catch {
            parsed = undefined;
          }
          return { res: response, body: parsed };
        },
        { ...this.spanAttributes, 'url.path': url.pathname },
      ));
    } catch (err) {
      const e = err as { name?: string };
      const why =
        e.name === 'TimeoutError' || e.name === 'AbortError'
          ? `no answer within ${Math.round(timeoutMs / 1000)} s`
          : (err as Error).message;
      throw this.fail(
        new ProviderUnavailableError(`Microsoft Graph could not be reached for the group lookup (${why})`, {
          cause: err,
        }),
      );
    }
    if (res.ok) {
      if (typeof body !== 'object' || body === null)
        throw this.fail(invalid('a page that is not a JSON object'));
      return { body: body as GraphPage };
    }
    const detail = (body as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
    return {
      error: {
        status: res.status,
        code: typeof detail?.code === 'string' ? detail.code.slice(0, 100) : '',
        message: typeof detail?.message === 'string' ? detail.message.slice(0, 200) : '',
        retryAfterMs: retryAfterMs(res.headers.get('retry-after')),
      },
    };
  }

  /** What a Graph error means for the login. */
  private translate(error: GraphError): Error {
    const said = `${error.status}${error.code ? ` ${error.code}` : ''}${error.message ? `: ${error.message}` : ''}`;
    if (error.status === 401) {
      return new LoginRejectedError(
        `Microsoft Graph refused the access token for the group lookup (${said}): the access token must be one for Microsoft Graph, so OIDC_SCOPES must not ask for another API's scope`,
        'graph_token_rejected',
        { userMessage: GROUPS_UNREADABLE },
      );
    }
    if (error.status === 403) {
      return new LoginRejectedError(
        `Microsoft Graph refused the group lookup (${said}): grant the app registration the delegated Microsoft Graph permission User.Read (or GroupMember.Read.All) with consent for the tenant`,
        'insufficient_scope',
        { userMessage: GROUPS_UNREADABLE },
      );
    }
    if (error.status === 429 || error.status >= 500) {
      const wait =
        error.retryAfterMs !== undefined ? `; Retry-After ${Math.ceil(error.retryAfterMs / 1000)} s` : '';
      return new ProviderUnavailableError(
        `Microsoft Graph ${error.status === 429 ? 'throttled' : 'failed'} the group lookup (${said}${wait})`,
      );
    }
    return new LoginRejectedError(`Microsoft Graph refused the group lookup (${said})`, 'graph_error', {
      userMessage: GROUPS_UNREADABLE,
    });
  }

  /**
   * The `@odata.nextLink` to follow: only on the configured Graph (it is sent the token); any
   * other value fails the lookup rather than cut the list short.
   */
  private nextPage(link: unknown): URL | undefined {
    if (link === undefined || link === null) return undefined;
    let next: URL | undefined;
    try {
      next = typeof link === 'string' ? new URL(link) : undefined;
    } catch {
      next = undefined;
    }
    if (
      !next ||
      next.origin !== this.origin ||
      !`${next.origin}${next.pathname}`.startsWith(`${this.base}/`)
    ) {
      throw this.fail(invalid('an @odata.nextLink outside MICROSOFT_GRAPH_URL'));
    }
    return next;
  }

  /**
   * Logs the cause, whatever the caller logs (a login callback that finds the provider unavailable
   * records only that), and passes the error on.
   */
  private fail(err: Error): Error {
    this.options.logger.warn({ err: err.message }, 'group lookup in Microsoft Graph failed (groups overage)');
    return err;
  }
}

/** What the sign-in page says: the cause is in the log, for the administrator. */
const GROUPS_UNREADABLE =
  'Your group memberships could not be read from Microsoft Graph, so access cannot be decided. Ask your administrator to check the proxy log.';

function invalid(what: string): LoginRejectedError {
  return new LoginRejectedError(
    `Microsoft Graph answered the group lookup with ${what}`,
    'invalid_response',
    { userMessage: GROUPS_UNREADABLE },
  );
}

/** Retry-After in seconds (Graph's form) or as an HTTP date. */
function retryAfterMs(value: string | null): number | undefined {
  if (value === null) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}
