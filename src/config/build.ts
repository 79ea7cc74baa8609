/** The Config the proxy runs on, built from setting values that passed every check and rule. */
import { isIP } from 'node:net';
import { isMcpAccessConfig, McpAccessPolicy } from '../mcp/access-policy.js';
import { originOf, preRegisteredClients, unbracketed } from './checks.js';
import { oidcScopes, publicUrlOf } from './derived.js';
import {
  type DefaultedEnv,
  defaultedValue,
  type EnvOfKind,
  type ParsedValues,
  type SettingValue,
} from './parse.js';
import type { Config, Source } from './types.js';

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
    // TODO(servers): YAML `servers:` and PROXY_TARGET_COMMAND; until then the one URL server.
    servers: [
      {
        name: 'default',
        path: value('MCP_PATH'),
        target: { kind: 'url', url: targetUrl },
        policy: { emails: [], domains: [], groups: [] },
        access,
      },
    ],
    singleTarget: true,
    stdio: { isolation: 'session', env: [], maxProcesses: 100, idleTimeoutMs: 900_000 },
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
      mcpClients: {
        dynamicRegistration: value('MCP_DCR_ENABLED'),
        preRegistered: preRegisteredClients(values.MCP_CLIENTS),
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
    },
    watchConfig: value('CONFIG_WATCH'),
    sources,
  };
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
