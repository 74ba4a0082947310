import t from 'tap';
import { V1BinaryProxyProtocol, V1ProxyProtocol, V2ProxyProtocol, IPv4ProxyAddress, IPv6ProxyAddress, Command, TransportProtocol, AddressFamilyType, UnspecProxyAddress } from 'proxy-protocol-js';
import { SwitchyardError } from '../../src/core/errors.ts';
import { buildLocalProxyHeader, buildProxyHeader, type ProxyHeaderInfo } from '../../src/proxy-protocol/build.ts';
import { ProxyHeaderParser } from '../../src/proxy-protocol/parse.ts';
import { PP2_TYPE_UNIQUE_ID, type ProxyHeader } from '../../src/proxy-protocol/types.ts';

// Addresses are documentation ranges written into header bytes; no socket is used.

const SIG = '0d0a0d0a000d0a515549540a';

function parse(bytes: Buffer): ProxyHeader {
  const result = new ProxyHeaderParser().push(bytes);
  if (result.status !== 'done') throw new Error(`expected a header, got ${result.status}${result.status === 'invalid' ? `: ${result.error.message}` : ''}`);
  if (result.rest.length !== 0) throw new Error('built header has trailing bytes');
  return result.header;
}

const v4Info: ProxyHeaderInfo = { transport: 'tcp', source: { address: '192.0.2.1', port: 56324 }, destination: { address: '198.51.100.7', port: 443 } };
const v6Info: ProxyHeaderInfo = { transport: 'tcp', source: { address: '2001:db8::1', port: 56324 }, destination: { address: '2001:db8::2', port: 443 } };

t.test('exact bytes', async (t) => {
  t.equal(buildProxyHeader('v1', v4Info).toString('latin1'), 'PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n', 'v1 TCP4');
  t.equal(buildProxyHeader('v1', v6Info).toString('latin1'), 'PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n', 'v1 TCP6');
  t.equal(
    buildProxyHeader('v2', v4Info).toString('hex'),
    `${SIG}2111000c` + 'c0000201' + 'c6336407' + 'dc04' + '01bb',
    'v2 TCP4: PROXY, AF_INET|STREAM, length 12',
  );
  t.equal(
    buildProxyHeader('v2', { ...v6Info, transport: 'udp', uniqueId: Buffer.from('id-1') }).toString('hex'),
    `${SIG}2122002b` + '20010db8000000000000000000000001' + '20010db8000000000000000000000002' + 'dc04' + '01bb' + '050004' + Buffer.from('id-1').toString('hex'),
    'v2 UDP6 + UNIQUE_ID TLV: length 36 + 3 + 4 = 43',
  );
  t.equal(buildLocalProxyHeader('v1').toString('latin1'), 'PROXY UNKNOWN\r\n', 'v1 local');
  t.equal(buildLocalProxyHeader('v2').toString('hex'), `${SIG}20000000`, 'v2 LOCAL, AF_UNSPEC, length 0');
});

t.test('round trip build → parse: v1/v2 × IPv4/IPv6 × tcp/udp', async (t) => {
  const pairs = [
    { family: 4 as const, source: { address: '192.0.2.1', port: 0 }, destination: { address: '198.51.100.7', port: 65535 } },
    { family: 4 as const, source: { address: '255.255.255.255', port: 65535 }, destination: { address: '0.0.0.0', port: 0 } },
    { family: 6 as const, source: { address: '2001:db8::1', port: 1 }, destination: { address: '2001:db8:0:1:1:1:1:1', port: 2 } },
    { family: 6 as const, source: { address: '::', port: 40000 }, destination: { address: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', port: 53 } },
  ];
  for (const version of ['v1', 'v2'] as const) {
    for (const transport of ['tcp', 'udp'] as const) {
      for (const pair of pairs) {
        const info: ProxyHeaderInfo = { transport, source: pair.source, destination: pair.destination, uniqueId: Buffer.from('conn-42') };
        const name = `${version} ${transport} IPv${pair.family} ${pair.source.address}`;
        if (version === 'v1' && transport === 'udp') {
          t.throws(() => buildProxyHeader(version, info), /no datagram form/, `${name}: v1 has no udp`);
          continue;
        }
        const header = parse(buildProxyHeader(version, info));
        t.same(
          header,
          {
            version: version === 'v1' ? 1 : 2,
            command: 'proxy',
            transport,
            family: pair.family,
            source: pair.source,
            destination: pair.destination,
            tlvs: version === 'v1' ? [] : [{ type: PP2_TYPE_UNIQUE_ID, value: Buffer.from('conn-42') }],
          },
          name,
        );
      }
    }
  }
  t.same(parse(buildLocalProxyHeader('v1')), { version: 1, command: 'proxy', transport: 'unspec', family: 0, tlvs: [] }, 'v1 local');
  t.same(parse(buildLocalProxyHeader('v2')), { version: 2, command: 'local', transport: 'unspec', family: 0, tlvs: [] }, 'v2 local');
});

t.test('IPv4-mapped addresses are written as IPv4; mixed families become IPv6', async (t) => {
  const mapped: ProxyHeaderInfo = { transport: 'tcp', source: { address: '::ffff:192.0.2.1', port: 1 }, destination: { address: '::FFFF:198.51.100.7', port: 2 } };
  t.equal(buildProxyHeader('v1', mapped).toString(), 'PROXY TCP4 192.0.2.1 198.51.100.7 1 2\r\n', 'v1: both mapped → TCP4');
  t.equal(parse(buildProxyHeader('v2', mapped)).family, 4, 'v2: both mapped → AF_INET');

  const halfMapped: ProxyHeaderInfo = { transport: 'tcp', source: { address: '::ffff:192.0.2.1', port: 1 }, destination: { address: '198.51.100.7', port: 2 } };
  t.equal(buildProxyHeader('v1', halfMapped).toString(), 'PROXY TCP4 192.0.2.1 198.51.100.7 1 2\r\n', 'one mapped, one IPv4 → TCP4');

  const mixed: ProxyHeaderInfo = { transport: 'tcp', source: { address: '192.0.2.1', port: 1 }, destination: { address: '2001:db8::2', port: 2 } };
  t.equal(buildProxyHeader('v1', mixed).toString(), 'PROXY TCP6 ::ffff:192.0.2.1 2001:db8::2 1 2\r\n', 'v1: IPv4 source mapped into IPv6');
  const mixedV2 = parse(buildProxyHeader('v2', { ...mixed, transport: 'udp' }));
  t.same([mixedV2.family, mixedV2.source, mixedV2.destination], [6, { address: '::ffff:192.0.2.1', port: 1 }, { address: '2001:db8::2', port: 2 }], 'v2 UDP6');

  const mixedOther: ProxyHeaderInfo = { transport: 'tcp', source: { address: '2001:db8::1', port: 1 }, destination: { address: '::ffff:198.51.100.7', port: 2 } };
  t.equal(buildProxyHeader('v1', mixedOther).toString(), 'PROXY TCP6 2001:db8::1 ::ffff:198.51.100.7 1 2\r\n', 'v1: mapped destination stays mapped next to an IPv6 source');
});

t.test('IPv6 goes out canonical; a zone id is dropped', async (t) => {
  const info: ProxyHeaderInfo = { transport: 'tcp', source: { address: 'FE80:0:0:0:0:0:0:1%eth0', port: 1 }, destination: { address: '2001:DB8::0001', port: 2 } };
  t.equal(buildProxyHeader('v1', info).toString(), 'PROXY TCP6 fe80::1 2001:db8::1 1 2\r\n');
});

t.test('v1 ignores uniqueId; v2 accepts up to 128 bytes (and an empty one)', async (t) => {
  t.equal(buildProxyHeader('v1', { ...v4Info, uniqueId: Buffer.from('x') }).toString(), 'PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n');
  const max = Buffer.alloc(128, 0x41);
  t.same(parse(buildProxyHeader('v2', { ...v4Info, uniqueId: max })).tlvs, [{ type: PP2_TYPE_UNIQUE_ID, value: max }]);
  t.same(parse(buildProxyHeader('v2', { ...v4Info, uniqueId: Buffer.alloc(0) })).tlvs, [{ type: PP2_TYPE_UNIQUE_ID, value: Buffer.alloc(0) }]);
});

t.test('input that can only come from a bug throws SwitchyardError (source internal)', async (t) => {
  const cases: Array<[string, 'v1' | 'v2', ProxyHeaderInfo, RegExp]> = [
    ['host name', 'v2', { ...v4Info, source: { address: 'localhost', port: 1 } }, /source address "localhost" is not an IP literal/],
    ['empty address', 'v1', { ...v4Info, destination: { address: '', port: 1 } }, /destination address "" is not an IP literal/],
    ['bad IPv4', 'v2', { ...v4Info, source: { address: '192.0.2.256', port: 1 } }, /not an IP literal/],
    ['bad IPv6', 'v2', { ...v4Info, source: { address: '1::2::3', port: 1 } }, /not an IP literal/],
    ['undefined address', 'v2', { ...v4Info, source: { address: undefined as unknown as string, port: 1 } }, /not an IP literal/],
    ['port 65536', 'v2', { ...v4Info, source: { address: '192.0.2.1', port: 65536 } }, /source port 65536 is not 0-65535/],
    ['port -1', 'v1', { ...v4Info, destination: { address: '192.0.2.1', port: -1 } }, /destination port -1/],
    ['port 1.5', 'v2', { ...v4Info, destination: { address: '192.0.2.1', port: 1.5 } }, /destination port 1.5/],
    ['uniqueId 129 bytes', 'v2', { ...v4Info, uniqueId: Buffer.alloc(129) }, /uniqueId is 129 bytes/],
    ['v1 udp', 'v1', { ...v4Info, transport: 'udp' }, /no datagram form/],
  ];
  for (const [name, version, info, message] of cases) {
    try {
      buildProxyHeader(version, info);
      t.fail(`${name}: should throw`);
    } catch (err) {
      t.ok(err instanceof SwitchyardError, `${name}: SwitchyardError`);
      t.match((err as SwitchyardError).message, message, name);
      t.equal((err as SwitchyardError).code, 'SWY_PROXY_HEADER_INVALID');
      t.equal((err as SwitchyardError).source, 'internal');
    }
  }
});

t.test('calls do not leak state into each other (shared scratch)', async (t) => {
  const a = buildProxyHeader('v2', v6Info);
  buildProxyHeader('v2', v4Info);
  try {
    buildProxyHeader('v2', { ...v4Info, destination: { address: 'nope', port: 1 } });
  } catch {
    // expected
  }
  t.ok(buildProxyHeader('v2', v6Info).equals(a), 'same input, same bytes after other calls and a failure');
  const local = buildLocalProxyHeader('v2');
  local.fill(0);
  t.equal(buildLocalProxyHeader('v2').toString('hex'), `${SIG}20000000`, 'local header is a fresh copy each time');
});

t.test('interop: proxy-protocol-js parses what we build', async (t) => {
  const v1Line = buildProxyHeader('v1', v4Info);
  const lib1 = V1BinaryProxyProtocol.parse(v1Line);
  t.same([lib1.inetProtocol, lib1.source.ipAddress, lib1.source.port, lib1.destination.ipAddress, lib1.destination.port], ['TCP4', '192.0.2.1', 56324, '198.51.100.7', 443], 'v1 TCP4 (binary parser)');
  const lib1s = V1ProxyProtocol.parse(buildProxyHeader('v1', v6Info).toString('latin1'));
  t.same([lib1s.inetProtocol, lib1s.source.ipAddress, lib1s.destination.ipAddress], ['TCP6', '2001:db8::1', '2001:db8::2'], 'v1 TCP6 (text parser)');

  const lib2 = V2ProxyProtocol.parse(buildProxyHeader('v2', { ...v4Info, transport: 'udp', uniqueId: Buffer.from('u') }));
  t.equal(lib2.command, Command.PROXY);
  t.equal(lib2.transportProtocol, TransportProtocol.DGRAM);
  t.equal(lib2.addressFamilyType, AddressFamilyType.INET);
  const a4 = lib2.proxyAddress as IPv4ProxyAddress;
  t.same([a4.sourceAddress.address, a4.sourcePort, a4.destinationAddress.address, a4.destinationPort], [[192, 0, 2, 1], 56324, [198, 51, 100, 7], 443], 'v2 UDP4');
  t.same([...(lib2.data ?? [])], [PP2_TYPE_UNIQUE_ID, 0, 1, 0x75], 'the TLV follows the address block');

  const lib6 = V2ProxyProtocol.parse(buildProxyHeader('v2', v6Info));
  const a6 = lib6.proxyAddress as IPv6ProxyAddress;
  t.equal(lib6.addressFamilyType, AddressFamilyType.INET6);
  t.same([a6.sourceAddress.address.slice(0, 4), a6.sourceAddress.address[15], a6.destinationAddress.address[15], a6.sourcePort, a6.destinationPort], [[0x20, 0x01, 0x0d, 0xb8], 1, 2, 56324, 443], 'v2 TCP6');

  const local = V2ProxyProtocol.parse(buildLocalProxyHeader('v2'));
  t.equal(local.command, Command.LOCAL);
  t.ok(local.proxyAddress instanceof UnspecProxyAddress, 'v2 LOCAL is AF_UNSPEC');
});
