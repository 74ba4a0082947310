import { IPv4ProxyAddress, IPv6ProxyAddress, V2ProxyProtocol } from 'proxy-protocol-js';
import { SwitchyardError, describeError } from '../core/errors.ts';
import {
  PP2_TLV_HEADER_LENGTH,
  PP2_TYPE_CRC32C,
  PP2_TYPE_NOOP,
  PP2_TYPE_UNIQUE_ID,
  PP2_UNIQUE_ID_MAX_LENGTH,
  V1_MAX_LINE_LENGTH,
  V2_ADDRESS_LENGTH_INET,
  V2_ADDRESS_LENGTH_INET6,
  V2_ADDRESS_LENGTH_UNIX,
  V2_AF_INET,
  V2_AF_INET6,
  V2_AF_UNIX,
  V2_COMMAND_LOCAL,
  V2_COMMAND_PROXY,
  V2_DEFAULT_MAX_LENGTH,
  V2_FIXED_LENGTH,
  V2_SIGNATURE,
  V2_TRANSPORT_DGRAM,
  V2_TRANSPORT_STREAM,
  V2_TRANSPORT_UNSPEC,
  type ProxyAddress,
  type ProxyHeader,
  type ProxyTlv,
} from './types.ts';

/**
 * Incremental PROXY protocol v1/v2 receiver (HAProxy's `accept-proxy`).
 *
 * proxy-protocol-js (a mandated dependency) only parses complete headers, ignores the v2
 * length field and TLVs, and accepts any address or port text; so the framing, every length
 * check, the TLVs and the address/port validation are done here, and the library is only
 * asked to decode the address block of a v2 header that has already been framed and checked.
 * Its errors (which do not extend Error) are wrapped into SwitchyardError at that one point.
 */

export type ProxyParseResult =
  | { status: 'incomplete' }
  | { status: 'done'; header: ProxyHeader; rest: Buffer }
  | { status: 'invalid'; error: SwitchyardError };

export interface ProxyHeaderParserOptions {
  /**
   * Largest v2 payload (address block + TLVs, i.e. the header's length field) accepted, in
   * bytes. Default 4096. A header announcing more is invalid as soon as its length is read.
   */
  maxV2Length?: number;
}

const CR = 0x0d;
const LF = 0x0a;
const SPACE = 0x20;
const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
const V1_PREFIX_LENGTH = V1_PREFIX.length;

const INCOMPLETE: ProxyParseResult = Object.freeze({ status: 'incomplete' });
const EMPTY = Buffer.alloc(0);
const NO_TLVS: readonly ProxyTlv[] = Object.freeze([]);

/**
 * Reads one PROXY header from the start of a connection, however the bytes are split.
 *
 * Usage: one parser per connection; call `push(chunk)` for each chunk read until it returns
 * 'done' (use `header`; `rest` holds the bytes after the header, for the upstream) or
 * 'invalid' (close the connection; `error` is a SwitchyardError SWY_PROXY_HEADER_INVALID
 * with source 'downstream'). It must not be fed again after that (doing so throws: a bug).
 *
 * Rejection is as early as the bytes allow: a first byte that starts neither "PROXY " nor the
 * v2 signature, any signature byte that differs, a bad v2 version/command/family byte, or a
 * v2 length over the limit fails on the byte that shows it, without waiting for more.
 *
 * Cost: when the whole header is in the first chunk (the normal case) nothing is copied and
 * `rest` is a view of that chunk; only a header split across chunks is buffered, and only
 * the bytes the header can still need (at most 107 for v1, 16 + length for v2).
 */
export class ProxyHeaderParser {
  private readonly maxV2Length: number;
  /** Bytes of a split header so far; allocated only when the first chunk was not enough. */
  private buffer: Buffer = EMPTY;
  private filled = 0;
  /** Set by frame() when it reports incomplete: the total byte count it wants to see next. */
  private need = 0;
  /** Set by frame() when it reports a header: the header's length in bytes. */
  private headerLength = 0;
  private finished = false;

  constructor(options: ProxyHeaderParserOptions = {}) {
    const max = options.maxV2Length ?? V2_DEFAULT_MAX_LENGTH;
    // A bad limit is a configuration bug, not a downstream failure: throw.
    if (!Number.isInteger(max) || max < 0 || max > 0xffff) {
      throw new RangeError(`maxV2Length must be an integer from 0 to 65535, got ${max}`);
    }
    this.maxV2Length = max;
  }

  /**
   * Feeds the next bytes of the connection (any size, including one byte or none).
   * Returns 'incomplete' (feed more), 'done' or 'invalid' (final). See the class comment.
   */
  push(chunk: Buffer): ProxyParseResult {
    if (this.finished) throw new Error('ProxyHeaderParser.push() called after the header was done or invalid');

    if (this.filled === 0) {
      // Fast path: parse straight from the chunk, no copy.
      const outcome = this.frame(chunk, chunk.length);
      if (outcome !== undefined) return this.finish(outcome, chunk, this.headerLength);
      if (chunk.length > 0) {
        this.buffer = Buffer.allocUnsafe(this.need);
        chunk.copy(this.buffer, 0);
        this.filled = chunk.length;
      }
      return INCOMPLETE;
    }

    // Split header: append only what it can still need, re-frame after each step (a v2
    // header learns its full size once its first 16 bytes are in, hence the loop).
    const before = this.filled;
    let offset = 0;
    while (offset < chunk.length) {
      if (this.buffer.length < this.need) {
        const grown = Buffer.allocUnsafe(this.need);
        this.buffer.copy(grown, 0, 0, this.filled);
        this.buffer = grown;
      }
      const take = Math.min(this.need - this.filled, chunk.length - offset);
      chunk.copy(this.buffer, this.filled, offset, offset + take);
      this.filled += take;
      offset += take;
      const outcome = this.frame(this.buffer, this.filled);
      // The header ends inside this chunk: everything buffered before it was header bytes.
      if (outcome !== undefined) return this.finish(outcome, chunk, this.headerLength - before);
    }
    return INCOMPLETE;
  }

  private finish(outcome: ProxyHeader | SwitchyardError, chunk: Buffer, endInChunk: number): ProxyParseResult {
    this.finished = true;
    this.buffer = EMPTY;
    if (outcome instanceof SwitchyardError) return { status: 'invalid', error: outcome };
    return { status: 'done', header: outcome, rest: endInChunk >= chunk.length ? EMPTY : chunk.subarray(endInChunk) };
  }

  /**
   * Looks at the first `length` bytes of `data` (everything received so far). Returns a
   * header (and sets headerLength), an error, or undefined for "need more" (and sets `need`,
   * always > length). Pure in the bytes: the same bytes give the same answer however they
   * arrived, which is what makes split and whole delivery agree.
   */
  private frame(data: Buffer, length: number): ProxyHeader | SwitchyardError | undefined {
    if (length === 0) {
      this.need = 1;
      return undefined;
    }
    const first = data[0];
    if (first === V2_SIGNATURE[0]) return this.frameV2(data, length);
    if (first === V1_PREFIX[0]) return this.frameV1(data, length);
    return invalid(`not a PROXY header: first byte 0x${hex2(first!)} starts neither "PROXY " nor the v2 signature`);
  }

  // ---- v1: one text line -------------------------------------------------------------------

  private frameV1(data: Buffer, length: number): ProxyHeader | SwitchyardError | undefined {
    const prefixEnd = Math.min(length, V1_PREFIX_LENGTH);
    for (let i = 1; i < prefixEnd; i++) {
      if (data[i] !== V1_PREFIX[i]) return invalid('v1: the line must start with "PROXY " (one space)');
    }
    const scanEnd = Math.min(length, V1_MAX_LINE_LENGTH);
    for (let i = prefixEnd; i < scanEnd; i++) {
      const byte = data[i];
      if (byte === LF) return invalid('v1: LF without CR');
      if (byte !== CR) continue;
      // The LF must still fit in the 107 bytes.
      if (i + 1 >= V1_MAX_LINE_LENGTH) return invalid(`v1: no CRLF within the first ${V1_MAX_LINE_LENGTH} bytes`);
      if (i + 1 >= length) break; // CR is the last byte so far: wait for the LF
      if (data[i + 1] !== LF) return invalid('v1: CR not followed by LF');
      this.headerLength = i + 2;
      return parseV1Line(data, V1_PREFIX_LENGTH, i);
    }
    if (length >= V1_MAX_LINE_LENGTH) return invalid(`v1: no CRLF within the first ${V1_MAX_LINE_LENGTH} bytes`);
    this.need = V1_MAX_LINE_LENGTH;
    return undefined;
  }

  // ---- v2: binary --------------------------------------------------------------------------

  private frameV2(data: Buffer, length: number): ProxyHeader | SwitchyardError | undefined {
    const signatureEnd = Math.min(length, V2_SIGNATURE.length);
    for (let i = 1; i < signatureEnd; i++) {
      if (data[i] !== V2_SIGNATURE[i]) return invalid('v2: bad signature');
    }
    if (length > 12) {
      const versionCommand = data[12]!;
      if (versionCommand >> 4 !== 2) return invalid(`v2: version ${versionCommand >> 4}, expected 2`);
      const command = versionCommand & 0x0f;
      if (command !== V2_COMMAND_LOCAL && command !== V2_COMMAND_PROXY) return invalid(`v2: unknown command 0x${command.toString(16)}`);
    }
    if (length > 13) {
      const familyTransport = data[13]!;
      if (familyTransport >> 4 > V2_AF_UNIX) return invalid(`v2: unknown address family 0x${(familyTransport >> 4).toString(16)}`);
      if ((familyTransport & 0x0f) > V2_TRANSPORT_DGRAM) return invalid(`v2: unknown transport 0x${(familyTransport & 0x0f).toString(16)}`);
    }
    if (length < V2_FIXED_LENGTH) {
      this.need = V2_FIXED_LENGTH;
      return undefined;
    }
    const command = data[12]! & 0x0f;
    const family = data[13]! >> 4;
    const transport = data[13]! & 0x0f;
    const payloadLength = (data[14]! << 8) | data[15]!;
    if (payloadLength > this.maxV2Length) return invalid(`v2: length ${payloadLength} is over the limit of ${this.maxV2Length}`);
    const block = command === V2_COMMAND_PROXY ? addressBlockLength(family, transport) : IGNORED;
    if (payloadLength < block) return invalid(`v2: length ${payloadLength} is shorter than the ${block}-byte address block`);
    const total = V2_FIXED_LENGTH + payloadLength;
    if (length < total) {
      this.need = total;
      return undefined;
    }
    this.headerLength = total;
    return decodeV2(data, command, family, transport, block, total);
  }
}

/** addressBlockLength() for a header whose address block (and so its TLVs) is not read. */
const IGNORED = -1;

/**
 * Size of the v2 address block the receiver reads for a PROXY command, or IGNORED when the
 * spec says to ignore the address information (AF_UNSPEC, or transport UNSPEC over
 * AF_INET/AF_INET6: no defined layout, so no known place where TLVs would start).
 */
function addressBlockLength(family: number, transport: number): number {
  if (family === V2_AF_UNIX) return V2_ADDRESS_LENGTH_UNIX; // 2 × 108-byte paths, whatever the transport
  if (transport === V2_TRANSPORT_UNSPEC) return IGNORED;
  if (family === V2_AF_INET) return V2_ADDRESS_LENGTH_INET;
  if (family === V2_AF_INET6) return V2_ADDRESS_LENGTH_INET6;
  return IGNORED;
}

function transportName(transport: number): ProxyHeader['transport'] {
  return transport === V2_TRANSPORT_STREAM ? 'tcp' : transport === V2_TRANSPORT_DGRAM ? 'udp' : 'unspec';
}

/** Decodes a complete, framed v2 header of `total` bytes whose fixed part is already checked. */
function decodeV2(data: Buffer, command: number, family: number, transport: number, block: number, total: number): ProxyHeader | SwitchyardError {
  const transportText = transportName(transport);
  // LOCAL: "discard the protocol block including the family" (spec 2.2); so are its TLVs.
  if (command === V2_COMMAND_LOCAL) return { version: 2, command: 'local', transport: transportText, family: 0, tlvs: NO_TLVS };
  if (block === IGNORED) return { version: 2, command: 'proxy', transport: transportText, family: 0, tlvs: NO_TLVS };

  const tlvs = parseTlvs(data, V2_FIXED_LENGTH + block, total);
  if (tlvs instanceof SwitchyardError) return tlvs;
  if (family === V2_AF_UNIX) return { version: 2, command: 'proxy', transport: transportText, family: 0, tlvs };

  let decoded: V2ProxyProtocol;
  try {
    decoded = V2ProxyProtocol.parse(data.subarray(0, total));
  } catch (err) {
    return wrapLibraryError(err);
  }
  const addresses = decoded.proxyAddress;
  let source: ProxyAddress;
  let destination: ProxyAddress;
  if (family === V2_AF_INET && addresses instanceof IPv4ProxyAddress) {
    source = { address: formatIPv4(addresses.sourceAddress.address, 0), port: addresses.sourcePort };
    destination = { address: formatIPv4(addresses.destinationAddress.address, 0), port: addresses.destinationPort };
  } else if (family === V2_AF_INET6 && addresses instanceof IPv6ProxyAddress) {
    source = { address: formatIPv6(addresses.sourceAddress.address, 0), port: addresses.sourcePort };
    destination = { address: formatIPv6(addresses.destinationAddress.address, 0), port: addresses.destinationPort };
  } else {
    return invalid('v2: proxy-protocol-js decoded a different address family than the header names');
  }
  // The library computes ports as (hi << 8) + lo from whatever it reads; check, don't trust.
  if (!isPort(source.port) || !isPort(destination.port)) return invalid('v2: port out of range');
  return { version: 2, command: 'proxy', transport: transportText, family: family === V2_AF_INET ? 4 : 6, source, destination, tlvs };
}

/**
 * Parses the TLVs in data[start, end): they must tile the range exactly (a TLV running past
 * the header length, or a partial TLV header at the end, is invalid). NOOP TLVs are padding
 * and dropped; a UNIQUE_ID longer than 128 bytes is invalid; a CRC32C TLV must be 4 bytes,
 * appear once and match the header's checksum (spec 2.2.3).
 */
function parseTlvs(data: Buffer, start: number, end: number): readonly ProxyTlv[] | SwitchyardError {
  if (start === end) return NO_TLVS;
  const tlvs: ProxyTlv[] = [];
  let crcAt = -1;
  let at = start;
  while (at < end) {
    if (end - at < PP2_TLV_HEADER_LENGTH) return invalid(`v2: ${end - at} stray byte(s) after the last TLV`);
    const type = data[at]!;
    const valueLength = (data[at + 1]! << 8) | data[at + 2]!;
    const valueStart = at + PP2_TLV_HEADER_LENGTH;
    if (valueLength > end - valueStart) {
      return invalid(`v2: TLV 0x${hex2(type)} of ${valueLength} bytes runs past the header length`);
    }
    if (type === PP2_TYPE_UNIQUE_ID && valueLength > PP2_UNIQUE_ID_MAX_LENGTH) {
      return invalid(`v2: UNIQUE_ID TLV of ${valueLength} bytes (at most ${PP2_UNIQUE_ID_MAX_LENGTH})`);
    }
    if (type === PP2_TYPE_CRC32C) {
      if (valueLength !== 4) return invalid(`v2: CRC32C TLV of ${valueLength} bytes (must be 4)`);
      if (crcAt >= 0) return invalid('v2: more than one CRC32C TLV');
      crcAt = valueStart;
    }
    // Copy the value: a view would keep the whole socket read buffer alive as long as the
    // header is kept (the connection's lifetime); TLVs are small.
    if (type !== PP2_TYPE_NOOP) tlvs.push({ type, value: Buffer.from(data.subarray(valueStart, valueStart + valueLength)) });
    at = valueStart + valueLength;
  }
  if (crcAt >= 0 && !checksumMatches(data, end, crcAt)) return invalid('v2: CRC32C checksum mismatch');
  return tlvs;
}

/** The CRC32C of the header data[0, total) with its 4-byte checksum field at `fieldAt` taken as zero. */
function checksumMatches(data: Buffer, total: number, fieldAt: number): boolean {
  let crc = crc32cUpdate(CRC32C_INIT, data, 0, fieldAt);
  crc = crc32cUpdate(crc, ZERO4, 0, 4);
  crc = crc32cUpdate(crc, data, fieldAt + 4, total);
  return (crc ^ CRC32C_INIT) >>> 0 === data.readUInt32BE(fieldAt);
}

// ---- v1 line -------------------------------------------------------------------------------

/** Field bounds and address bytes of the v1 line being parsed; reused (parsing is synchronous). */
const fieldStarts = new Int32Array(4);
const fieldEnds = new Int32Array(4);
const v1Scratch = new Uint8Array(16);

/**
 * Parses the line between "PROXY " (at `start`) and its CR (at `end`), strictly: the
 * protocol, then exactly four fields separated by single spaces; addresses must be literals
 * of the announced family, ports decimal 0-65535 without sign or leading zero.
 */
function parseV1Line(data: Buffer, start: number, end: number): ProxyHeader | SwitchyardError {
  if (startsWith(data, start, end, 'UNKNOWN') && (end === start + 7 || data[start + 7] === SPACE)) {
    // "the receiver must ignore anything presented before the CRLF" (spec 2.1).
    return { version: 1, command: 'proxy', transport: 'unspec', family: 0, tlvs: NO_TLVS };
  }
  let family: 4 | 6;
  if (startsWith(data, start, end, 'TCP4 ')) family = 4;
  else if (startsWith(data, start, end, 'TCP6 ')) family = 6;
  else return invalid('v1: protocol must be TCP4, TCP6 or UNKNOWN followed by one space');

  let count = 0;
  let at = start + 5;
  for (;;) {
    let stop = at;
    while (stop < end && data[stop] !== SPACE) stop++;
    if (stop === at) return invalid('v1: empty field (two spaces in a row, or a space before CRLF)');
    if (count === 4) return invalid('v1: more than four fields after the protocol');
    fieldStarts[count] = at;
    fieldEnds[count] = stop;
    count++;
    if (stop === end) break;
    at = stop + 1;
  }
  if (count !== 4) return invalid(`v1: expected "<source> <destination> <source port> <destination port>", got ${count} field(s)`);

  const sourceText = data.toString('latin1', fieldStarts[0], fieldEnds[0]);
  const destinationText = data.toString('latin1', fieldStarts[1], fieldEnds[1]);
  const sourceAddress = v1Address(sourceText, family);
  if (sourceAddress === undefined) return invalid(`v1: source ${quote(sourceText)} is not an IPv${family} address`);
  const destinationAddress = v1Address(destinationText, family);
  if (destinationAddress === undefined) return invalid(`v1: destination ${quote(destinationText)} is not an IPv${family} address`);
  const sourcePort = v1Port(data, fieldStarts[2], fieldEnds[2]);
  if (sourcePort < 0) return invalid(`v1: source port ${quote(data.toString('latin1', fieldStarts[2], fieldEnds[2]))} is not 0-65535 without leading zeros`);
  const destinationPort = v1Port(data, fieldStarts[3], fieldEnds[3]);
  if (destinationPort < 0) return invalid(`v1: destination port ${quote(data.toString('latin1', fieldStarts[3], fieldEnds[3]))} is not 0-65535 without leading zeros`);
  return {
    version: 1,
    command: 'proxy',
    transport: 'tcp',
    family,
    source: { address: sourceAddress, port: sourcePort },
    destination: { address: destinationAddress, port: destinationPort },
    tlvs: NO_TLVS,
  };
}

/** The address as returned in the header (IPv6 in canonical form), or undefined if invalid. */
function v1Address(text: string, family: 4 | 6): string | undefined {
  if (family === 4) return parseIPv4(text, v1Scratch, 0) ? text : undefined; // valid ⇒ already canonical
  return parseIPv6(text, v1Scratch, 0) ? formatIPv6(v1Scratch, 0) : undefined;
}

/** Decimal port in data[start, end), or -1: 1-5 digits, no leading zero (except "0"), ≤ 65535. */
function v1Port(data: Buffer, start: number, end: number): number {
  const digits = end - start;
  if (digits < 1 || digits > 5) return -1;
  if (digits > 1 && data[start] === 0x30) return -1;
  let value = 0;
  for (let i = start; i < end; i++) {
    const digit = data[i]! - 0x30;
    if (digit < 0 || digit > 9) return -1;
    value = value * 10 + digit;
  }
  return value <= 0xffff ? value : -1;
}

function startsWith(data: Buffer, start: number, end: number, text: string): boolean {
  if (end - start < text.length) return false;
  for (let i = 0; i < text.length; i++) if (data[start + i] !== text.charCodeAt(i)) return false;
  return true;
}

// ---- address literals (shared with build.ts) ------------------------------------------------

/**
 * Strict dotted-quad IPv4 parser: exactly four decimal parts 0-255, no leading zeros (the
 * spec forbids them to avoid octal confusion), nothing else. Writes 4 bytes at out[offset].
 * Returns false (out partly written) for anything else.
 */
export function parseIPv4(text: string, out: Uint8Array, offset: number, start = 0, end = text.length): boolean {
  let part = 0;
  let value = 0;
  let digits = 0;
  for (let i = start; i < end; i++) {
    const code = text.charCodeAt(i);
    if (code === 0x2e /* . */) {
      if (digits === 0 || part === 3) return false;
      out[offset + part++] = value;
      value = 0;
      digits = 0;
      continue;
    }
    const digit = code - 0x30;
    if (digit < 0 || digit > 9) return false;
    if (digits === 1 && value === 0) return false; // leading zero
    value = value * 10 + digit;
    if (value > 255) return false;
    digits++;
  }
  if (digits === 0 || part !== 3) return false;
  out[offset + 3] = value;
  return true;
}

/**
 * Strict IPv6 parser: up to eight groups of 1-4 hex digits, at most one "::" (standing for
 * one or more zero groups), optionally a dotted IPv4 tail in the last 32 bits. No zone id
 * ("%eth0"), no brackets, no whitespace. Writes 16 bytes at out[offset]. Returns false
 * (out partly written) for anything else.
 */
export function parseIPv6(text: string, out: Uint8Array, offset: number): boolean {
  const length = text.length;
  if (length < 2 || length > 45) return false; // "::" .. "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"
  let group = 0;
  let gap = -1; // group index where "::" sits
  let i = 0;
  if (text.charCodeAt(0) === 0x3a /* : */) {
    if (text.charCodeAt(1) !== 0x3a) return false;
    gap = 0;
    i = 2;
  }
  while (i < length) {
    if (group === 8) return false;
    const start = i;
    let value = 0;
    while (i < length) {
      const nibble = hexValue(text.charCodeAt(i));
      if (nibble < 0) break;
      value = (value << 4) | nibble;
      i++;
    }
    if (i < length && text.charCodeAt(i) === 0x2e /* . */) {
      // Dotted IPv4 tail: takes the last two groups and must end the text.
      if (group > 6) return false;
      if (!parseIPv4(text, out, offset + group * 2, start, length)) return false;
      group += 2;
      i = length;
      break;
    }
    const digits = i - start;
    if (digits === 0 || digits > 4) return false;
    out[offset + group * 2] = value >> 8;
    out[offset + group * 2 + 1] = value & 0xff;
    group++;
    if (i === length) break;
    if (text.charCodeAt(i) !== 0x3a) return false;
    i++;
    if (i < length && text.charCodeAt(i) === 0x3a) {
      if (gap >= 0) return false; // a second "::"
      gap = group;
      i++;
    } else if (i === length) {
      return false; // a single trailing ":"
    }
  }
  if (gap < 0) return group === 8;
  if (group > 7) return false; // "::" must stand for at least one group
  // Move the groups after the gap to the end and zero the gap.
  const tail = group - gap;
  const from = offset + gap * 2;
  const to = offset + (8 - tail) * 2;
  out.copyWithin(to, from, from + tail * 2);
  out.fill(0, from, to);
  return true;
}

function hexValue(code: number): number {
  if (code >= 0x30 && code <= 0x39) return code - 0x30;
  if (code >= 0x61 && code <= 0x66) return code - 0x57;
  if (code >= 0x41 && code <= 0x46) return code - 0x37;
  return -1;
}

/** Dotted-quad text of the 4 bytes at bytes[offset]. */
export function formatIPv4(bytes: ArrayLike<number>, offset: number): string {
  return `${bytes[offset]}.${bytes[offset + 1]}.${bytes[offset + 2]}.${bytes[offset + 3]}`;
}

/**
 * Canonical text (RFC 5952, and byte-for-byte what Node/libuv's inet_ntop prints) of the 16
 * bytes at bytes[offset]: lower-case hex without leading zeros, the longest run (first on a
 * tie) of two or more zero groups as "::", and a dotted tail for IPv4-mapped (::ffff:a.b.c.d)
 * and IPv4-compatible (::a.b.c.d) addresses, so core/address normalizeIp recognises them.
 */
export function formatIPv6(bytes: ArrayLike<number>, offset: number): string {
  let bestBase = -1;
  let bestLength = 0;
  let runBase = -1;
  for (let i = 0; i < 8; i++) {
    if (bytes[offset + 2 * i] === 0 && bytes[offset + 2 * i + 1] === 0) {
      if (runBase < 0) runBase = i;
      if (i - runBase + 1 > bestLength) {
        bestBase = runBase;
        bestLength = i - runBase + 1;
      }
    } else {
      runBase = -1;
    }
  }
  if (bestLength < 2) bestBase = -1;
  let text = '';
  for (let i = 0; i < 8; i++) {
    if (bestBase >= 0 && i >= bestBase && i < bestBase + bestLength) {
      if (i === bestBase) text += ':';
      continue;
    }
    if (i !== 0) text += ':';
    if (i === 6 && bestBase === 0 && (bestLength === 6 || (bestLength === 5 && bytes[offset + 10] === 0xff && bytes[offset + 11] === 0xff))) {
      return text + formatIPv4(bytes, offset + 12);
    }
    text += ((bytes[offset + 2 * i]! << 8) | bytes[offset + 2 * i + 1]!).toString(16);
  }
  if (bestBase >= 0 && bestBase + bestLength === 8) text += ':';
  return text;
}

// ---- CRC32C (Castagnoli), for the PP2_TYPE_CRC32C TLV ---------------------------------------

const CRC32C_INIT = 0xffffffff;
const ZERO4 = new Uint8Array(4);
const CRC32C_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32cUpdate(crc: number, data: Uint8Array, start: number, end: number): number {
  for (let i = start; i < end; i++) crc = CRC32C_TABLE[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  return crc;
}

/** CRC32C of `data` (RFC 4960 appendix B), as the PP2_TYPE_CRC32C TLV carries it. */
export function crc32c(data: Uint8Array): number {
  return (crc32cUpdate(CRC32C_INIT, data, 0, data.length) ^ CRC32C_INIT) >>> 0;
}

// ---- helpers -----------------------------------------------------------------------------------

function isPort(port: number): boolean {
  return Number.isInteger(port) && port >= 0 && port <= 0xffff;
}

function invalid(message: string): SwitchyardError {
  return new SwitchyardError('SWY_PROXY_HEADER_INVALID', message, { source: 'downstream' });
}

/** proxy-protocol-js throws plain objects ({ name, message }), not Errors: give them our shape. */
function wrapLibraryError(err: unknown): SwitchyardError {
  return new SwitchyardError('SWY_PROXY_HEADER_INVALID', `v2: ${describeError(err)}`, { source: 'downstream', cause: err });
}

function hex2(byte: number): string {
  return byte.toString(16).padStart(2, '0');
}

/** A field from the wire, quoted and cut short for a log line. */
function quote(text: string): string {
  return JSON.stringify(text.length > 48 ? `${text.slice(0, 48)}…` : text);
}
