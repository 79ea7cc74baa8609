import type { IncomingMessage } from 'node:http';

const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);
/** `name[:port]` or `[v6]:port`, nothing else: no userinfo, path or stray characters after the name. */
const HOST_HEADER = /^(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(?::\d{1,5})?$/;

/**
 * DNS-rebinding protection done by the proxy (it rewrites Host for the backend, which
 * would defeat the backend's own check): the Host must be the public host, an allowed
 * origin's host or a loopback name, and an Origin, when sent, must be the public origin
 * or an allowed one.
 */
export class OriginGuard {
  private readonly origins: Set<string>;
  private readonly hosts: Set<string>;

  constructor(publicUrl: URL, allowedOrigins: readonly string[]) {
    this.origins = new Set([publicUrl.origin, ...allowedOrigins]);
    this.hosts = new Set([...this.origins].map((o) => new URL(o).host));
  }

  /**
   * A reason to refuse the request, or undefined when it may pass. `anyOrigin` is for the
   * public OAuth endpoints, which any web origin may call (they take no cookies).
   */
  check(req: IncomingMessage, anyOrigin = false): string | undefined {
    const host = (req.headers.host ?? '').toLowerCase();
    if (!this.hostAllowed(host)) {
      return `Host "${host}" is not this proxy's public host; set PUBLIC_URL to the URL clients use`;
    }
    if (anyOrigin) return undefined;
    const origin = req.headers.origin;
    if (origin !== undefined && !this.origins.has(origin.toLowerCase())) {
      return `Origin "${origin}" is not allowed; add it to ALLOWED_ORIGINS if it is a trusted client`;
    }
    return undefined;
  }

  private hostAllowed(host: string): boolean {
    // Parsed strictly: a lenient split let `localhost:1@evil.example` pass as "localhost",
    // and that value reaches the backend as X-Forwarded-Host.
    const parsed = HOST_HEADER.exec(host);
    if (!parsed) return false;
    return this.hosts.has(host) || LOOPBACK_HOSTS.has(parsed[1] as string);
  }
}
