/**
 * The one table of settings. Every setting is declared once here; the environment
 * names, the YAML key, the CLI flag, the default, the validation and the docs that
 * `check-config` and `configs/config.example.yaml` show all derive from it.
 */

export type SettingKind =
  | 'string'
  | 'int'
  | 'seconds'
  | 'bool'
  | 'list'
  | 'enum'
  | 'url'
  | 'path'
  | 'number'
  | 'json';

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
  /**
   * Taken over by a running proxy when the --config file is reloaded (SIGHUP, CONFIG_WATCH);
   * any other setting keeps its value until a restart.
   */
  reloadable?: boolean;
  /** A sample value, shown commented out in `configs/config.example.yaml` and in error hints. */
  example?: string;
  /** A URL whose password part (only) is masked wherever the value is shown. */
  maskUrlPassword?: boolean;
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
    reloadable: true,
    default: '',
    example: 'https://claude.ai,https://app.example.com',
    doc: "Extra browser origins allowed besides PUBLIC_URL's (comma list); any other Origin gets 403.",
  },
  {
    env: 'TRUSTED_PROXIES',
    yaml: 'server.trusted_proxies',
    kind: 'list',
    reloadable: true,
    default: '',
    example: '127.0.0.1,::1,10.0.0.0/8',
    doc: 'Addresses/CIDRs whose X-Forwarded-* and CF-Connecting-IP headers are believed (e.g. 127.0.0.1 for cloudflared).',
  },
  {
    env: 'SHUTDOWN_TIMEOUT',
    yaml: 'server.shutdown_timeout',
    kind: 'seconds',
    reloadable: true,
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
    reloadable: true,
    default: 'localhost',
    doc: 'MCP server host.',
  },
  {
    env: 'PROXY_TARGET_PORT',
    aliases: ['MCP_TARGET_PORT'],
    yaml: 'proxy.target_port',
    kind: 'int',
    reloadable: true,
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
    reloadable: true,
    protocols: ['http:', 'https:'],
    derivedDefault: 'http://$PROXY_TARGET_HOST:$PROXY_TARGET_PORT',
    example: 'http://localhost:3000/api',
    doc: 'Full target URL (http or https, optional path prefix); overrides host/port.',
  },
  {
    env: 'PROXY_CA_FILE',
    yaml: 'proxy.ca_file',
    kind: 'path',
    reloadable: true,
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
    reloadable: true,
    min: 0.001,
    max: 600,
    default: '5',
    doc: 'Seconds to establish a connection to the target.',
  },
  {
    env: 'PROXY_HEADERS_TIMEOUT',
    yaml: 'proxy.headers_timeout',
    kind: 'seconds',
    reloadable: true,
    min: 0,
    max: 86400,
    default: '300',
    doc: 'Seconds to wait for the response headers (a JSON-answered tool call waits this long; 0 = no limit).',
  },
  {
    env: 'PROXY_IDLE_TIMEOUT',
    yaml: 'proxy.idle_timeout',
    kind: 'seconds',
    reloadable: true,
    min: 0,
    max: 86400,
    default: '300',
    doc: 'Seconds a non-SSE response body may stay silent before it is cut (SSE is never cut; 0 = no limit).',
  },
  {
    env: 'PROXY_RETRIES',
    yaml: 'proxy.retries',
    kind: 'int',
    reloadable: true,
    min: 0,
    max: 10,
    default: '2',
    doc: 'Retries when it is safe: the connection failed before any body byte was read, or an idempotent request without a body failed before a response.',
  },
  {
    env: 'CIRCUIT_BREAKER_THRESHOLD',
    yaml: 'proxy.circuit_breaker.threshold',
    kind: 'int',
    reloadable: true,
    min: 0,
    max: 10000,
    default: '5',
    doc: 'Consecutive upstream failures that open the circuit breaker (0 = breaker off).',
  },
  {
    env: 'CIRCUIT_BREAKER_RESET_TIMEOUT',
    yaml: 'proxy.circuit_breaker.reset_timeout',
    kind: 'seconds',
    reloadable: true,
    min: 0.01,
    max: 3600,
    default: '30',
    doc: 'Seconds the breaker stays open before one probe request is let through (half-open).',
  },
  {
    env: 'SSE_KEEPALIVE_INTERVAL',
    yaml: 'proxy.sse_keepalive_interval',
    kind: 'seconds',
    reloadable: true,
    min: 0,
    max: 3600,
    default: '25',
    doc: 'Seconds of silence on an SSE response after which a ": keepalive" comment is written at an event boundary (0 = off).',
  },
  {
    env: 'SECURITY_HEADERS_ON_PROXIED',
    yaml: 'security.headers_on_proxied',
    kind: 'bool',
    reloadable: true,
    default: 'true',
    doc: 'Add the security headers to proxied responses too (never overwriting one the backend set).',
  },
  {
    env: 'CONTENT_SECURITY_POLICY',
    yaml: 'security.content_security_policy',
    kind: 'string',
    reloadable: true,
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
  {
    env: 'OIDC_REDIRECT_URL',
    yaml: 'oidc.redirect_url',
    kind: 'url',
    protocols: ['http:', 'https:'],
    derivedDefault: 'PUBLIC_URL + /callback',
    example: 'https://mcp.example.com/callback',
    doc: 'Callback URL registered at the upstream provider.',
  },
  {
    env: 'OIDC_SCOPES',
    yaml: 'oidc.scopes',
    kind: 'list',
    default: 'openid email profile',
    example: 'openid,email,profile,groups',
    doc: 'Scopes asked of the upstream provider (comma or space separated).',
  },
  {
    env: 'OIDC_PROVIDER',
    yaml: 'oidc.provider',
    kind: 'enum',
    values: ['generic', 'auth0', 'google', 'microsoft', 'keycloak', 'github'],
    default: 'generic',
    doc: 'Provider preset for its quirks: generic, auth0, google, microsoft, keycloak or github.',
  },
  {
    env: 'OIDC_AUDIENCE',
    yaml: 'oidc.audience',
    kind: 'string',
    example: 'https://api.example.com',
    doc: 'Auth0: the API audience sent as the `audience` authorization parameter.',
  },
  {
    env: 'OIDC_GROUPS_CLAIM',
    yaml: 'oidc.groups_claim',
    kind: 'list',
    derivedDefault: 'groups (keycloak: groups,realm_access.roles; microsoft: groups,roles)',
    example: 'https://example.com/claims/groups',
    doc: "Claim path(s) holding the user's groups, dotted for nested claims (comma list).",
  },
  {
    env: 'GITHUB_URL',
    yaml: 'oidc.github.url',
    kind: 'url',
    protocols: ['http:', 'https:'],
    default: 'https://github.com',
    doc: 'GitHub (or GitHub Enterprise Server) web URL, for OIDC_PROVIDER=github.',
  },
  {
    env: 'GITHUB_API_URL',
    yaml: 'oidc.github.api_url',
    kind: 'url',
    protocols: ['http:', 'https:'],
    default: 'https://api.github.com',
    doc: "GitHub's REST API URL (GitHub Enterprise Server: https://HOST/api/v3), for OIDC_PROVIDER=github.",
  },
  {
    env: 'MICROSOFT_GRAPH_URL',
    yaml: 'oidc.microsoft.graph_url',
    kind: 'url',
    protocols: ['http:', 'https:'],
    default: 'https://graph.microsoft.com',
    doc: 'Microsoft Graph (national clouds: https://graph.microsoft.us, https://dod-graph.microsoft.us, https://microsoftgraph.chinacloudapi.cn), for OIDC_PROVIDER=microsoft: where the groups of a user in too many groups for the ID token are read.',
  },
  {
    env: 'ALLOWED_EMAILS',
    yaml: 'policy.allowed_emails',
    kind: 'list',
    reloadable: true,
    default: '',
    example: 'alice@example.com,*@example.org',
    doc: 'Emails allowed in (exact, or *@domain); empty with the other lists empty = anyone the provider authenticates.',
  },
  {
    env: 'ALLOWED_DOMAINS',
    yaml: 'policy.allowed_domains',
    kind: 'list',
    reloadable: true,
    default: '',
    example: 'example.com',
    doc: 'Email domains allowed in (exact domain; *.example.com for subdomains).',
  },
  {
    env: 'ALLOWED_GROUPS',
    yaml: 'policy.allowed_groups',
    kind: 'list',
    reloadable: true,
    default: '',
    example: 'mcp-users,my-org/my-team',
    doc: 'Groups allowed in (from OIDC_GROUPS_CLAIM; GitHub: org or org/team).',
  },
  {
    env: 'IDENTITY_HEADER_USER',
    yaml: 'identity_headers.user',
    kind: 'string',
    reloadable: true,
    default: 'X-Forwarded-User',
    doc: "Header carrying the user's subject to the backend.",
  },
  {
    env: 'IDENTITY_HEADER_EMAIL',
    yaml: 'identity_headers.email',
    kind: 'string',
    reloadable: true,
    default: 'X-Forwarded-Email',
    doc: "Header carrying the user's email to the backend.",
  },
  {
    env: 'IDENTITY_HEADER_GROUPS',
    yaml: 'identity_headers.groups',
    kind: 'string',
    reloadable: true,
    default: 'X-Forwarded-Groups',
    doc: "Header carrying the user's groups (comma list) to the backend.",
  },
  {
    env: 'FORWARD_ACCESS_TOKEN',
    yaml: 'identity_headers.forward_access_token',
    kind: 'bool',
    reloadable: true,
    default: 'false',
    doc: "Send the upstream provider's access token to the backend as X-Forwarded-Access-Token.",
  },
  {
    env: 'FORWARD_ID_TOKEN',
    yaml: 'identity_headers.forward_id_token',
    kind: 'bool',
    reloadable: true,
    default: 'false',
    doc: "Send the upstream provider's ID token to the backend as X-Forwarded-Id-Token.",
  },
  {
    env: 'MCP_DCR_ENABLED',
    yaml: 'mcp_clients.dynamic_registration',
    kind: 'bool',
    default: 'true',
    doc: 'Let MCP clients register themselves at /register (RFC 7591); false = only the clients in MCP_CLIENTS (and client ID metadata documents are refused too).',
  },
  {
    env: 'MCP_CLIENTS',
    yaml: 'mcp_clients.preregistered',
    kind: 'json',
    secret: true,
    example:
      '[{"client_id": "claude", "client_secret": "a-long-random-secret", "redirect_uris": ["https://claude.ai/api/mcp/auth_callback"], "name": "Claude"}]',
    doc: 'Pre-registered MCP clients, a JSON (or YAML) list of {client_id, client_secret (optional: public client), redirect_uris, name}: what you type into Claude.ai or ChatGPT as client id and secret.',
  },
  {
    env: 'AUTH_RATE_LIMIT_PER_MINUTE',
    yaml: 'rate_limit.auth_per_minute',
    kind: 'int',
    reloadable: true,
    min: 0,
    max: 1000000,
    default: '60',
    doc: 'Requests per client IP per minute to the login endpoints; over it: 429 with Retry-After (0 = off).',
  },
  {
    env: 'RATE_LIMIT_PER_MINUTE',
    yaml: 'rate_limit.per_minute',
    kind: 'int',
    reloadable: true,
    min: 0,
    max: 1000000,
    default: '0',
    doc: 'Requests per user (or per client IP when anonymous) per minute on every other route; over it: 429 with Retry-After (0 = off). Shared through Redis when SESSION_STORE=redis.',
  },
  {
    env: 'SESSION_STORE',
    yaml: 'session.store',
    kind: 'enum',
    values: ['memory', 'redis'],
    default: 'memory',
    doc: 'Where sessions live: memory (one instance) or redis (shared by instances, survives restarts).',
  },
  {
    env: 'SESSION_COOKIE_SECURE',
    yaml: 'session.cookie_secure',
    kind: 'bool',
    default: 'false',
    doc: 'Secure cookie with the __Host- prefix; set true behind HTTPS (a tunnel).',
  },
  {
    env: 'SESSION_SECRET',
    yaml: 'session.secret',
    kind: 'string',
    secret: true,
    derivedDefault: 'random per process',
    example: 'a random string of 32+ characters (openssl rand -base64 48)',
    doc: 'Key for signing cookies and encrypting stored sessions; required (identical) when instances share Redis.',
  },
  {
    env: 'SESSION_IDLE_TIMEOUT',
    yaml: 'session.idle_timeout',
    kind: 'seconds',
    min: 60,
    max: 31536000,
    default: '28800',
    doc: 'Seconds without a request after which a session ends.',
  },
  {
    env: 'SESSION_MAX_AGE',
    yaml: 'session.max_age',
    kind: 'seconds',
    min: 60,
    max: 31536000,
    default: '604800',
    doc: 'Seconds after login at which a session ends however active it is.',
  },
  {
    env: 'REDIS_URL',
    yaml: 'session.redis_url',
    kind: 'string',
    default: 'redis://localhost:6379',
    maskUrlPassword: true,
    example: 'rediss://:password@redis.example.com:6380/0',
    doc: 'Redis for SESSION_STORE=redis: redis://, rediss:// (TLS), redis+sentinel://host:port,host:port/master, redis+cluster://host:port,host:port.',
  },
  {
    env: 'REDIS_CA_FILE',
    yaml: 'session.redis_ca_file',
    kind: 'path',
    example: '/etc/ssl/redis-ca.pem',
    doc: 'PEM CA bundle for a rediss:// server with a private CA.',
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
    reloadable: true,
    values: ['debug', 'info', 'warn', 'error'],
    default: 'info',
    doc: 'Log level.',
  },
  {
    env: 'TRACING_ENABLED',
    yaml: 'tracing.enabled',
    kind: 'bool',
    default: 'false',
    doc: 'Export OpenTelemetry spans over OTLP/HTTP (the standard OTEL_* variables are honoured too).',
  },
  {
    env: 'TRACING_ENDPOINT',
    yaml: 'tracing.endpoint',
    kind: 'url',
    protocols: ['http:', 'https:'],
    derivedDefault: 'OTEL_EXPORTER_OTLP_ENDPOINT, else http://localhost:4318',
    example: 'http://collector:4318',
    doc: 'OTLP/HTTP collector base URL; spans are POSTed to this URL + /v1/traces.',
  },
  {
    env: 'TRACING_SAMPLE_RATE',
    yaml: 'tracing.sample_rate',
    kind: 'number',
    min: 0,
    max: 1,
    default: '1.0',
    doc: 'Fraction of new traces recorded (0.0-1.0); a sampled incoming traceparent is always followed.',
  },
  // administration
  {
    env: 'ADMIN_ENABLED',
    yaml: 'admin.enabled',
    kind: 'bool',
    default: 'false',
    doc: 'Serve the admin API and monitoring page under /admin (needs ADMIN_TOKEN or ADMIN_GROUPS).',
  },
  {
    env: 'ADMIN_TOKEN',
    yaml: 'admin.token',
    kind: 'string',
    secret: true,
    example: 'a random string of 32+ characters (openssl rand -base64 48)',
    doc: 'Bearer token for the admin API (Authorization: Bearer ADMIN_TOKEN); at least 32 characters.',
  },
  {
    env: 'ADMIN_GROUPS',
    yaml: 'admin.groups',
    kind: 'list',
    default: '',
    example: 'mcp-admins',
    doc: 'Groups whose logged-in members may use the admin API and page (AUTH_MODE=oidc).',
  },
  // reload
  {
    env: 'CONFIG_WATCH',
    yaml: 'config.watch',
    kind: 'bool',
    reloadable: true,
    default: 'false',
    doc: 'Reload the --config file when it changes (SIGHUP always reloads it).',
  },
] as const satisfies readonly SettingSpec[];

export type SettingEnv = (typeof SETTINGS)[number]['env'];

/** The CLI flag every setting gets: `SERVER_PORT` -> `--server-port`. */
export function flagFor(spec: SettingSpec): string {
  return `--${spec.env.toLowerCase().replaceAll('_', '-')}`;
}
