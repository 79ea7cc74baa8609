/** The Config the proxy runs on, built from setting values that passed every check and rule. */
import { isIP } from 'node:net';
import { isMcpAccessConfig, McpAccessPolicy } from '../mcp/access-policy.js';
import { listenAddressOf, originOf, preRegisteredClients, unbracketed } from './checks.js';
import { oidcScopes, publicUrlOf, workerCount } from './derived.js';
import {
  type DefaultedEnv,
  defaultedValue,
  type EnvOfKind,
  type ParsedValues,
  type SettingValue,
} from './parse.js';
import { readServers, type ServerEntry } from './servers.js';
import type { Config, ServerConfig, Source, StdioIsolation } from './types.js';

/** `values`: every setting's value, from a load without problems; `sources`: where each came from. */
export function buildConfig(values: ParsedValues, sources: Record<string, Source>): Config {
  const value = <E extends DefaultedEnv>(key: E): SettingValue<E> => defaultedValue(values, key);
  const ms = (key: SecondsSetting): number => Math.round(value(key) * 1000);
  const publicUrl = publicUrlOf(values);
  const access = isMcpAccessConfig(values.MCP_ACCESS)
    ? McpAccessPolicy.compile(values.MCP_ACCESS)
    : undefined;
  const targetUrl = targetUrlOf(values);
  return {
    server: {
      host: value('SERVER_HOST'),
      port: value('SERVER_PORT'),
      publicUrl,
      allowedOrigins: [...new Set(value('ALLOWED_ORIGINS').flatMap((entry) => originOf(entry) ?? []))],
      trustedProxies: value('TRUSTED_PROXIES'),
      shutdownTimeoutMs: ms('SHUTDOWN_TIMEOUT'),
      workers: workerCount(values),
    },
    target: {
      url: targetUrl,
      ca: values.PROXY_CA_FILE?.text,
      connectTimeoutMs: ms('PROXY_CONNECT_TIMEOUT'),
      headersTimeoutMs: ms('PROXY_HEADERS_TIMEOUT'),
      idleTimeoutMs: ms('PROXY_IDLE_TIMEOUT'),
      retries: value('PROXY_RETRIES'),
      breakerThreshold: value('CIRCUIT_BREAKER_THRESHOLD'),
      breakerResetMs: ms('CIRCUIT_BREAKER_RESET_TIMEOUT'),
      sseKeepaliveMs: ms('SSE_KEEPALIVE_INTERVAL'),
    },
    mcpPath: value('MCP_PATH'),
    ...serversOf(values, targetUrl, access),
    stdio: {
      isolation: value('STDIO_ISOLATION'),
      env: value('STDIO_ENV'),
      maxProcesses: value('STDIO_MAX_PROCESSES'),
      idleTimeoutMs: ms('STDIO_IDLE_TIMEOUT'),
    },
    mcp: {
      access,
      maxBodyBytes: value('MCP_MAX_BODY_BYTES'),
    },
    security: {
      headersOnProxied: value('SECURITY_HEADERS_ON_PROXIED'),
      contentSecurityPolicy: value('CONTENT_SECURITY_POLICY'),
    },
    auth: {
      mode: value('AUTH_MODE'),
      oidc: {
        provider: value('OIDC_PROVIDER'),
        discoveryUrl: values.OIDC_DISCOVERY_URL,
        clientId: values.OIDC_CLIENT_ID,
        clientSecret: values.OIDC_CLIENT_SECRET,
        redirectUrl: values.OIDC_REDIRECT_URL ?? new URL('/callback', publicUrl),
        scopes: oidcScopes(values),
        audience: values.OIDC_AUDIENCE || undefined,
        groupsClaims: values.OIDC_GROUPS_CLAIM ?? [],
        githubUrl: value('GITHUB_URL'),
        githubApiUrl: value('GITHUB_API_URL'),
        microsoftGraphUrl: value('MICROSOFT_GRAPH_URL'),
      },
      policy: {
        emails: value('ALLOWED_EMAILS'),
        domains: value('ALLOWED_DOMAINS'),
        groups: value('ALLOWED_GROUPS'),
      },
      identityHeaders: {
        user: value('IDENTITY_HEADER_USER'),
        email: value('IDENTITY_HEADER_EMAIL'),
        groups: value('IDENTITY_HEADER_GROUPS'),
        forwardAccessToken: value('FORWARD_ACCESS_TOKEN'),
        forwardIdToken: value('FORWARD_ID_TOKEN'),
      },
      authRateLimitPerMinute: value('AUTH_RATE_LIMIT_PER_MINUTE'),
      rateLimitPerMinute: value('RATE_LIMIT_PER_MINUTE'),
      signingKeyRotationDays: value('SIGNING_KEY_ROTATION_DAYS'),
      mcpClients: {
        dynamicRegistration: value('MCP_DCR_ENABLED'),
        preRegistered: preRegisteredClients(values.MCP_CLIENTS),
        refreshReuseGraceMs: ms('REFRESH_REUSE_GRACE'),
      },
    },
    session: {
      store: value('SESSION_STORE'),
      cookieSecure: value('SESSION_COOKIE_SECURE'),
      // Empty (a bare `--session-secret=`) is unset: a random per-process key.
      secret: values.SESSION_SECRET || undefined,
      idleTimeoutMs: ms('SESSION_IDLE_TIMEOUT'),
      maxAgeMs: ms('SESSION_MAX_AGE'),
      redisUrl: value('REDIS_URL'),
      redisCa: values.REDIS_CA_FILE?.text,
      redisKeyPrefix: value('REDIS_KEY_PREFIX'),
    },
    metrics: { enabled: value('METRICS_ENABLED'), path: value('METRICS_PATH') },
    log: { level: value('LOG_LEVEL') },
    tracing: {
      enabled: value('TRACING_ENABLED'),
      endpoint: values.TRACING_ENDPOINT,
      sampleRate: value('TRACING_SAMPLE_RATE'),
    },
    admin: {
      enabled: value('ADMIN_ENABLED'),
      token: values.ADMIN_TOKEN || undefined,
      groups: value('ADMIN_GROUPS'),
      listener: adminListenerOf(values),
    },
    watchConfig: value('CONFIG_WATCH'),
    sources,
  };
}

/** ADMIN_LISTEN and ADMIN_PUBLIC_URL; the rules let ADMIN_PUBLIC_URL through only with ADMIN_LISTEN. */
function adminListenerOf(values: ParsedValues): Config['admin']['listener'] {
  const address = values.ADMIN_LISTEN ? listenAddressOf(values.ADMIN_LISTEN) : undefined;
  return address && { address, publicUrl: values.ADMIN_PUBLIC_URL };
}

/** The durations, given in seconds and kept in milliseconds (each has a default). */
type SecondsSetting = Extract<EnvOfKind<'seconds'>, DefaultedEnv>;

/** PROXY_TARGET_URL, or `http://PROXY_TARGET_HOST:PROXY_TARGET_PORT` (an IPv6 host bracketed). */
function targetUrlOf(values: ParsedValues): URL {
  if (values.PROXY_TARGET_URL) return values.PROXY_TARGET_URL;
  const host = unbracketed(defaultedValue(values, 'PROXY_TARGET_HOST'));
  const port = defaultedValue(values, 'PROXY_TARGET_PORT');
  return new URL(`http://${isIP(host) === 6 ? `[${host}]` : host}:${port}`);
}

/**
 * The YAML `servers:` list, or else the one server the single-target settings describe, named
 * `default`: at MCP_PATH, running PROXY_TARGET_COMMAND or forwarding to the target URL, with the
 * MCP_ACCESS rules (the same policy object as `config.mcp.access`).
 */
function serversOf(
  values: ParsedValues,
  targetUrl: URL,
  access: McpAccessPolicy | undefined,
): Pick<Config, 'servers' | 'singleTarget'> {
  const isolation = defaultedValue(values, 'STDIO_ISOLATION');
  if (values.SERVERS !== undefined) {
    const entries = readServers(values.SERVERS).entries;
    return { servers: entries.map((entry) => serverConfigOf(entry, isolation)), singleTarget: false };
  }
  const command = values.PROXY_TARGET_COMMAND;
  const server: ServerConfig = {
    name: 'default',
    path: defaultedValue(values, 'MCP_PATH'),
    target: command ? { kind: 'command', command, isolation } : { kind: 'url', url: targetUrl },
    policy: { emails: [], domains: [], groups: [] },
    access,
  };
  return { servers: [server], singleTarget: true };
}

/** A checked `servers:` entry; a command server without its own isolation gets STDIO_ISOLATION's. */
function serverConfigOf(entry: ServerEntry, defaultIsolation: StdioIsolation): ServerConfig {
  const { target } = entry;
  return {
    name: entry.name,
    path: entry.path,
    target: target.kind === 'url' ? target : { ...target, isolation: target.isolation ?? defaultIsolation },
    policy: entry.policy,
    access: entry.access && McpAccessPolicy.compile(entry.access),
  };
}
