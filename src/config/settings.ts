/**
 * The one table of settings. Every setting is declared once here; the environment
 * names, the YAML key, the CLI flag, the default, the validation and the docs that
 * `check-config` and `configs/config.example.yaml` show all derive from it.
 */

export type SettingKind = 'string' | 'int' | 'seconds' | 'bool' | 'list' | 'enum' | 'url' | 'path' | 'number';

export interface SettingSpec {
  /** Primary environment variable name (the contract name). */
  env: string;
  /** Alias environment variables, accepted when the primary is unset. */
  aliases?: readonly string[];
  /** Dotted key in the YAML file. */
  yaml: string;
  /** Extra short CLI flags besides the one derived from `env`. */
  flags?: readonly string[];
  kind: SettingKind;
  default?: string;
  /** For a setting without a fixed default: what it is computed from, as shown in docs. */
  derivedDefault?: string;
  /** For `enum`. */
  values?: readonly string[];
  /** For `int`/`seconds`/`number`: inclusive bounds. */
  min?: number;
  max?: number;
  /** For `url`: allowed protocols. */
  protocols?: readonly string[];
  /** Never echoed: masked in `check-config` output and in error messages. */
  secret?: boolean;
  /** A sample value, shown commented out in `configs/config.example.yaml` and in error hints. */
  example?: string;
  doc: string;
}

export const SETTINGS = [
  // server
  {
    env: 'SERVER_HOST',
    yaml: 'server.host',
    flags: ['--host'],
    kind: 'string',
    default: '0.0.0.0',
    doc: 'Listen address.',
  },
  {
    env: 'SERVER_PORT',
    yaml: 'server.port',
    flags: ['--port'],
    kind: 'int',
    min: 0,
    max: 65535,
    default: '8080',
    doc: 'Listen port (0 picks a free port).',
  },
  {
    env: 'PUBLIC_URL',
    yaml: 'server.public_url',
    flags: ['--public-url'],
    kind: 'url',
    protocols: ['http:', 'https:'],
    derivedDefault: 'http://localhost:$SERVER_PORT',
    example: 'https://mcp.example.com',
    doc: 'URL users and MCP clients reach the proxy at (e.g. the tunnel URL); the issuer, resource and redirect URLs derive from it. Origin only, no path.',
  },
  {
    env: 'ALLOWED_ORIGINS',
    yaml: 'server.allowed_origins',
    kind: 'list',
    default: '',
    example: 'https://claude.ai,https://app.example.com',
    doc: "Extra browser origins allowed besides PUBLIC_URL's (comma list); any other Origin gets 403.",
  },
  {
    env: 'TRUSTED_PROXIES',
    yaml: 'server.trusted_proxies',
    kind: 'list',
    default: '',
    example: '127.0.0.1,::1,10.0.0.0/8',
    doc: 'Addresses/CIDRs whose X-Forwarded-* and CF-Connecting-IP headers are believed (e.g. 127.0.0.1 for cloudflared).',
  },
  {
    env: 'SHUTDOWN_TIMEOUT',
    yaml: 'server.shutdown_timeout',
    kind: 'seconds',
    min: 0,
    max: 3600,
    default: '10',
    doc: 'Seconds in-flight requests get to finish after SIGTERM/SIGINT before they are cut.',
  },
  // proxy target
  {
    env: 'PROXY_TARGET_HOST',
    aliases: ['MCP_TARGET_HOST'],
    yaml: 'proxy.target_host',
    kind: 'string',
    default: 'localhost',
    doc: 'MCP server host.',
  },
  {
    env: 'PROXY_TARGET_PORT',
    aliases: ['MCP_TARGET_PORT'],
    yaml: 'proxy.target_port',
    kind: 'int',
    min: 1,
    max: 65535,
    default: '3000',
    doc: 'MCP server port.',
  },
  {
    env: 'PROXY_TARGET_URL',
    yaml: 'proxy.target_url',
    flags: ['--target', '--target-url'],
    kind: 'url',
    protocols: ['http:', 'https:'],
    derivedDefault: 'http://$PROXY_TARGET_HOST:$PROXY_TARGET_PORT',
    example: 'http://localhost:3000/api',
    doc: 'Full target URL (http or https, optional path prefix); overrides host/port.',
  },
  {
    env: 'PROXY_CA_FILE',
    yaml: 'proxy.ca_file',
    kind: 'path',
    example: '/etc/mcp-oidc-proxy/ca.pem',
    doc: 'PEM file with CA certificates to trust for an https target (added to the system roots).',
  },
  {
    env: 'MCP_PATH',
    yaml: 'proxy.mcp_path',
    kind: 'string',
    default: '/mcp',
    doc: 'Public path of the MCP endpoint; the protected resource is PUBLIC_URL + MCP_PATH.',
  },
  {
    env: 'PROXY_CONNECT_TIMEOUT',
    yaml: 'proxy.connect_timeout',
    kind: 'seconds',
    min: 0.001,
    max: 600,
    default: '5',
    doc: 'Seconds to establish a connection to the target.',
  },
  {
    env: 'PROXY_HEADERS_TIMEOUT',
    yaml: 'proxy.headers_timeout',
    kind: 'seconds',
    min: 0,
    max: 86400,
    default: '300',
    doc: 'Seconds to wait for the response headers (a JSON-answered tool call waits this long; 0 = no limit).',
  },
  {
    env: 'PROXY_IDLE_TIMEOUT',
    yaml: 'proxy.idle_timeout',
    kind: 'seconds',
    min: 0,
    max: 86400,
    default: '300',
    doc: 'Seconds a non-SSE response body may stay silent before it is cut (SSE is never cut; 0 = no limit).',
  },
  {
    env: 'PROXY_RETRIES',
    yaml: 'proxy.retries',
    kind: 'int',
    min: 0,
    max: 10,
    default: '2',
    doc: 'Retries when it is safe: the connection failed before any body byte was read, or an idempotent request without a body failed before a response.',
  },
  {
    env: 'CIRCUIT_BREAKER_THRESHOLD',
    yaml: 'proxy.circuit_breaker.threshold',
    kind: 'int',
    min: 0,
    max: 10000,
    default: '5',
    doc: 'Consecutive upstream failures that open the circuit breaker (0 = breaker off).',
  },
  {
    env: 'CIRCUIT_BREAKER_RESET_TIMEOUT',
    yaml: 'proxy.circuit_breaker.reset_timeout',
    kind: 'seconds',
    min: 0.01,
    max: 3600,
    default: '30',
    doc: 'Seconds the breaker stays open before one probe request is let through (half-open).',
  },
  {
    env: 'SSE_KEEPALIVE_INTERVAL',
    yaml: 'proxy.sse_keepalive_interval',
    kind: 'seconds',
    min: 0,
    max: 3600,
    default: '25',
    doc: 'Seconds of silence on an SSE response after which a ": keepalive" comment is written at an event boundary (0 = off).',
  },
  {
    env: 'SECURITY_HEADERS_ON_PROXIED',
    yaml: 'security.headers_on_proxied',
    kind: 'bool',
    default: 'true',
    doc: 'Add the security headers to proxied responses too (never overwriting one the backend set).',
  },
  {
    env: 'CONTENT_SECURITY_POLICY',
    yaml: 'security.content_security_policy',
    kind: 'string',
    default:
      "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'",
    doc: 'Content-Security-Policy sent with the security headers.',
  },
  // auth
  {
    env: 'AUTH_MODE',
    yaml: 'auth.mode',
    flags: ['--auth-mode'],
    kind: 'enum',
    values: ['oidc', 'bypass'],
    default: 'oidc',
    doc: '`oidc` (login required) or `bypass` (no login: local development only, logged loudly).',
  },
  {
    env: 'OIDC_DISCOVERY_URL',
    yaml: 'oidc.discovery_url',
    kind: 'url',
    protocols: ['http:', 'https:'],
    example: 'https://your-domain.auth0.com/.well-known/openid-configuration',
    doc: "Upstream provider's discovery document URL. Required for AUTH_MODE=oidc.",
  },
  {
    env: 'OIDC_CLIENT_ID',
    yaml: 'oidc.client_id',
    kind: 'string',
    example: 'your-client-id',
    doc: "The proxy's client id at the upstream provider. Required for AUTH_MODE=oidc.",
  },
  {
    env: 'OIDC_CLIENT_SECRET',
    yaml: 'oidc.client_secret',
    kind: 'string',
    secret: true,
    example: 'your-client-secret',
    doc: "The proxy's client secret at the upstream provider (prefer the environment or the file: command lines are visible to other local users).",
  },
  // observability
  {
    env: 'METRICS_ENABLED',
    yaml: 'metrics.enabled',
    kind: 'bool',
    default: 'true',
    doc: 'Serve Prometheus metrics.',
  },
  {
    env: 'METRICS_PATH',
    yaml: 'metrics.path',
    kind: 'string',
    default: '/metrics',
    doc: 'Path of the Prometheus endpoint.',
  },
  {
    env: 'LOG_LEVEL',
    yaml: 'log.level',
    flags: ['--log-level'],
    kind: 'enum',
    values: ['debug', 'info', 'warn', 'error'],
    default: 'info',
    doc: 'Log level.',
  },
] as const satisfies readonly SettingSpec[];

export type SettingEnv = (typeof SETTINGS)[number]['env'];

/** The CLI flag every setting gets: `SERVER_PORT` -> `--server-port`. */
export function flagFor(spec: SettingSpec): string {
  return `--${spec.env.toLowerCase().replaceAll('_', '-')}`;
}
