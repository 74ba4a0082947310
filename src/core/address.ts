import { BlockList, isIP } from 'node:net';
import { Address4, Address6 } from 'ip-address';

/**
 * An endpoint as written in config: `10.0.0.11:5432`, `[::1]:5432`, `db.internal:5432`.
 * `host` has no brackets; `family` is 4 or 6 for literals and 0 for a host name that is
 * resolved at start.
 */
export interface Endpoint {
  host: string;
  port: number;
  family: 0 | 4 | 6;
}

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

/**
 * Parses `host:port`. IPv6 literals must be bracketed (`[::1]:53`) so the port is never
 * ambiguous. Returns a problem string instead of throwing; the config schema reports it
 * with the key path.
 */
export function parseEndpoint(text: string): Endpoint | string {
  let host: string;
  let portText: string;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0 || text[close + 1] !== ':') return 'expected [ipv6]:port';
    host = text.slice(1, close);
    portText = text.slice(close + 2);
    if (isIP(host) !== 6) return `"${host}" is not an IPv6 address`;
  } else {
    const colon = text.lastIndexOf(':');
    if (colon <= 0) return 'expected host:port';
    host = text.slice(0, colon);
    portText = text.slice(colon + 1);
    if (host.includes(':')) return 'expected host:port (write IPv6 addresses in brackets: [::1]:5432)';
    if (isIP(host) !== 4) {
      // All digits and dots is a mistyped IPv4 address, never a host name (RFC 3696 §2).
      if (/^[\d.]+$/.test(host)) return `"${host}" is not a valid IPv4 address`;
      if (!HOSTNAME.test(host)) return `"${host}" is not an IPv4 address or host name`;
    }
  }
  if (!/^\d{1,5}$/.test(portText)) return `port "${portText}" is not a number`;
  const port = Number(portText);
  if (port > 65535) return `port ${port} is out of range (0-65535)`;
  const family = isIP(host);
  return { host, port, family: family === 4 || family === 6 ? family : 0 };
}

/** `host:port`, bracketing IPv6 — the one spelling used in logs. */
export function formatEndpoint(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * Normalises a peer address as Node reports it: an IPv4-mapped IPv6 address
 * (`::ffff:10.0.0.5`, seen on dual-stack `[::]` listeners) becomes `10.0.0.5`, so the same
 * client hashes, logs and matches ACLs identically whichever socket family accepted it.
 * Cheap enough for the per-connection path: one prefix test in the common case.
 */
export function normalizeIp(address: string): string {
  if (address.length > 7 && address.charCodeAt(0) === 58 /* : */ && address.startsWith('::ffff:') && isIP(address.slice(7)) === 4) {
    return address.slice(7);
  }
  return address;
}

/**
 * A set of CIDR ranges, matched with Node's native BlockList (no per-check allocation).
 * IPv4 ranges also match IPv4-mapped IPv6 peers because callers normalise first.
 */
export class CidrSet {
  private readonly list = new BlockList();
  readonly ranges: readonly string[];

  /** Throws on an invalid range; the config schema validates with `parseCidr` first. */
  constructor(ranges: readonly string[]) {
    this.ranges = ranges;
    for (const range of ranges) {
      const parsed = parseCidr(range);
      if (typeof parsed === 'string') throw new Error(`invalid CIDR "${range}": ${parsed}`);
      this.list.addSubnet(parsed.network, parsed.prefix, parsed.family === 4 ? 'ipv4' : 'ipv6');
    }
  }

  /** `ip` is an address as normalizeIp returns it. */
  has(ip: string): boolean {
    const family = isIP(ip);
    if (family === 0) return false;
    return this.list.check(ip, family === 4 ? 'ipv4' : 'ipv6');
  }
}

export interface Cidr {
  network: string;
  prefix: number;
  family: 4 | 6;
}

/**
 * Parses `10.0.0.0/8`, `::1/128`, or a bare address (a /32 or /128). Returns a problem
 * string for anything else. Uses ip-address for validation so odd spellings are rejected
 * with a reason rather than silently matching nothing.
 */
export function parseCidr(text: string): Cidr | string {
  const slash = text.indexOf('/');
  const host = slash < 0 ? text : text.slice(0, slash);
  const prefixText = slash < 0 ? undefined : text.slice(slash + 1);
  const family = isIP(host);
  if (family === 0) return `"${host}" is not an IP address`;
  const max = family === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? max : Number(prefixText);
  if (prefixText !== undefined && !/^\d{1,3}$/.test(prefixText)) return `prefix "${prefixText}" is not a number`;
  if (prefix > max) return `prefix /${prefix} is longer than ${max}`;
  const valid = family === 4 ? Address4.isValid(`${host}/${prefix}`) : Address6.isValid(`${host}/${prefix}`);
  if (!valid) return `"${text}" is not a valid CIDR range`;
  return { network: host, prefix, family: family as 4 | 6 };
}
