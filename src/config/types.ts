import type { McpAccessPolicy } from '../mcp/access-policy.js';
import type { ListenAddress } from './checks.js';

/** An MCP client configured by the operator (MCP_CLIENTS). */
export interface PreRegisteredClientConfig {
  clientId: string;
  clientSecret?: string;
  redirectUris: string[];
  name?: string;
}

/** How stdio children are shared: one per MCP session, or one per user for all their sessions. */
export type StdioIsolation = 'session' | 'user';

/** Where one server's requests go: an HTTP backend, or a stdio MCP server the proxy runs. */
export type ServerTarget =
  | { kind: 'url'; url: URL }
  | {
      kind: 'command';
      /** argv: the program and its arguments, run without a shell. */
      command: string[];
      isolation: StdioIsolation;
    };

/** One MCP server behind the proxy: its own protected resource (`PUBLIC_URL + path`). */
export interface ServerConfig {
  /** Unique; the `server` label in metrics, `checks.servers.<name>` in /health. */
  name: string;
  /** Public path of its MCP endpoint; the server owns this path and every path below it. */
  path: string;
  target: ServerTarget;
  /** Allow-lists on top of ALLOWED_*; an empty list adds no restriction. */
  policy: { emails: string[]; domains: string[]; groups: string[] };
  /** This server's `mcp_access` rules; undefined = none configured (everything allowed). */
  access: McpAccessPolicy | undefined;
}

export type ProviderName = 'generic' | 'auth0' | 'google' | 'microsoft' | 'keycloak' | 'github';

/** Where a setting's value came from: `flag`, `env`, `env ALIAS`, `file PATH`, `default`. */
export type Source = string;

export interface Config {
  server: {
    host: string;
    port: number;
    /** Origin only; issuer, resource and redirect URLs derive from it. */
    publicUrl: URL;
    /** Normalised origins (scheme://host[:port]). */
    allowedOrigins: string[];
    trustedProxies: string[];
    shutdownTimeoutMs: number;
    /** Worker processes (SERVER_WORKERS, `auto` resolved); 1 = this process serves, no primary. */
    workers: number;
  };
  target: {
    /** Origin plus an optional path prefix. */
    url: URL;
    /** Extra CA certificates (PEM) for an https target. */
    ca: string | undefined;
    connectTimeoutMs: number;
    headersTimeoutMs: number;
    idleTimeoutMs: number;
    retries: number;
    breakerThreshold: number;
    breakerResetMs: number;
    sseKeepaliveMs: number;
  };
  /** MCP_PATH: the one server's path in the single-target case. */
  mcpPath: string;
  /**
   * The MCP servers behind the proxy, never empty. From YAML `servers:`, or else one server
   * named `default` built from PROXY_TARGET_URL (or host/port) / PROXY_TARGET_COMMAND, MCP_PATH
   * and MCP_ACCESS.
   */
  servers: ServerConfig[];
  /**
   * True without `servers:`: the one server then also takes every path the proxy does not own
   * (a backend's web pages beside its MCP endpoint), as before several servers existed. With
   * `servers:`, a path no server owns gets 404.
   */
  singleTarget: boolean;
  /** How stdio servers run (STDIO_*). */
  stdio: {
    /** STDIO_ISOLATION: the default of every command server (a `servers:` entry may override it). */
    isolation: StdioIsolation;
    /** STDIO_ENV: names of the proxy's environment variables a child also gets. */
    env: string[];
    /** STDIO_MAX_PROCESSES: children alive at once, all servers together. */
    maxProcesses: number;
    /** STDIO_IDLE_TIMEOUT: a child with no request in flight and no open stream is ended after this. */
    idleTimeoutMs: number;
  };
  /** What the proxy reads of the JSON-RPC it forwards on the MCP path. */
  mcp: {
    /** MCP_ACCESS: the rules of the single-target server (servers[0].access is the same object). */
    access: McpAccessPolicy | undefined;
    /** Largest request body the inspection reads (MCP_MAX_BODY_BYTES). */
    maxBodyBytes: number;
  };
  security: {
    headersOnProxied: boolean;
    contentSecurityPolicy: string;
  };
  auth: {
    mode: 'oidc' | 'bypass';
    oidc: {
      provider: ProviderName;
      discoveryUrl: URL | undefined;
      clientId: string | undefined;
      clientSecret: string | undefined;
      redirectUrl: URL;
      scopes: string[];
      audience: string | undefined;
      /** Claim paths of the user's groups; empty = the preset's default. */
      groupsClaims: string[];
      githubUrl: URL;
      githubApiUrl: URL;
      /** Microsoft Graph, for Entra ID's groups overage (OIDC_PROVIDER=microsoft). */
      microsoftGraphUrl: URL;
    };
    policy: { emails: string[]; domains: string[]; groups: string[] };
    identityHeaders: {
      user: string;
      email: string;
      groups: string;
      forwardAccessToken: boolean;
      forwardIdToken: boolean;
    };
    authRateLimitPerMinute: number;
    /** Every route besides the login endpoints, per user or client IP; 0 = off. */
    rateLimitPerMinute: number;
    /** SIGNING_KEY_ROTATION_DAYS: how long a token signing key signs; 0 = no scheduled rotation. */
    signingKeyRotationDays: number;
    /** Who may be an MCP client: self-registered (DCR, metadata documents) and/or listed ones. */
    mcpClients: {
      dynamicRegistration: boolean;
      preRegistered: PreRegisteredClientConfig[];
      /** REFRESH_REUSE_GRACE: how long a rotated refresh token is answered again; 0 = strict. */
      refreshReuseGraceMs: number;
    };
  };
  session: {
    store: 'memory' | 'redis';
    cookieSecure: boolean;
    /** SESSION_SECRET, or undefined for a random per-process key. */
    secret: string | undefined;
    idleTimeoutMs: number;
    maxAgeMs: number;
    redisUrl: string;
    redisCa: string | undefined;
    /** REDIS_KEY_PREFIX: in front of every key written to Redis. */
    redisKeyPrefix: string;
  };
  metrics: { enabled: boolean; path: string };
  log: { level: 'debug' | 'info' | 'warn' | 'error' };
  tracing: {
    enabled: boolean;
    /** OTLP/HTTP base URL (spans go to `/v1/traces` under it); undefined = the OTEL_* defaults. */
    endpoint: URL | undefined;
    sampleRate: number;
  };
  admin: {
    enabled: boolean;
    token: string | undefined;
    groups: string[];
    /**
     * ADMIN_LISTEN: the admin surface's own listener, and the origin it is reached at
     * (ADMIN_PUBLIC_URL); undefined = /admin on the main listener.
     */
    listener: { address: ListenAddress; publicUrl: URL | undefined } | undefined;
  };
  /** Reload the --config file when it changes. */
  watchConfig: boolean;
  /** Where each setting came from, for the startup log and `check-config`. */
  sources: Record<string, Source>;
}

export interface ConfigProblem {
  /** Environment name of the setting (or the YAML key / flag when that is what is wrong). */
  key: string;
  value: string;
  source: Source;
  message: string;
}

/** `KEY="value" (from env): what is wrong and how to fix it` */
export function formatProblem(p: ConfigProblem): string {
  const value = p.value ? `=${JSON.stringify(p.value)}` : '';
  const from = p.source === 'unset' ? '' : p.source === 'default' ? ' (default)' : ` (from ${p.source})`;
  return `${p.key}${value}${from}: ${p.message}`;
}

/** Thrown by `loadConfig` with every problem found; the CLI prints them all and exits 2. */
export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
  constructor(readonly problems: ConfigProblem[]) {
    super(
      `invalid configuration (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n${problems
        .map((p) => `  - ${formatProblem(p)}`)
        .join('\n')}`,
    );
    this.name = 'ConfigError';
  }
}
