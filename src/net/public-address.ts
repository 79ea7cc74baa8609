import { BlockList, isIP } from 'node:net';
import { ipv4FromGroups, ipv6Groups } from './ip.js';

/**
 * Which addresses the proxy may open a connection to on an anonymous caller's behalf (a client
 * metadata document URL): public unicast only, so such a URL cannot reach the proxy's own
 * network, loopback or a cloud metadata service (server-side request forgery).
 */

const FORBIDDEN_V4: Array<[string, number]> = [
  ['0.0.0.0', 8], // "this network"
  ['10.0.0.0', 8], // private
  ['100.64.0.0', 10], // CGNAT
  ['127.0.0.0', 8], // loopback
  ['169.254.0.0', 16], // link-local, cloud metadata (169.254.169.254)
  ['172.16.0.0', 12], // private
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.0.2.0', 24], // documentation
  ['192.88.99.0', 24], // 6to4 relay anycast
  ['192.168.0.0', 16], // private
  ['198.18.0.0', 15], // benchmarking
  ['198.51.100.0', 24], // documentation
  ['203.0.113.0', 24], // documentation
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, broadcast
];

const FORBIDDEN_V6: Array<[string, number]> = [
  ['2001::', 32], // Teredo (embeds an obfuscated IPv4 address)
  ['2001:db8::', 32], // documentation
  ['2001:10::', 28], // ORCHID
  ['2001:20::', 28], // ORCHIDv2
  ['3fff::', 20], // documentation
];

const forbiddenV4 = new BlockList();
for (const [net, prefix] of FORBIDDEN_V4) forbiddenV4.addSubnet(net, prefix, 'ipv4');
const forbiddenV6 = new BlockList();
for (const [net, prefix] of FORBIDDEN_V6) forbiddenV6.addSubnet(net, prefix, 'ipv6');
const globalUnicastV6 = new BlockList();
globalUnicastV6.addSubnet('2000::', 3, 'ipv6');

/**
 * Whether an address must never be fetched from: anything but public unicast. IPv6 forms that
 * carry an IPv4 address (mapped ::ffff:a.b.c.d, compatible ::a.b.c.d, NAT64 64:ff9b::/96, 6to4
 * 2002::/16) are judged by that IPv4 address.
 */
export function isForbiddenAddress(address: string): boolean {
  const bare = address.replace(/^\[|\]$/g, '');
  const family = isIP(bare.split('%')[0]!);
  if (family === 4) return forbiddenV4.check(bare, 'ipv4');
  if (family !== 6) return true;
  const g = ipv6Groups(bare);
  if (!g) return true;
  const [g0, g1, g2, g3, g4, g5, g6, g7] = g as [
    number,
    number,
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const upperZero = g0 === 0 && g1 === 0 && g2 === 0 && g3 === 0 && g4 === 0;
  if (upperZero && (g5 === 0xffff || g5 === 0)) {
    // ::ffff:a.b.c.d (mapped), ::a.b.c.d (compatible); :: and ::1 land in 0.0.0.0/8.
    return forbiddenV4.check(ipv4FromGroups(g6, g7), 'ipv4');
  }
  if (g0 === 0x64 && g1 === 0xff9b && g2 === 0 && g3 === 0 && g4 === 0 && g5 === 0) {
    return forbiddenV4.check(ipv4FromGroups(g6, g7), 'ipv4');
  }
  if (g0 === 0x2002) return forbiddenV4.check(ipv4FromGroups(g1, g2), 'ipv4');
  const canonical = g.map((x) => x.toString(16)).join(':');
  // Only global unicast (2000::/3) is public; that excludes ::1, fe80::/10, fc00::/7, ff00::/8.
  if (!globalUnicastV6.check(canonical, 'ipv6')) return true;
  return forbiddenV6.check(canonical, 'ipv6');
}
