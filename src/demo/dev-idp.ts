/**
 * A real development OpenID Provider (oidc-provider 9), in memory, on loopback http.
 *
 * Used by the integration tests as the proxy's upstream IdP and by the `demo` command. Unlike
 * oidc-provider's devInteractions (which accepts any login), it checks passwords against a small
 * users table, and it auto-grants consent (the proxy has its own consent step).
 */
import { generateKeyPair, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
// @ts-expect-error oidc-provider ships no type declarations; the parts used here are typed below.
import OidcProviderClass from 'oidc-provider';
import { escapeHtml } from '../auth/browser/pages.js';
import { handleInteraction, page, sendHtml } from './dev-idp-interaction.js';

export interface DevUser {
  username: string;
  password: string;
  email: string;
  name: string;
  groups: string[];
  /** Subject identifier; defaults to the username. */
  sub?: string;
  /**
   * For tests, Microsoft Entra ID's "groups overage": the tokens carry no `groups` but, with
   * `endpoint`, `_claim_names`/`_claim_sources` pointing there (a distributed claim, OpenID Connect
   * Core 1.0 §5.6.2), or with `hasgroups`, only `hasgroups: true`.
   */
  groupsOverage?: { endpoint: string } | 'hasgroups';
}

export interface DevClient {
  client_id: string;
  client_secret?: string;
  redirect_uris: string[];
  /** Default: `client_secret_basic` with a secret, `none` without one. */
  token_endpoint_auth_method?: string;
  /** Default: `['authorization_code', 'refresh_token']`. */
  grant_types?: string[];
  post_logout_redirect_uris?: string[];
}

/** Lifetimes in seconds of oidc-provider's artifacts. */
export interface DevIdpTtl {
  AccessToken?: number;
  AuthorizationCode?: number;
  IdToken?: number;
  RefreshToken?: number;
  Interaction?: number;
  Session?: number;
  Grant?: number;
}

export interface DevIdpOptions {
  /** 0 (the default) picks a free port. */
  port?: number;
  /** Default `127.0.0.1`. */
  host?: string;
  /** Default `http://<host>:<port>`. Must have no path (the provider is mounted at `/`). */
  issuerUrl?: string;
  clients: DevClient[];
  /** Default: {@link DEFAULT_DEV_USERS}. */
  users?: DevUser[];
  ttl?: DevIdpTtl;
  /** Issue a new refresh token on every refresh (the old one is then refused). Default true. */
  rotateRefreshTokens?: boolean;
}

/** The subset of oidc-provider's Provider this module uses and exposes. */
export interface OidcProvider {
  readonly issuer: string;
  callback(): (req: IncomingMessage, res: ServerResponse) => void;
  use(middleware: (ctx: KoaContext, next: () => Promise<void>) => Promise<void>): unknown;
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  interactionDetails(req: IncomingMessage, res: ServerResponse): Promise<InteractionDetails>;
  interactionFinished(
    req: IncomingMessage,
    res: ServerResponse,
    result: Record<string, unknown>,
    options?: { mergeWithLastSubmission?: boolean },
  ): Promise<void>;
  Grant: GrantClass;
}

interface KoaContext {
  method: string;
  path: string;
  query: Record<string, string | string[] | undefined>;
}

export interface InteractionDetails {
  uid: string;
  prompt: { name: string; details: Record<string, unknown> };
  params: Record<string, unknown>;
  session?: { accountId?: string };
  grantId?: string;
}

interface Grant {
  addOIDCScope(scope: string): void;
  addOIDCClaims(claims: string[]): void;
  addResourceScope(indicator: string, scope: string): void;
  save(): Promise<string>;
}

interface GrantClass {
  new (init: { accountId: string; clientId: string }): Grant;
  find(id: string): Promise<Grant | undefined>;
}

type ProviderConstructor = new (issuer: string, configuration: Record<string, unknown>) => OidcProvider;
const Provider = OidcProviderClass as ProviderConstructor;

export interface DevIdp {
  /** The issuer identifier (no trailing slash); discovery is at `${issuer}/.well-known/openid-configuration`. */
  issuer: string;
  /** The base URL the server listens on (same as the issuer unless `issuerUrl` says otherwise). */
  url: string;
  users: DevUser[];
  close(): Promise<void>;
  provider: OidcProvider;
}

export const DEFAULT_DEV_USERS: readonly DevUser[] = Object.freeze([
  {
    username: 'alice',
    password: 'alice-password',
    email: 'alice@example.com',
    name: 'Alice Example',
    groups: ['engineering', 'mcp-users'],
  },
  {
    username: 'bob',
    password: 'bob-password',
    email: 'bob@other.org',
    name: 'Bob Other',
    groups: ['sales'],
  },
]);

const DEFAULT_TTL: Required<DevIdpTtl> = {
  AccessToken: 300,
  AuthorizationCode: 60,
  IdToken: 300,
  RefreshToken: 24 * 60 * 60,
  Interaction: 10 * 60,
  Session: 24 * 60 * 60,
  Grant: 24 * 60 * 60,
};

export async function startDevIdp(options: DevIdpOptions): Promise<DevIdp> {
  const host = options.host ?? '127.0.0.1';
  const users = (options.users ?? DEFAULT_DEV_USERS).map((u) => ({ ...u, groups: [...u.groups] }));
  const bySub = new Map(users.map((u) => [u.sub ?? u.username, u]));
  const byUsername = new Map(users.map((u) => [u.username, u]));
  if (bySub.size !== users.length || byUsername.size !== users.length) {
    throw new Error('dev IdP: usernames and subjects must be unique');
  }

  const { privateKey } = await promisify(generateKeyPair)('rsa', { modulusLength: 2048 });
  const signingKey = { ...privateKey.export({ format: 'jwk' }), use: 'sig', alg: 'RS256' };

  let handler: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  const server: Server = createServer((req, res) => {
    if (handler) handler(req, res);
    else {
      res.writeHead(503).end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const close = (): Promise<void> =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });

  try {
    const { port } = server.address() as AddressInfo;
    const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
    const issuer = (options.issuerUrl ?? url).replace(/\/$/, '');
    if (new URL(issuer).pathname !== '/') {
      throw new Error(`dev IdP: issuerUrl must have no path: ${issuer}`);
    }
    const ttl = { ...DEFAULT_TTL, ...options.ttl };
    const rotate = options.rotateRefreshTokens ?? true;

    const provider = new Provider(issuer, {
      clients: options.clients.map((c) => ({
        ...c,
        response_types: ['code'],
        grant_types: c.grant_types ?? ['authorization_code', 'refresh_token'],
        token_endpoint_auth_method:
          c.token_endpoint_auth_method ?? (c.client_secret === undefined ? 'none' : 'client_secret_basic'),
      })),
      jwks: { keys: [signingKey] },
      cookies: {
        keys: [randomBytes(32).toString('base64url'), randomBytes(32).toString('base64url')],
      },
      findAccount: (_ctx: unknown, sub: string) => {
        const user = bySub.get(sub);
        if (!user) return undefined;
        return {
          accountId: sub,
          claims: () => ({
            sub,
            email: user.email,
            email_verified: true,
            name: user.name,
            preferred_username: user.username,
            ...groupClaims(user),
          }),
        };
      },
      claims: {
        openid: ['sub'],
        email: ['email', 'email_verified'],
        profile: ['name', 'preferred_username'],
        groups: ['groups', 'hasgroups'],
      },
      scopes: ['openid', 'offline_access'],
      responseTypes: ['code'],
      // Scope-requested claims go into the ID token too, as many real IdPs do.
      conformIdTokenClaims: false,
      pkce: { required: () => true },
      rotateRefreshToken: () => rotate,
      // Loopback development provider: any origin may call it.
      clientBasedCORS: () => true,
      ttl,
      features: {
        devInteractions: { enabled: false },
        userinfo: { enabled: true },
        rpInitiatedLogout: {
          enabled: true,
          logoutSource: (ctx: { body: string }, form: string) => {
            ctx.body = page(
              'Sign out',
              `<h1>Sign out of the dev IdP?</h1>${form}` +
                '<button type="submit" form="op.logoutForm" name="logout" value="yes" id="logout">Yes, sign me out</button>',
            );
          },
          postLogoutSuccessSource: (ctx: { body: string }) => {
            ctx.body = page(
              'Signed out',
              '<h1>Signed out</h1><p>You have been signed out of the dev IdP.</p>',
            );
          },
        },
      },
    });

    // OIDC Core grants offline_access only with prompt=consent, which most relying parties (and
    // most real IdPs) do not insist on. Our consent is automatic, so asking for it costs nothing:
    // a request for offline_access without a prompt gets prompt=consent, and a refresh token.
    // (GET authorization requests only; POST and PAR keep the OIDC Core rule.)
    provider.use(async (ctx, next) => {
      if (ctx.method === 'GET' && ctx.path === '/auth') {
        const { scope, prompt } = ctx.query;
        if (
          typeof scope === 'string' &&
          scope.split(' ').includes('offline_access') &&
          prompt === undefined
        ) {
          ctx.query = { ...ctx.query, prompt: 'consent' };
        }
      }
      await next();
    });

    // Errors the provider answers with a 500 would otherwise leave no trace.
    provider.on('server_error', (_ctx: unknown, err: unknown) => {
      process.stderr.write(
        `dev IdP: server error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
      );
    });

    const providerCallback = provider.callback();
    handler = (req, res) => {
      const path = (req.url ?? '/').split('?')[0] ?? '/';
      const match = /^\/interaction\/([^/]+)(\/login)?$/.exec(path);
      if (!match) {
        providerCallback(req, res);
        return;
      }
      const uid = match[1]!;
      const action = match[2] ? 'login' : 'show';
      handleInteraction(provider, byUsername, req, res, uid, action).catch((err: unknown) => {
        if (res.headersSent) {
          res.destroy();
          return;
        }
        const expired = err instanceof Error && err.name === 'SessionNotFound';
        if (!expired) process.stderr.write(`dev IdP: interaction error: ${String(err)}\n`);
        sendHtml(
          res,
          expired ? 400 : 500,
          page(
            'Error',
            `<h1>${expired ? 'Login session expired' : 'Error'}</h1><p>${escapeHtml(
              expired
                ? 'Start the sign-in again from the application.'
                : 'The sign-in could not be completed.',
            )}</p>`,
          ),
        );
      });
    };

    return { issuer, url, users, close, provider };
  } catch (err) {
    await close();
    throw err;
  }
}

function groupClaims(user: DevUser): Record<string, unknown> {
  const overage = user.groupsOverage;
  if (overage === undefined) return { groups: [...user.groups] };
  if (overage === 'hasgroups') return { hasgroups: true };
  return { _claim_names: { groups: 'src1' }, _claim_sources: { src1: { endpoint: overage.endpoint } } };
}
