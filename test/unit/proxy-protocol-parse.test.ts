import t from 'tap';
import { SocketAddress } from 'node:net';
import { IPv4Address, IPv4ProxyAddress, IPv6Address, IPv6ProxyAddress, Command, INETProtocol, Peer, TransportProtocol, UnspecProxyAddress, V1ProxyProtocol, V2ProxyProtocol } from 'proxy-protocol-js';
import { SwitchyardError } from '../../src/core/errors.ts';
import { ProxyHeaderParser, crc32c, formatIPv6, parseIPv4, parseIPv6, type ProxyParseResult } from '../../src/proxy-protocol/parse.ts';
import { PP2_TYPE_ALPN, PP2_TYPE_AUTHORITY, PP2_TYPE_CRC32C, PP2_TYPE_NOOP, PP2_TYPE_SSL, PP2_TYPE_UNIQUE_ID, type ProxyHeader } from '../../src/proxy-protocol/types.ts';

// Headers here are written out byte by byte, independently of build.ts, so a bug shared by
// the builder and the parser cannot hide. Addresses are documentation ranges; no socket is used.

const SIG = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];

/** A v2 header: signature, ver/cmd byte, fam byte, length (defaults to payload length), payload. */
function v2(verCmd: number, fam: number, payload: number[] | Buffer, length?: number): Buffer {
  const body = Buffer.from(payload);
  const len = length ?? body.length;
  return Buffer.concat([Buffer.from(SIG), Buffer.from([verCmd, fam, len >> 8, len & 0xff]), body]);
}
function tlv(type: number, value: number[] | Buffer | string): Buffer {
  const bytes = typeof value === 'string' ? Buffer.from(value, 'latin1') : Buffer.from(value);
  return Buffer.concat([Buffer.from([type, bytes.length >> 8, bytes.length & 0xff]), bytes]);
}
const port = (p: number) => [p >> 8, p & 0xff];
/** 192.0.2.1:56324 → 198.51.100.7:443 */
const INET_BLOCK = [192, 0, 2, 1, 198, 51, 100, 7, ...port(56324), ...port(443)];
/** 2001:db8::1:56324 → ::ffff:192.0.2.9:443 */
const INET6_BLOCK = [
  0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 9,
  ...port(56324), ...port(443),
];
const UNIX_BLOCK = [...Buffer.concat([Buffer.from('/run/a.sock'), Buffer.alloc(108 - 11), Buffer.from('/run/b.sock'), Buffer.alloc(108 - 11)])];

const V4_PAIR = { source: { address: '192.0.2.1', port: 56324 }, destination: { address: '198.51.100.7', port: 443 } };
const V6_PAIR = { source: { address: '2001:db8::1', port: 56324 }, destination: { address: '::ffff:192.0.2.9', port: 443 } };

function whole(input: Buffer, options?: { maxV2Length?: number }): ProxyParseResult {
  return new ProxyHeaderParser(options).push(input);
}

/**
 * Feeds `input` one byte at a time. Returns the final result, the index of the byte that
 * produced it (-1: still incomplete) and, for 'done', everything after the header: the
 * returned rest plus the bytes never fed.
 */
function bytewise(input: Buffer, options?: { maxV2Length?: number }): { result: ProxyParseResult; at: number; after?: Buffer } {
  const parser = new ProxyHeaderParser(options);
  for (let i = 0; i < input.length; i++) {
    const result = parser.push(input.subarray(i, i + 1));
    if (result.status === 'done') return { result, at: i, after: Buffer.concat([result.rest, input.subarray(i + 1)]) };
    if (result.status === 'invalid') return { result, at: i };
  }
  return { result: { status: 'incomplete' }, at: -1 };
}

/** Feeds `input` in two chunks split at `cut`. Same shape as bytewise(). */
function twoChunks(input: Buffer, cut: number): { result: ProxyParseResult; after?: Buffer } {
  const parser = new ProxyHeaderParser();
  let result = parser.push(input.subarray(0, cut));
  if (result.status === 'done') return { result, after: Buffer.concat([result.rest, input.subarray(cut)]) };
  if (result.status === 'invalid') return { result };
  result = parser.push(input.subarray(cut));
  return { result, after: result.status === 'done' ? result.rest : undefined };
}

interface ValidCase {
  name: string;
  input: Buffer;
  headerLength: number;
  header: ProxyHeader;
}

const TRAILER = Buffer.from('GET / HTTP/1.1\r\nHost: example\r\n\r\n');
const MAX_V6 = 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff';

function v1Case(name: string, line: string, header: ProxyHeader, trailer = Buffer.alloc(0)): ValidCase {
  const input = Buffer.concat([Buffer.from(line, 'latin1'), trailer]);
  return { name, input, headerLength: Buffer.byteLength(line, 'latin1'), header };
}
function v2Case(name: string, bytes: Buffer, header: ProxyHeader, trailer = Buffer.alloc(0)): ValidCase {
  return { name, input: Buffer.concat([bytes, trailer]), headerLength: bytes.length, header };
}

const uniqueId128 = Buffer.alloc(128, 0x61);
const sslValue = [0x01, 0, 0, 0, 0, ...tlv(0x21, 'TLSv1.3')];

const validCases: ValidCase[] = [
  v1Case('v1 TCP4', 'PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n', { version: 1, command: 'proxy', transport: 'tcp', family: 4, ...V4_PAIR, tlvs: [] }),
  v1Case('v1 TCP4 with data after it', 'PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n', { version: 1, command: 'proxy', transport: 'tcp', family: 4, ...V4_PAIR, tlvs: [] }, TRAILER),
  v1Case('v1 TCP4 extreme values', 'PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n', {
    version: 1, command: 'proxy', transport: 'tcp', family: 4,
    source: { address: '0.0.0.0', port: 0 }, destination: { address: '255.255.255.255', port: 65535 }, tlvs: [],
  }),
  v1Case('v1 TCP6', 'PROXY TCP6 2001:db8::1 ::ffff:192.0.2.9 56324 443\r\n', { version: 1, command: 'proxy', transport: 'tcp', family: 6, ...V6_PAIR, tlvs: [] }),
  v1Case('v1 TCP6 long forms come back canonical (mapped stays mapped)', 'PROXY TCP6 2001:0DB8:0000:0000:0000:0000:0000:0001 0:0:0:0:0:FFFF:C000:0209 56324 443\r\n', {
    version: 1, command: 'proxy', transport: 'tcp', family: 6, ...V6_PAIR, tlvs: [],
  }),
  v1Case('v1 UNKNOWN short form', 'PROXY UNKNOWN\r\n', { version: 1, command: 'proxy', transport: 'unspec', family: 0, tlvs: [] }, TRAILER),
  v1Case('v1 UNKNOWN worst case: exactly 107 bytes', `PROXY UNKNOWN ${MAX_V6} ${MAX_V6} 65535 65535\r\n`, { version: 1, command: 'proxy', transport: 'unspec', family: 0, tlvs: [] }),
  v1Case('v1 UNKNOWN ignores whatever precedes CRLF', 'PROXY UNKNOWN  what\x00ever \xff x\r\n', { version: 1, command: 'proxy', transport: 'unspec', family: 0, tlvs: [] }),

  v2Case('v2 PROXY TCP4', v2(0x21, 0x11, INET_BLOCK), { version: 2, command: 'proxy', transport: 'tcp', family: 4, ...V4_PAIR, tlvs: [] }),
  v2Case('v2 PROXY UDP4', v2(0x21, 0x12, INET_BLOCK), { version: 2, command: 'proxy', transport: 'udp', family: 4, ...V4_PAIR, tlvs: [] }),
  v2Case('v2 PROXY TCP6 (IPv4-mapped destination returned as given)', v2(0x21, 0x21, INET6_BLOCK), { version: 2, command: 'proxy', transport: 'tcp', family: 6, ...V6_PAIR, tlvs: [] }),
  v2Case('v2 PROXY UDP6', v2(0x21, 0x22, INET6_BLOCK), { version: 2, command: 'proxy', transport: 'udp', family: 6, ...V6_PAIR, tlvs: [] }),
  v2Case('v2 PROXY TCP4 with data after it', v2(0x21, 0x11, INET_BLOCK), { version: 2, command: 'proxy', transport: 'tcp', family: 4, ...V4_PAIR, tlvs: [] }, TRAILER),
  v2Case('v2 LOCAL, AF_UNSPEC, length 0', v2(0x20, 0x00, []), { version: 2, command: 'local', transport: 'unspec', family: 0, tlvs: [] }, TRAILER),
  v2Case('v2 LOCAL with an address block: skipped, no addresses', v2(0x20, 0x11, INET_BLOCK), { version: 2, command: 'local', transport: 'tcp', family: 0, tlvs: [] }),
  v2Case('v2 LOCAL with a block shorter than its family: skipped too', v2(0x20, 0x21, [1, 2, 3]), { version: 2, command: 'local', transport: 'tcp', family: 0, tlvs: [] }),
  v2Case('v2 PROXY AF_UNSPEC: accepted without addresses', v2(0x21, 0x00, []), { version: 2, command: 'proxy', transport: 'unspec', family: 0, tlvs: [] }),
  v2Case('v2 PROXY AF_UNSPEC with address bytes: ignored', v2(0x21, 0x01, [9, 9, 9, 9, 9]), { version: 2, command: 'proxy', transport: 'tcp', family: 0, tlvs: [] }),
  v2Case('v2 PROXY AF_INET with transport UNSPEC: addresses ignored', v2(0x21, 0x10, INET_BLOCK), { version: 2, command: 'proxy', transport: 'unspec', family: 0, tlvs: [] }),
  v2Case('v2 PROXY AF_UNIX stream: family 0', v2(0x21, 0x31, UNIX_BLOCK), { version: 2, command: 'proxy', transport: 'tcp', family: 0, tlvs: [] }),
  v2Case('v2 PROXY AF_UNIX dgram with a TLV', v2(0x21, 0x32, [...UNIX_BLOCK, ...tlv(PP2_TYPE_UNIQUE_ID, 'u1')]), {
    version: 2, command: 'proxy', transport: 'udp', family: 0, tlvs: [{ type: PP2_TYPE_UNIQUE_ID, value: Buffer.from('u1') }],
  }),
  v2Case(
    'v2 PROXY TCP4 with TLVs (NOOP padding dropped, 128-byte unique id, SSL, custom empty)',
    v2(0x21, 0x11, [
      ...INET_BLOCK,
      ...tlv(PP2_TYPE_ALPN, 'h2'),
      ...tlv(PP2_TYPE_NOOP, [0, 0, 0]),
      ...tlv(PP2_TYPE_AUTHORITY, 'example.com'),
      ...tlv(PP2_TYPE_UNIQUE_ID, uniqueId128),
      ...tlv(PP2_TYPE_SSL, sslValue),
      ...tlv(0xe0, []),
    ]),
    {
      version: 2, command: 'proxy', transport: 'tcp', family: 4, ...V4_PAIR,
      tlvs: [
        { type: PP2_TYPE_ALPN, value: Buffer.from('h2') },
        { type: PP2_TYPE_AUTHORITY, value: Buffer.from('example.com') },
        { type: PP2_TYPE_UNIQUE_ID, value: uniqueId128 },
        { type: PP2_TYPE_SSL, value: Buffer.from(sslValue) },
        { type: 0xe0, value: Buffer.alloc(0) },
      ],
    },
    TRAILER,
  ),
  v2Case('v2 PROXY TCP6 with a TLV', v2(0x21, 0x21, [...INET6_BLOCK, ...tlv(PP2_TYPE_AUTHORITY, 'a.example')]), {
    version: 2, command: 'proxy', transport: 'tcp', family: 6, ...V6_PAIR, tlvs: [{ type: PP2_TYPE_AUTHORITY, value: Buffer.from('a.example') }],
  }),
  (() => {
    const bytes = v2(0x21, 0x11, [...INET_BLOCK, ...tlv(PP2_TYPE_CRC32C, [0, 0, 0, 0]), ...tlv(PP2_TYPE_AUTHORITY, 'x')]);
    bytes.writeUInt32BE(crc32c(bytes), 16 + 12 + 3);
    return v2Case('v2 with a correct CRC32C', bytes, {
      version: 2, command: 'proxy', transport: 'tcp', family: 4, ...V4_PAIR,
      tlvs: [{ type: PP2_TYPE_CRC32C, value: bytes.subarray(31, 35) }, { type: PP2_TYPE_AUTHORITY, value: Buffer.from('x') }],
    });
  })(),
];

t.test('every valid form parses, whole, byte by byte and split anywhere', async (t) => {
  for (const c of validCases) {
    const expectedRest = c.input.subarray(c.headerLength);

    const w = whole(c.input);
    t.equal(w.status, 'done', `${c.name}: whole`);
    if (w.status === 'done') {
      t.same(w.header, c.header, `${c.name}: header`);
      t.ok(w.rest.equals(expectedRest), `${c.name}: rest is exactly the bytes after the header`);
    }

    const b = bytewise(c.input);
    t.equal(b.result.status, 'done', `${c.name}: byte by byte`);
    t.equal(b.at, c.headerLength - 1, `${c.name}: done on the header's last byte, not later`);
    if (b.result.status === 'done') {
      t.same(b.result.header, c.header, `${c.name}: byte by byte header`);
      t.ok(b.after!.equals(expectedRest), `${c.name}: byte by byte rest`);
    }

    let splitFailures = 0;
    for (let cut = 0; cut <= c.input.length; cut++) {
      const s = twoChunks(c.input, cut);
      if (s.result.status !== 'done' || !s.after!.equals(expectedRest) || JSON.stringify(s.result.header) !== JSON.stringify(c.header)) splitFailures++;
    }
    t.equal(splitFailures, 0, `${c.name}: split in two at each of ${c.input.length + 1} points`);

    // A strict prefix of the header is never enough, and never invalid.
    const prefix = whole(c.input.subarray(0, c.headerLength - 1));
    t.equal(prefix.status, 'incomplete', `${c.name}: header minus its last byte is incomplete`);
  }
});

interface InvalidCase {
  name: string;
  input: Buffer;
  /** The byte on which a byte-by-byte feed must fail (early rejection), when it is known. */
  at: number;
  message: RegExp;
  maxV2Length?: number;
}

const v1Invalid = (name: string, line: string, message: RegExp, at?: number): InvalidCase => {
  const input = Buffer.from(line, 'latin1');
  return { name, input, at: at ?? input.length - 1, message };
};

const invalidCases: InvalidCase[] = [
  { name: 'HTTP request instead of a header', input: Buffer.from('GET / HTTP/1.1\r\n\r\n'), at: 0, message: /not a PROXY header: first byte 0x47/ },
  { name: 'TLS hello instead of a header', input: Buffer.from([0x16, 0x03, 0x01, 0x00]), at: 0, message: /first byte 0x16/ },
  v1Invalid('v1 misspelled signature', 'PROXX TCP4 192.0.2.1 198.51.100.7 1 2\r\n', /must start with "PROXY "/, 4),
  v1Invalid('v1 lower case', 'Proxy TCP4 192.0.2.1 198.51.100.7 1 2\r\n', /must start with "PROXY "/, 1),
  v1Invalid('v1 tab after PROXY', 'PROXY\tTCP4 192.0.2.1 198.51.100.7 1 2\r\n', /must start with "PROXY "/, 5),
  v1Invalid('v1 double space after PROXY', 'PROXY  TCP4 192.0.2.1 198.51.100.7 1 2\r\n', /protocol must be/),
  v1Invalid('v1 unknown protocol', 'PROXY TCP5 192.0.2.1 198.51.100.7 1 2\r\n', /protocol must be/),
  v1Invalid('v1 UDP4 does not exist', 'PROXY UDP4 192.0.2.1 198.51.100.7 1 2\r\n', /protocol must be/),
  v1Invalid('v1 lower-case protocol', 'PROXY tcp4 192.0.2.1 198.51.100.7 1 2\r\n', /protocol must be/),
  v1Invalid('v1 UNKNOWN glued to more text', 'PROXY UNKNOWNX\r\n', /protocol must be/),
  v1Invalid('v1 empty after PROXY', 'PROXY \r\n', /protocol must be/),
  v1Invalid('v1 double space between fields', 'PROXY TCP4 192.0.2.1  198.51.100.7 1 2\r\n', /empty field/),
  v1Invalid('v1 space before CRLF', 'PROXY TCP4 192.0.2.1 198.51.100.7 1 2 \r\n', /empty field/),
  v1Invalid('v1 missing port', 'PROXY TCP4 192.0.2.1 198.51.100.7 1\r\n', /got 3 field/),
  v1Invalid('v1 extra field', 'PROXY TCP4 192.0.2.1 198.51.100.7 1 2 3\r\n', /more than four fields/),
  v1Invalid('v1 port 65536', 'PROXY TCP4 192.0.2.1 198.51.100.7 65536 443\r\n', /source port "65536"/),
  v1Invalid('v1 destination port 99999', 'PROXY TCP4 192.0.2.1 198.51.100.7 1 99999\r\n', /destination port "99999"/),
  v1Invalid('v1 port with leading zero', 'PROXY TCP4 192.0.2.1 198.51.100.7 080 443\r\n', /source port "080"/),
  v1Invalid('v1 port 00', 'PROXY TCP4 192.0.2.1 198.51.100.7 1 00\r\n', /destination port "00"/),
  v1Invalid('v1 port with sign', 'PROXY TCP4 192.0.2.1 198.51.100.7 +80 443\r\n', /source port/),
  v1Invalid('v1 negative port', 'PROXY TCP4 192.0.2.1 198.51.100.7 -1 443\r\n', /source port/),
  v1Invalid('v1 port in hex', 'PROXY TCP4 192.0.2.1 198.51.100.7 0x50 443\r\n', /source port/),
  v1Invalid('v1 octet 256', 'PROXY TCP4 192.0.2.256 198.51.100.7 1 2\r\n', /source "192.0.2.256" is not an IPv4/),
  v1Invalid('v1 octet with leading zero', 'PROXY TCP4 192.0.2.01 198.51.100.7 1 2\r\n', /is not an IPv4/),
  v1Invalid('v1 three octets', 'PROXY TCP4 192.0.2 198.51.100.7 1 2\r\n', /is not an IPv4/),
  v1Invalid('v1 host name', 'PROXY TCP4 localhost 198.51.100.7 1 2\r\n', /is not an IPv4/),
  v1Invalid('v1 IPv6 in TCP4', 'PROXY TCP4 192.0.2.1 ::1 1 2\r\n', /destination "::1" is not an IPv4/),
  v1Invalid('v1 IPv4 in TCP6', 'PROXY TCP6 192.0.2.1 ::1 1 2\r\n', /source "192.0.2.1" is not an IPv6/),
  v1Invalid('v1 IPv6 with a zone id', 'PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n', /is not an IPv6/),
  v1Invalid('v1 IPv6 in brackets', 'PROXY TCP6 [::1] ::1 1 2\r\n', /is not an IPv6/),
  v1Invalid('v1 IPv6 with two "::"', 'PROXY TCP6 1::2::3 ::1 1 2\r\n', /is not an IPv6/),
  v1Invalid('v1 IPv6 with nine groups', 'PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n', /is not an IPv6/),
  v1Invalid('v1 IPv6 group of five digits', 'PROXY TCP6 12345::1 ::1 1 2\r\n', /is not an IPv6/),
  v1Invalid('v1 LF without CR', 'PROXY TCP4 192.0.2.1 198.51.100.7 1 2\n', /LF without CR/),
  v1Invalid('v1 CR without LF', 'PROXY TCP4 192.0.2.1 198.51.100.7 1 2\rX', /CR not followed by LF/),
  v1Invalid('v1 bare LF early in the line', 'PROXY TCP4\n', /LF without CR/),
  v1Invalid('v1 no CRLF in the first 107 bytes', `PROXY UNKNOWN ${'x'.repeat(120)}\r\n`, /no CRLF within the first 107 bytes/, 106),
  v1Invalid('v1 108-byte line (CR is the 107th byte)', `PROXY UNKNOWN ${MAX_V6} ${MAX_V6} 65535 655350\r\n`, /no CRLF within the first 107 bytes/, 106),

  { name: 'v2 signature mismatch in the middle', input: Buffer.from([...SIG.slice(0, 7), 0x52, ...SIG.slice(8), 0x21, 0x11, 0, 12, ...INET_BLOCK]), at: 7, message: /v2: bad signature/ },
  { name: 'v2 signature mismatch on its last byte', input: Buffer.from([...SIG.slice(0, 11), 0x0d, 0x21, 0x11, 0, 12]), at: 11, message: /v2: bad signature/ },
  { name: 'v2 version 1', input: v2(0x11, 0x11, INET_BLOCK), at: 12, message: /version 1, expected 2/ },
  { name: 'v2 version 3', input: v2(0x31, 0x11, INET_BLOCK), at: 12, message: /version 3, expected 2/ },
  { name: 'v2 command 2', input: v2(0x22, 0x11, INET_BLOCK), at: 12, message: /unknown command 0x2/ },
  { name: 'v2 command 0xf', input: v2(0x2f, 0x11, INET_BLOCK), at: 12, message: /unknown command 0xf/ },
  { name: 'v2 address family 4', input: v2(0x21, 0x41, INET_BLOCK), at: 13, message: /unknown address family 0x4/ },
  { name: 'v2 transport 3', input: v2(0x21, 0x13, INET_BLOCK), at: 13, message: /unknown transport 0x3/ },
  { name: 'v2 LOCAL with a bad family byte', input: v2(0x20, 0xf0, []), at: 13, message: /unknown address family 0xf/ },
  { name: 'v2 length shorter than the IPv4 block', input: v2(0x21, 0x11, INET_BLOCK.slice(0, 11)), at: 15, message: /length 11 is shorter than the 12-byte address block/ },
  { name: 'v2 length shorter than the IPv6 block', input: v2(0x21, 0x21, INET_BLOCK), at: 15, message: /length 12 is shorter than the 36-byte/ },
  { name: 'v2 length shorter than the UNIX block', input: v2(0x21, 0x31, UNIX_BLOCK.slice(0, 215)), at: 15, message: /shorter than the 216-byte/ },
  { name: 'v2 length over the default limit', input: v2(0x21, 0x11, INET_BLOCK, 4097), at: 15, message: /length 4097 is over the limit of 4096/ },
  { name: 'v2 length over a configured limit', input: v2(0x21, 0x11, [...INET_BLOCK, ...tlv(0xe0, Buffer.alloc(40))]), at: 15, message: /over the limit of 50/, maxV2Length: 50 },
  {
    name: 'v2 length longer than the real header: the data after it reads as a TLV that overruns',
    input: v2(0x21, 0x11, [...INET_BLOCK, ...Buffer.from('GET / HTTP/1.1\r\n')], 12 + 8),
    at: 16 + 12 + 8 - 1,
    message: /TLV 0x47 of 17748 bytes runs past the header length/,
  },
  { name: 'v2 TLV overrunning the length', input: v2(0x21, 0x11, [...INET_BLOCK, PP2_TYPE_AUTHORITY, 0, 5, 0x61, 0x62]), at: 16 + 12 + 5 - 1, message: /TLV 0x02 of 5 bytes runs past/ },
  { name: 'v2 TLV overrunning with data after the header', input: Buffer.concat([v2(0x21, 0x11, [...INET_BLOCK, PP2_TYPE_AUTHORITY, 0, 5, 0x61, 0x62]), TRAILER]), at: 16 + 12 + 5 - 1, message: /runs past/ },
  { name: 'v2 one stray byte after the addresses', input: v2(0x21, 0x11, [...INET_BLOCK, 0x00]), at: 16 + 13 - 1, message: /1 stray byte\(s\) after the last TLV/ },
  { name: 'v2 two stray bytes after a TLV', input: v2(0x21, 0x21, [...INET6_BLOCK, ...tlv(1, 'a'), 0x01, 0x00]), at: 16 + 36 + 4 + 2 - 1, message: /2 stray byte/ },
  { name: 'v2 UNIQUE_ID of 129 bytes', input: v2(0x21, 0x11, [...INET_BLOCK, ...tlv(PP2_TYPE_UNIQUE_ID, Buffer.alloc(129))]), at: 16 + 12 + 3 + 129 - 1, message: /UNIQUE_ID TLV of 129 bytes/ },
  { name: 'v2 CRC32C of 3 bytes', input: v2(0x21, 0x11, [...INET_BLOCK, ...tlv(PP2_TYPE_CRC32C, [1, 2, 3])]), at: 16 + 12 + 6 - 1, message: /CRC32C TLV of 3 bytes/ },
  { name: 'v2 CRC32C mismatch', input: v2(0x21, 0x11, [...INET_BLOCK, ...tlv(PP2_TYPE_CRC32C, [1, 2, 3, 4])]), at: 16 + 12 + 7 - 1, message: /CRC32C checksum mismatch/ },
  { name: 'v2 two CRC32C TLVs', input: v2(0x21, 0x11, [...INET_BLOCK, ...tlv(PP2_TYPE_CRC32C, [1, 2, 3, 4]), ...tlv(PP2_TYPE_CRC32C, [1, 2, 3, 4])]), at: 16 + 12 + 14 - 1, message: /more than one CRC32C/ },
];

t.test('every invalid form is rejected, as early as its bytes allow', async (t) => {
  for (const c of invalidCases) {
    const options = c.maxV2Length === undefined ? undefined : { maxV2Length: c.maxV2Length };
    const w = whole(c.input, options);
    t.equal(w.status, 'invalid', `${c.name}: whole`);
    if (w.status === 'invalid') {
      t.match(w.error.message, c.message, `${c.name}: message`);
      t.ok(w.error instanceof SwitchyardError, `${c.name}: a SwitchyardError`);
      t.equal(w.error.code, 'SWY_PROXY_HEADER_INVALID');
      t.equal(w.error.source, 'downstream');
    }
    const b = bytewise(c.input, options);
    t.equal(b.result.status, 'invalid', `${c.name}: byte by byte`);
    t.equal(b.at, c.at, `${c.name}: rejected on byte ${c.at}`);
    if (b.result.status === 'invalid' && w.status === 'invalid') t.equal(b.result.error.message, w.error.message, `${c.name}: same verdict both ways`);
  }
});

t.test('a v2 length longer than the bytes sent waits (bounded by the limit and the caller timeout)', async (t) => {
  const header = v2(0x21, 0x11, INET_BLOCK, 12 + 100);
  t.equal(whole(header).status, 'incomplete');
  t.equal(bytewise(header).result.status, 'incomplete');
});

t.test('maxV2Length: default 4096, configurable, validated', async (t) => {
  const atLimit = v2(0x21, 0x11, [...INET_BLOCK, ...tlv(0xe0, Buffer.alloc(4096 - 12 - 3))]);
  t.equal(whole(atLimit).status, 'done', 'exactly 4096 bytes of payload is accepted');
  t.equal(whole(v2(0x21, 0x11, INET_BLOCK)).status, 'done');
  t.equal(whole(v2(0x21, 0x11, INET_BLOCK), { maxV2Length: 12 }).status, 'done', 'limit equal to the payload');
  t.equal(whole(v2(0x21, 0x11, INET_BLOCK), { maxV2Length: 11 }).status, 'invalid', 'limit below the payload');
  t.equal(whole(v2(0x20, 0x00, []), { maxV2Length: 0 }).status, 'done', 'LOCAL fits a zero limit');
  for (const bad of [-1, 1.5, 65536, Number.NaN]) t.throws(() => new ProxyHeaderParser({ maxV2Length: bad }), RangeError, `maxV2Length ${bad}`);
});

t.test('no copy when the header arrives whole; rest is a view', async (t) => {
  const input = Buffer.concat([v2(0x21, 0x11, INET_BLOCK), TRAILER]);
  const result = whole(input);
  t.equal(result.status, 'done');
  if (result.status !== 'done') return;
  t.equal(result.rest.buffer, input.buffer, 'rest shares the chunk memory');
  t.equal(result.rest.byteOffset, input.byteOffset + 28);

  const exact = whole(v2(0x21, 0x11, INET_BLOCK));
  t.equal(exact.status === 'done' && exact.rest.length, 0, 'empty rest when nothing follows');

  // Split: rest is a view of the chunk that completed the header.
  const parser = new ProxyHeaderParser();
  t.equal(parser.push(input.subarray(0, 20)).status, 'incomplete');
  const last = input.subarray(20);
  const split = parser.push(last);
  t.equal(split.status, 'done');
  if (split.status === 'done') {
    t.equal(split.rest.buffer, last.buffer);
    t.ok(split.rest.equals(TRAILER));
  }
});

t.test('TLV values are copies: reusing the read buffer does not change them', async (t) => {
  const input = v2(0x21, 0x11, [...INET_BLOCK, ...tlv(PP2_TYPE_UNIQUE_ID, 'abc')]);
  const result = whole(input);
  input.fill(0);
  t.equal(result.status === 'done' && result.header.tlvs[0]!.value.toString(), 'abc');
});

t.test('empty chunks are harmless; feeding after the end is a bug and throws', async (t) => {
  const parser = new ProxyHeaderParser();
  t.equal(parser.push(Buffer.alloc(0)).status, 'incomplete');
  t.equal(parser.push(Buffer.from('PROXY UNK')).status, 'incomplete');
  t.equal(parser.push(Buffer.alloc(0)).status, 'incomplete');
  t.equal(parser.push(Buffer.from('NOWN\r\n')).status, 'done');
  t.throws(() => parser.push(Buffer.from('x')), /after the header was done or invalid/);

  const rejected = new ProxyHeaderParser();
  t.equal(rejected.push(Buffer.from('X')).status, 'invalid');
  t.throws(() => rejected.push(Buffer.from('x')));
});

t.test('a v2 header split inside its fixed part, then completed with a big chunk', async (t) => {
  // The parser must learn the length from the first 16 bytes and then take just enough.
  const header = v2(0x21, 0x21, [...INET6_BLOCK, ...tlv(PP2_TYPE_AUTHORITY, 'b.example')]);
  const input = Buffer.concat([header, Buffer.alloc(5000, 0x7a)]);
  const parser = new ProxyHeaderParser();
  t.equal(parser.push(input.subarray(0, 3)).status, 'incomplete');
  t.equal(parser.push(input.subarray(3, 15)).status, 'incomplete');
  const result = parser.push(input.subarray(15));
  t.equal(result.status, 'done');
  if (result.status === 'done') {
    t.equal(result.rest.length, 5000);
    t.same(result.header.tlvs, [{ type: PP2_TYPE_AUTHORITY, value: Buffer.from('b.example') }]);
  }
});

t.test('interop: headers built by proxy-protocol-js parse here', async (t) => {
  const line = new V1ProxyProtocol(INETProtocol.TCP4, new Peer('192.0.2.1', 56324), new Peer('198.51.100.7', 443)).build();
  const r1 = whole(Buffer.from(line, 'latin1'));
  t.same(r1.status === 'done' && r1.header, { version: 1, command: 'proxy', transport: 'tcp', family: 4, ...V4_PAIR, tlvs: [] }, 'v1 TCP4');

  const line6 = new V1ProxyProtocol(INETProtocol.TCP6, new Peer('2001:db8::1', 56324), new Peer('::ffff:192.0.2.9', 443)).build();
  const r6 = whole(Buffer.from(line6, 'latin1'));
  t.same(r6.status === 'done' && r6.header, { version: 1, command: 'proxy', transport: 'tcp', family: 6, ...V6_PAIR, tlvs: [] }, 'v1 TCP6');

  const b4 = new V2ProxyProtocol(Command.PROXY, TransportProtocol.STREAM, new IPv4ProxyAddress(IPv4Address.createFrom([192, 0, 2, 1]), 56324, IPv4Address.createFrom([198, 51, 100, 7]), 443)).build();
  const p4 = whole(Buffer.from(b4));
  t.same(p4.status === 'done' && p4.header, { version: 2, command: 'proxy', transport: 'tcp', family: 4, ...V4_PAIR, tlvs: [] }, 'v2 TCP4');

  const b6 = new V2ProxyProtocol(
    Command.PROXY,
    TransportProtocol.DGRAM,
    new IPv6ProxyAddress(IPv6Address.createFrom(INET6_BLOCK.slice(0, 16)), 56324, IPv6Address.createFrom(INET6_BLOCK.slice(16, 32)), 443),
  ).build();
  const p6 = whole(Buffer.from(b6));
  t.same(p6.status === 'done' && p6.header, { version: 2, command: 'proxy', transport: 'udp', family: 6, ...V6_PAIR, tlvs: [] }, 'v2 UDP6');

  const local = new V2ProxyProtocol(Command.LOCAL, TransportProtocol.UNSPEC, new UnspecProxyAddress()).build();
  const pl = whole(Buffer.from(local));
  t.same(pl.status === 'done' && pl.header, { version: 2, command: 'local', transport: 'unspec', family: 0, tlvs: [] }, 'v2 LOCAL');
});

t.test('where proxy-protocol-js is lenient, this parser is not', async (t) => {
  // Each of these is accepted by the library's own parser (shown first), and rejected here.
  const leadingZeroPort = 'PROXY TCP4 192.0.2.1 198.51.100.7 0080 443\r\n';
  t.equal(V1ProxyProtocol.parse(leadingZeroPort).source.port, 80, 'library: leading zeros accepted');
  t.equal(whole(Buffer.from(leadingZeroPort)).status, 'invalid');

  const badAddress = 'PROXY TCP4 999.1.1.1 198.51.100.7 1 443\r\n';
  t.equal(V1ProxyProtocol.parse(badAddress).source.ipAddress, '999.1.1.1', 'library: any address text accepted');
  t.equal(whole(Buffer.from(badAddress)).status, 'invalid');

  const bigPort = 'PROXY TCP4 192.0.2.1 198.51.100.7 99999 443\r\n';
  t.equal(V1ProxyProtocol.parse(bigPort).source.port, 99999, 'library: port out of range accepted');
  t.equal(whole(Buffer.from(bigPort)).status, 'invalid');

  const overrun = v2(0x21, 0x11, [...INET_BLOCK, PP2_TYPE_AUTHORITY, 0, 9, 0x61]);
  t.equal(V2ProxyProtocol.parse(overrun).command, Command.PROXY, 'library: TLV overrun not noticed');
  t.equal(whole(overrun).status, 'invalid');
});

// ---- address literal helpers, checked against Node's own inet_pton/inet_ntop ------------------

t.test('parseIPv6/formatIPv6 agree with Node (SocketAddress) on a table of spellings', async (t) => {
  const valid = [
    '::', '::1', '1::', '1::1', '::ffff:192.0.2.1', '::FFFF:C000:0201', '::192.0.2.1', '::0.0.0.1', '64:ff9b::192.0.2.1',
    '2001:db8::1', '2001:DB8:0:0:1:0:0:1', '2001:db8:0:1:1:1:1:1', '1:0:0:2:0:0:0:3', '0:0:1:0:0:0:0:0',
    'fe80::', '1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7::', '::2:3:4:5:6:7:8', '1:2:3:4:5:6:1.2.3.4', '0000:0000:0000:0000:0000:0000:0000:0001',
    'ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255', '::ffff:0.0.0.0', '::ffff:1:2', '1:0::', 'a:b:c:d:e:f:a:b',
  ];
  const out = new Uint8Array(16);
  for (const text of valid) {
    t.ok(parseIPv6(text, out, 0), `${text} parses`);
    t.equal(formatIPv6(out, 0), new SocketAddress({ address: text, family: 'ipv6' }).address, `${text} formats as Node does`);
  }
  const invalid = [
    '', ':', ':::', '1:::2', '1::2::3', ':1', '1:', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7:8::', '::1:2:3:4:5:6:7:8', '12345::',
    'g::', '::1.2.3', '::1.2.3.4.5', '::256.0.0.1', '::01.2.3.4', '1.2.3.4', '1:2:3:4:5:6:7:1.2.3.4', '::1.2.3.4:5',
    'fe80::1%eth0', '[::1]', ' ::1', '::1 ', '::-1', '::+1',
  ];
  for (const text of invalid) t.notOk(parseIPv6(text, out, 0), `${JSON.stringify(text)} is rejected`);
});

t.test('parseIPv4 is strict dotted-quad', async (t) => {
  const out = new Uint8Array(4);
  for (const text of ['0.0.0.0', '255.255.255.255', '192.0.2.1', '10.0.0.10']) t.ok(parseIPv4(text, out, 0), text);
  t.ok(parseIPv4('198.51.100.7', out, 0) && out.join('.') === '198.51.100.7', 'bytes written');
  for (const text of ['', '1.2.3', '1.2.3.4.5', '256.1.1.1', '01.1.1.1', '1.1.1.00', '1..1.1', '.1.1.1', '1.1.1.1.', '1.1.1.a', '0x1.1.1.1', ' 1.1.1.1', '1.1.1.1 ', '-1.1.1.1']) {
    t.notOk(parseIPv4(text, out, 0), JSON.stringify(text));
  }
});

t.test('crc32c matches the RFC 4960 / iSCSI check value', async (t) => {
  t.equal(crc32c(Buffer.from('123456789')), 0xe3069283);
  t.equal(crc32c(Buffer.alloc(32)), 0x8a9136aa, '32 zero bytes (RFC 3720 B.4)');
});
