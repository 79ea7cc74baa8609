import { isIP } from 'node:net';

/**
 * IPv6 addresses as numbers, for the three places that look inside one: the rate limits (a
 * client's /64), the client-address stage (one spelling of an IPv4-mapped address) and the
 * metadata-document fetcher (IPv6 forms that carry a forbidden IPv4 address). One parser, so
 * the three never disagree about what an address is.
 */

/**
 * The eight 16-bit groups of an IPv6 address, or undefined when `text` is not one. Takes the
 * spellings the proxy meets: in brackets (from a URL), with a zone id (`fe80::1%eth0`, dropped:
 * it names an interface, not a network), and with a dotted IPv4 tail (`::ffff:198.51.100.7`,
 * `64:ff9b::198.51.100.7`), which fills the last two groups.
 */
export function ipv6Groups(text: string): number[] | undefined {
  const address = text.replace(/^\[|\]$/g, '').split('%')[0] as string;
  if (isIP(address) !== 6) return undefined;
  let hex = address;
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(address);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number];
    hex = `${address.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = hex.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const zeros = tail === undefined ? [] : Array<string>(8 - left.length - right.length).fill('0');
  const groups = [...left, ...zeros, ...right].map((group) => Number.parseInt(group, 16));
  return groups.length === 8 ? groups : undefined;
}

/** `a.b.c.d` from the two groups that hold an IPv4 address inside an IPv6 one. */
export function ipv4FromGroups(high: number, low: number): string {
  return `${high >> 8}.${high & 0xff}.${low >> 8}.${low & 0xff}`;
}

/**
 * The IPv4 address an IPv4-mapped IPv6 address (`::ffff:198.51.100.7`, or `::ffff:c633:6407` as
 * the URL parser writes it) stands for; undefined for any other text.
 */
export function mappedIpv4(text: string): string | undefined {
  const groups = ipv6Groups(text);
  if (groups === undefined || groups.slice(0, 5).some((group) => group !== 0) || groups[5] !== 0xffff) {
    return undefined;
  }
  return ipv4FromGroups(groups[6] as number, groups[7] as number);
}

/**
 * The /64 network of an IPv6 address, `2001:db8:1:2::/64` (its first four groups, each written
 * without leading zeros); undefined when `text` is not IPv6.
 */
export function ipv6Network64(text: string): string | undefined {
  const groups = ipv6Groups(text);
  if (groups === undefined) return undefined;
  const prefix = groups.slice(0, 4).map((group) => group.toString(16));
  return `${prefix.join(':')}::/64`;
}
