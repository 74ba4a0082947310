import t from 'tap';
import { SocketAddress, isIP } from 'node:net';
import { SwitchyardError } from '../../src/core/errors.ts';
import { buildLocalProxyHeader, buildProxyHeader } from '../../src/proxy-protocol/build.ts';
import { ProxyHeaderParser, crc32c, formatIPv6, parseIPv6, type ProxyParseResult } from '../../src/proxy-protocol/parse.ts';
import type { ProxyHeader } from '../../src/proxy-protocol/types.ts';

// Bounded, seeded fuzzing: every run explores the same inputs, so a failure names its seed
// and iteration and reproduces with PP_FUZZ_SEED=<seed>. Checked on every input: the parser
// never throws; whole, randomly split and byte-by-byte delivery give the same verdict; a
// header it accepts has valid IP literals of its family, ports in range, and `rest` exactly
// the bytes after the header as the spec frames it.

const SEED = Number(process.env.PP_FUZZ_SEED ?? 0x5eed_2024);
const ITERATIONS = 20_000;
/** Byte-by-byte delivery is the slowest mode; run it on every Nth input. */
const BYTEWISE_EVERY = 5;

/** mulberry32: tiny, fast, good enough to spread inputs; deterministic for a seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const SIG = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

function v2(verCmd: number, fam: number, payload: number[] | Buffer): Buffer {
  const body = Buffer.from(payload);
  return Buffer.concat([SIG, Buffer.from([verCmd, fam, body.length >> 8, body.length & 0xff]), body]);
}
function tlv(type: number, value: Buffer | string): Buffer {
  const bytes = Buffer.from(value);
  return Buffer.concat([Buffer.from([type, bytes.length >> 8, bytes.length & 0xff]), bytes]);
}

function corpus(): Buffer[] {
  const out: Buffer[] = [];
  const endpoints = [
    ['192.0.2.1', '198.51.100.7'],
    ['0.0.0.0', '255.255.255.255'],
    ['2001:db8::1', '2001:db8:0:1:1:1:1:1'],
    ['::ffff:192.0.2.1', '2001:db8::2'],
    ['::', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'],
  ];
  for (const [source, destination] of endpoints) {
    for (const transport of ['tcp', 'udp'] as const) {
      const info = { transport, source: { address: source!, port: 56324 }, destination: { address: destination!, port: 443 } };
      out.push(buildProxyHeader('v2', info));
      out.push(buildProxyHeader('v2', { ...info, uniqueId: Buffer.from('conn-0001') }));
      if (transport === 'tcp') out.push(buildProxyHeader('v1', info));
    }
  }
  out.push(buildLocalProxyHeader('v1'), buildLocalProxyHeader('v2'));
  out.push(Buffer.from('PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n'));
  out.push(Buffer.from('PROXY TCP6 2001:0DB8:0:0:0:0:0:0001 ::FFFF:192.0.2.9 0 65535\r\n'));
  const inet = [192, 0, 2, 1, 198, 51, 100, 7, 0xdc, 0x04, 0x01, 0xbb];
  out.push(v2(0x21, 0x11, [...inet, ...tlv(0x01, 'h2'), ...tlv(0x04, '\0\0\0'), ...tlv(0x02, 'example.com'), ...tlv(0x20, '\x01\0\0\0\0')]));
  out.push(v2(0x21, 0x31, Buffer.concat([Buffer.alloc(216, 0x2f), tlv(0x05, 'u')])));
  out.push(v2(0x20, 0x11, inet), v2(0x21, 0x00, [1, 2, 3]), v2(0x21, 0x10, inet));
  const withCrc = v2(0x21, 0x11, [...inet, ...tlv(0x03, '\0\0\0\0'), ...tlv(0x02, 'x')]);
  withCrc.writeUInt32BE(crc32c(withCrc), 16 + 12 + 3);
  out.push(withCrc);
  return out;
}

function randomBytes(random: () => number, length: number): Buffer {
  const bytes = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) bytes[i] = Math.floor(random() * 256);
  return bytes;
}

/** One to four mutations of `seed`, each a classic: bit flip, byte set, truncate, insert, delete, length poke. */
function mutate(random: () => number, seed: Buffer): Buffer {
  let bytes = Buffer.from(seed);
  const rounds = 1 + Math.floor(random() * 4);
  for (let r = 0; r < rounds; r++) {
    const at = Math.floor(random() * (bytes.length + 1));
    switch (Math.floor(random() * 7)) {
      case 0:
        if (at < bytes.length) bytes[at] ^= 1 << Math.floor(random() * 8);
        break;
      case 1:
        if (at < bytes.length) bytes[at] = Math.floor(random() * 256);
        break;
      case 2:
        bytes = bytes.subarray(0, at);
        break;
      case 3:
        bytes = Buffer.concat([bytes.subarray(0, at), randomBytes(random, 1 + Math.floor(random() * 8)), bytes.subarray(at)]);
        break;
      case 4:
        bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(Math.min(bytes.length, at + 1 + Math.floor(random() * 8)))]);
        break;
      case 5:
        // Poke the v2 length field (both directions) or a v1 digit.
        if (bytes.length >= 16 && bytes[0] === 0x0d) bytes.writeUInt16BE(Math.max(0, Math.min(0xffff, bytes.readUInt16BE(14) + Math.floor(random() * 41) - 20)), 14);
        else if (at < bytes.length) bytes[at] = 0x30 + Math.floor(random() * 10);
        break;
      default:
        // Replace with a structural byte the parsers care about.
        if (at < bytes.length) bytes[at] = [0x20, 0x0d, 0x0a, 0x3a, 0x2e, 0x00, 0xff][Math.floor(random() * 7)]!;
    }
  }
  return bytes;
}

/** A canonical, comparable description of a result, counting unfed bytes as part of `rest`. */
function verdict(result: ProxyParseResult, after?: Buffer): string {
  if (result.status === 'incomplete') return 'incomplete';
  if (result.status === 'invalid') return `invalid: ${result.error.message}`;
  const header = JSON.stringify(result.header, (_key, value: unknown) =>
    value && typeof value === 'object' && (value as { type?: unknown }).type === 'Buffer' ? `hex:${Buffer.from((value as { data: number[] }).data).toString('hex')}` : value,
  );
  return `done: ${header} rest=${(after ?? result.rest).toString('hex')}`;
}

function feedChunks(input: Buffer, cuts: number[]): string {
  const parser = new ProxyHeaderParser();
  let from = 0;
  for (const cut of [...cuts, input.length]) {
    const result = parser.push(input.subarray(from, cut));
    if (result.status === 'done') return verdict(result, Buffer.concat([result.rest, input.subarray(cut)]));
    if (result.status === 'invalid') return verdict(result);
    from = cut;
  }
  return 'incomplete';
}

/** Problems with an accepted header, judged from the input bytes alone (not the parser's view). */
function checkDone(input: Buffer, header: ProxyHeader, rest: Buffer): string | undefined {
  if (header.family === 4 || header.family === 6) {
    if (header.command !== 'proxy') return 'addresses on a non-proxy command';
    for (const end of [header.source, header.destination]) {
      if (end === undefined) return 'family 4/6 without both addresses';
      if (isIP(end.address) !== header.family) return `address ${end.address} is not IPv${header.family}`;
      if (header.family === 6 && new SocketAddress({ address: end.address, family: 'ipv6' }).address !== end.address) return `IPv6 ${end.address} is not canonical`;
      if (!Number.isInteger(end.port) || end.port < 0 || end.port > 65535) return `port ${end.port} out of range`;
    }
  } else if (header.family !== 0 || header.source !== undefined || header.destination !== undefined) {
    return 'addresses present with family 0';
  }
  let headerLength: number;
  if (input[0] === 0x50) {
    if (header.version !== 1 || header.tlvs.length !== 0) return 'v1 header with version 2 or TLVs';
    headerLength = input.indexOf('\r\n') + 2;
    if (headerLength < 2 || headerLength > 107) return `v1 line of ${headerLength} bytes accepted`;
  } else {
    if (header.version !== 2 || !input.subarray(0, 12).equals(SIG)) return 'v2 header without the signature';
    headerLength = 16 + input.readUInt16BE(14);
    if (header.tlvs.some((t) => t.type === 0x04)) return 'NOOP TLV exposed';
  }
  if (!rest.equals(input.subarray(headerLength))) return `rest is not the ${input.length - headerLength} bytes after the ${headerLength}-byte header`;
  return undefined;
}

t.test(`parser fuzz: ${ITERATIONS} inputs, seed ${SEED}`, async (t) => {
  const random = prng(SEED);
  const seeds = corpus();
  const started = Date.now();
  const failures: string[] = [];
  const tally = { done: 0, invalid: 0, incomplete: 0 };

  for (let i = 0; i < ITERATIONS && failures.length < 5; i++) {
    let input: Buffer;
    const kind = random();
    if (kind < 0.25) {
      // Random bytes, often behind a valid start so they get past the first-byte check.
      const prefix = [Buffer.alloc(0), Buffer.from('PROXY '), Buffer.from('PROXY TCP4 '), SIG, Buffer.concat([SIG, Buffer.from([0x21])])][Math.floor(random() * 5)]!;
      input = Buffer.concat([prefix, randomBytes(random, Math.floor(random() * 200))]);
    } else {
      const seed = seeds[Math.floor(random() * seeds.length)]!;
      input = Buffer.concat([kind < 0.35 ? seed : mutate(random, seed), randomBytes(random, Math.floor(random() * 24))]);
    }
    const cuts: number[] = [];
    const pieces = Math.floor(random() * 5);
    for (let p = 0; p < pieces; p++) cuts.push(Math.floor(random() * (input.length + 1)));
    cuts.sort((a, b) => a - b);

    const where = `seed ${SEED} iteration ${i} input ${input.toString('hex')}`;
    try {
      const result = new ProxyHeaderParser().push(input);
      tally[result.status]++;
      const whole = verdict(result);
      if (result.status === 'invalid' && !(result.error instanceof SwitchyardError && result.error.code === 'SWY_PROXY_HEADER_INVALID' && result.error.source === 'downstream')) {
        failures.push(`${where}: invalid without a proper SwitchyardError`);
      }
      if (result.status === 'done') {
        const problem = checkDone(input, result.header, result.rest);
        if (problem) failures.push(`${where}: ${problem}`);
      }
      if (result.status === 'incomplete') {
        const bound = input[0] === 0x0d && input.length >= 16 ? 16 + input.readUInt16BE(14) : input[0] === 0x0d ? 16 : 107;
        if (input.length >= bound) failures.push(`${where}: incomplete with ${input.length} bytes (bound ${bound})`);
      }
      const split = feedChunks(input, cuts);
      if (split !== whole) failures.push(`${where}: split at ${cuts.join(',')} gave "${split}", whole gave "${whole}"`);
      if (i % BYTEWISE_EVERY === 0) {
        const bytewise = feedChunks(input, Array.from({ length: input.length }, (_, k) => k + 1));
        if (bytewise !== whole) failures.push(`${where}: byte by byte gave "${bytewise}", whole gave "${whole}"`);
      }
    } catch (err) {
      failures.push(`${where}: threw ${(err as Error).stack ?? String(err)}`);
    }
  }

  t.same(failures, [], 'no invariant broken');
  // The mix must actually exercise all three outcomes, or the fuzz proves little.
  t.ok(tally.done > ITERATIONS / 20 && tally.invalid > ITERATIONS / 4 && tally.incomplete > ITERATIONS / 50, `outcomes ${JSON.stringify(tally)}`);
  t.ok(Date.now() - started < 10_000, `finished in ${Date.now() - started} ms`);
});

t.test('address literal fuzz: parseIPv6/formatIPv6 agree with Node', async (t) => {
  const random = prng(SEED ^ 0x1234);
  const failures: string[] = [];
  const tokens = ['0', '1', 'ff', 'FFFF', 'abcd', '0db8', '12345', 'g', ':', '::', ':::', '.', '1.2.3.4', '255.255.255.255', '256', '01', '%eth0', ' ', ''];
  const out = new Uint8Array(16);
  let accepted = 0;
  for (let i = 0; i < 20_000 && failures.length < 5; i++) {
    let text = '';
    const count = 1 + Math.floor(random() * 12);
    for (let k = 0; k < count; k++) text += tokens[Math.floor(random() * tokens.length)];
    const ours = parseIPv6(text, out, 0);
    // Node's isIP also accepts a zone id; the PROXY protocol has no room for one.
    const node = isIP(text) === 6 && !text.includes('%');
    if (ours !== node) failures.push(`${JSON.stringify(text)}: parseIPv6 ${ours}, Node ${node}`);
    if (ours && node) {
      accepted++;
      const canonical = new SocketAddress({ address: text, family: 'ipv6' }).address;
      if (formatIPv6(out, 0) !== canonical) failures.push(`${JSON.stringify(text)}: formatted ${formatIPv6(out, 0)}, Node ${canonical}`);
    }
  }
  for (let i = 0; i < 20_000 && failures.length < 5; i++) {
    // Random addresses biased towards zero groups and the mapped/compatible prefixes.
    const bytes = new Uint8Array(16);
    for (let g = 0; g < 8; g++) {
      if (random() < 0.5) continue;
      bytes[2 * g] = random() < 0.5 ? 0 : Math.floor(random() * 256);
      bytes[2 * g + 1] = Math.floor(random() * 256);
    }
    if (random() < 0.2) bytes.fill(0, 0, 10), bytes.fill(random() < 0.5 ? 0xff : 0, 10, 12);
    const text = formatIPv6(bytes, 0);
    const canonical = new SocketAddress({ address: text, family: 'ipv6' }).address;
    if (text !== canonical) failures.push(`${Buffer.from(bytes).toString('hex')}: formatted ${text}, Node ${canonical}`);
    if (!parseIPv6(text, out, 0) || !Buffer.from(out).equals(Buffer.from(bytes))) failures.push(`${text}: does not parse back to its bytes`);
  }
  t.same(failures, [], 'no disagreement');
  t.ok(accepted > 200, `${accepted} random spellings were valid IPv6 (the generator reaches both sides)`);
});
