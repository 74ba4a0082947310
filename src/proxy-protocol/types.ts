/**
 * The PROXY protocol (HAProxy's spec, versions 1 and 2) as Switchyard sees it: one header
 * shape for both versions, plus the wire constants parse.ts and build.ts share.
 *
 * Spec: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt
 */

/** One end of the proxied connection. `address` is an IPv4 or IPv6 literal, never a name. */
export interface ProxyAddress {
  address: string;
  port: number;
}

/** A v2 Type-Length-Value extension, e.g. PP2_TYPE_UNIQUE_ID. */
export interface ProxyTlv {
  type: number;
  /** A copy owned by the header (never a view into the socket's read buffer). */
  value: Buffer;
}

/**
 * A parsed PROXY header, v1 or v2.
 *
 * - v1 `PROXY TCP4|TCP6 ...`: command 'proxy', transport 'tcp', family 4|6, addresses set.
 * - v1 `PROXY UNKNOWN ...`: command 'proxy', transport 'unspec', family 0, no addresses
 *   (the receiver keeps the real peer, as for LOCAL).
 * - v2 PROXY over AF_INET/AF_INET6 with STREAM/DGRAM: family 4|6, addresses set.
 * - v2 PROXY over AF_UNIX, AF_UNSPEC, or with transport UNSPEC: family 0, no addresses.
 * - v2 LOCAL (a health check from the balancer itself): command 'local', family 0, no
 *   addresses, no TLVs; the address block is skipped as the spec requires.
 *
 * IPv6 addresses are in canonical form (RFC 5952, as Node prints them); an IPv4-mapped
 * address stays mapped (`::ffff:10.0.0.5`) — callers normalise with core/address normalizeIp.
 */
export interface ProxyHeader {
  version: 1 | 2;
  command: 'proxy' | 'local';
  /** v2 STREAM → 'tcp', DGRAM → 'udp' (also for AF_UNIX sockets); v1 TCP4/TCP6 → 'tcp'. */
  transport: 'tcp' | 'udp' | 'unspec';
  /** 0 = UNKNOWN / AF_UNSPEC / AF_UNIX / LOCAL: addresses absent. */
  family: 0 | 4 | 6;
  /** Present iff family is 4 or 6 (and so command is 'proxy'). */
  source?: ProxyAddress;
  destination?: ProxyAddress;
  /** v2 only, in wire order, PP2_TYPE_NOOP padding left out; [] for v1 and LOCAL. */
  tlvs: readonly ProxyTlv[];
}

// ---- wire constants -------------------------------------------------------------------------

/** v1: the longest line a receiver must accept, CRLF included (`PROXY UNKNOWN <v6> <v6> 65535 65535\r\n`). */
export const V1_MAX_LINE_LENGTH = 107;

/** v2: the 12-byte signature that opens every binary header. */
export const V2_SIGNATURE: Buffer = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

/** v2: signature + version/command + family/transport + 16-bit length. */
export const V2_FIXED_LENGTH = 16;

/** v2: the largest payload (address block + TLVs) accepted unless the parser is told otherwise. */
export const V2_DEFAULT_MAX_LENGTH = 4096;

/** v2: version 2 in the high nibble of the 13th byte, command in the low nibble. */
export const V2_VERSION = 0x20;
export const V2_COMMAND_LOCAL = 0x0;
export const V2_COMMAND_PROXY = 0x1;

/** v2: address family (high nibble of the 14th byte). */
export const V2_AF_UNSPEC = 0x0;
export const V2_AF_INET = 0x1;
export const V2_AF_INET6 = 0x2;
export const V2_AF_UNIX = 0x3;

/** v2: transport (low nibble of the 14th byte). */
export const V2_TRANSPORT_UNSPEC = 0x0;
export const V2_TRANSPORT_STREAM = 0x1;
export const V2_TRANSPORT_DGRAM = 0x2;

/** v2: address block sizes: 2 addresses + 2 ports (INET/INET6), 2 × 108-byte paths (UNIX). */
export const V2_ADDRESS_LENGTH_INET = 12;
export const V2_ADDRESS_LENGTH_INET6 = 36;
export const V2_ADDRESS_LENGTH_UNIX = 216;

/** v2 TLV types registered by the spec (section 2.2). */
export const PP2_TYPE_ALPN = 0x01;
export const PP2_TYPE_AUTHORITY = 0x02;
export const PP2_TYPE_CRC32C = 0x03;
export const PP2_TYPE_NOOP = 0x04;
export const PP2_TYPE_UNIQUE_ID = 0x05;
export const PP2_TYPE_SSL = 0x20;
export const PP2_SUBTYPE_SSL_VERSION = 0x21;
export const PP2_SUBTYPE_SSL_CN = 0x22;
export const PP2_SUBTYPE_SSL_CIPHER = 0x23;
export const PP2_SUBTYPE_SSL_SIG_ALG = 0x24;
export const PP2_SUBTYPE_SSL_KEY_ALG = 0x25;
export const PP2_TYPE_NETNS = 0x30;

/** v2: TLV header = type (1 byte) + length (2 bytes). */
export const PP2_TLV_HEADER_LENGTH = 3;

/** The spec caps PP2_TYPE_UNIQUE_ID values at 128 bytes. */
export const PP2_UNIQUE_ID_MAX_LENGTH = 128;
