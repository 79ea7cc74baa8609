import type { IncomingMessage } from 'node:http';
import { BlockList, isIP } from 'node:net';
import { mappedIpv4 } from '../net/ip.js';

/** What the proxy believes about the client, given which peers are trusted proxies. */
export interface ClientAddress {
  /** The client's IP: the peer's, or from a trusted proxy's headers. */
  ip: string;
  /** `X-Forwarded-For` value to send upstream. */
  forwardedFor: string;
  /** `X-Forwarded-Proto` value to send upstream. */
  forwardedProto: string;
  /** `X-Forwarded-Host` value to send upstream. */
  forwardedHost: string;
}

export class TrustedProxies {
  private readonly list = new BlockList();
  private readonly empty: boolean;

  constructor(entries: readonly string[]) {
    for (const entry of entries) {
      const [addr, bits] = entry.split('/') as [string, string | undefined];
      const type = isIP(addr) === 6 ? 'ipv6' : 'ipv4';
      if (bits === undefined) this.list.addAddress(addr, type);
      else this.list.addSubnet(addr, Number(bits), type);
    }
    this.empty = entries.length === 0;
  }

  has(ip: string): boolean {
    if (this.empty || !ip) return false;
    return this.list.check(ip, isIP(ip) === 6 ? 'ipv6' : 'ipv4');
  }
}

function normaliseIp(ip: string | undefined): string {
  if (!ip) return '';
  return ip.startsWith('::ffff:') && isIP(ip.slice(7)) === 4 ? ip.slice(7) : ip;
}

/**
 * An address from a forwarding header in one spelling per address, or '' when it is none, so a
 * client a trusted proxy reports as `::FFFF:198.51.100.7`, `::ffff:c633:6407` or `198.51.100.7`
 * (or `2001:DB8::7` and `2001:db8:0:0:0:0:0:7`) has one rate limit budget, not one per spelling:
 * IPv6 as the URL parser writes it (RFC 5952: lower case, longest zero run compressed), and an
 * IPv4-mapped address as plain IPv4. Node writes the socket's peer address this way already.
 */
function canonicalIp(text: string): string {
  const version = isIP(text);
  if (version === 4) return text;
  if (version !== 6) return '';
  let host: string;
  try {
    host = new URL(`http://[${text}]/`).hostname.slice(1, -1);
  } catch {
    return text.toLowerCase(); // a zone id (fe80::1%eth0), which URLs cannot hold
  }
  return mappedIpv4(host) ?? host;
}

function firstHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

/**
 * Forwarding headers are believed only from a trusted peer; from anyone else they are
 * replaced, so a client cannot choose the address that rate limits and logs see.
 */
export function resolveClientAddress(req: IncomingMessage, trusted: TrustedProxies): ClientAddress {
  const peer = normaliseIp(req.socket.remoteAddress);
  const host = req.headers.host ?? '';
  if (!trusted.has(peer)) {
    return { ip: peer, forwardedFor: peer, forwardedProto: 'http', forwardedHost: host };
  }
  const chain = (firstHeader(req.headers['x-forwarded-for']) ?? '')
    .split(',')
    .map((s) => canonicalIp(s.trim()))
    .filter((s) => s !== '');
  const cf = canonicalIp(firstHeader(req.headers['cf-connecting-ip'])?.trim() ?? '');
  // The client is the rightmost address not itself a trusted proxy.
  let ip = isIP(cf) !== 0 ? cf : peer;
  if (isIP(cf) === 0) {
    for (let i = chain.length - 1; i >= 0; i--) {
      ip = chain[i] as string;
      if (!trusted.has(ip)) break;
    }
  }
  const proto = firstHeader(req.headers['x-forwarded-proto'])?.split(',')[0]?.trim().toLowerCase();
  const fwdHost = firstHeader(req.headers['x-forwarded-host'])?.split(',')[0]?.trim();
  return {
    ip,
    forwardedFor: [...chain, peer].join(', '),
    forwardedProto: proto === 'https' || proto === 'http' ? proto : 'http',
    forwardedHost: fwdHost || host,
  };
}
