import { INETProtocol, Peer, V1ProxyProtocol } from 'proxy-protocol-js';
import { SwitchyardError } from '../core/errors.ts';
import { formatIPv4, formatIPv6, parseIPv4, parseIPv6 } from './parse.ts';
import {
  PP2_TLV_HEADER_LENGTH,
  PP2_TYPE_UNIQUE_ID,
  PP2_UNIQUE_ID_MAX_LENGTH,
  V2_ADDRESS_LENGTH_INET,
  V2_ADDRESS_LENGTH_INET6,
  V2_AF_INET,
  V2_AF_INET6,
  V2_AF_UNSPEC,
  V2_COMMAND_LOCAL,
  V2_COMMAND_PROXY,
  V2_FIXED_LENGTH,
  V2_SIGNATURE,
  V2_TRANSPORT_DGRAM,
  V2_TRANSPORT_STREAM,
  V2_TRANSPORT_UNSPEC,
  V2_VERSION,
  type ProxyAddress,
} from './types.ts';

/**
 * PROXY protocol v1/v2 sender (HAProxy's `send-proxy` / `send-proxy-v2`): the header
 * Switchyard writes to a server before the downstream's first bytes.
 */

export interface ProxyHeaderInfo {
  transport: 'tcp' | 'udp';
  /** The downstream as the upstream should see it (IPv4 or IPv6 literal; a zone id is dropped). */
  source: ProxyAddress;
  /** The address the downstream connected to. */
  destination: ProxyAddress;
  /** v2 only: sent as a PP2_TYPE_UNIQUE_ID TLV, at most 128 bytes. v1 ignores it. */
  uniqueId?: Buffer;
}

/**
 * Builds the header announcing `info`. Called once per proxied TCP connection and once per
 * datagram for UDP (v2), so it validates and encodes in one pass over a reused scratch
 * array: the returned Buffer is the only allocation for v2.
 *
 * Addresses: an IPv4-mapped IPv6 address (`::ffff:10.0.0.5`, as a dual-stack listener
 * reports it) is written as IPv4; if source and destination still differ in family, the
 * IPv4 one is mapped into IPv6, so the header is always a valid single-family one. IPv6
 * goes out in canonical form.
 *
 * Throws SwitchyardError SWY_PROXY_HEADER_INVALID (source 'internal') for input that can only
 * come from a bug: an address that is not an IP literal, a port outside 0-65535, a
 * uniqueId over 128 bytes, or v1 with transport 'udp' (v1 has no datagram form; the config
 * schema already refuses that combination).
 */
export function buildProxyHeader(version: 'v1' | 'v2', info: ProxyHeaderInfo): Buffer {
  const sourceFamily = readAddress(info.source.address, SOURCE_AT, 'source');
  const destinationFamily = readAddress(info.destination.address, DESTINATION_AT, 'destination');
  checkPort(info.source.port, 'source');
  checkPort(info.destination.port, 'destination');
  let family = sourceFamily;
  if (sourceFamily !== destinationFamily) {
    mapToIPv6(sourceFamily === 4 ? SOURCE_AT : DESTINATION_AT);
    family = 6;
  }
  return version === 'v1' ? buildV1(info, family) : buildV2(info, family);
}

/** v1 through proxy-protocol-js, which formats the line from already-validated parts. */
function buildV1(info: ProxyHeaderInfo, family: 4 | 6): Buffer {
  if (info.transport !== 'tcp') fail('PROXY v1 has no datagram form (use v2 for udp)');
  const source = family === 4 ? formatIPv4(scratch, SOURCE_AT + 12) : formatIPv6(scratch, SOURCE_AT);
  const destination = family === 4 ? formatIPv4(scratch, DESTINATION_AT + 12) : formatIPv6(scratch, DESTINATION_AT);
  const line = new V1ProxyProtocol(
    family === 4 ? INETProtocol.TCP4 : INETProtocol.TCP6,
    new Peer(source, info.source.port),
    new Peer(destination, info.destination.port),
  ).build();
  return Buffer.from(line, 'latin1');
}

/**
 * v2 written directly. proxy-protocol-js can build v2 too, but its length field leaves out
 * any TLV data, and it goes through several objects and a non-pooled Uint8Array per call;
 * this runs per datagram, so it writes the bytes into one pooled Buffer instead.
 */
function buildV2(info: ProxyHeaderInfo, family: 4 | 6): Buffer {
  const uniqueId = info.uniqueId;
  if (uniqueId !== undefined && uniqueId.length > PP2_UNIQUE_ID_MAX_LENGTH) {
    fail(`uniqueId is ${uniqueId.length} bytes (PP2_TYPE_UNIQUE_ID allows at most ${PP2_UNIQUE_ID_MAX_LENGTH})`);
  }
  const addressLength = family === 4 ? V2_ADDRESS_LENGTH_INET : V2_ADDRESS_LENGTH_INET6;
  const tlvLength = uniqueId === undefined ? 0 : PP2_TLV_HEADER_LENGTH + uniqueId.length;
  const payloadLength = addressLength + tlvLength;
  const header = Buffer.allocUnsafe(V2_FIXED_LENGTH + payloadLength);
  // Byte loops rather than copy()/set(subarray()): for 4-16 bytes they skip a native call
  // and a view allocation each (measured ~350 → ~250 ns per v4 header).
  for (let i = 0; i < 12; i++) header[i] = V2_SIGNATURE[i]!;
  header[12] = V2_VERSION | V2_COMMAND_PROXY;
  header[13] = ((family === 4 ? V2_AF_INET : V2_AF_INET6) << 4) | (info.transport === 'udp' ? V2_TRANSPORT_DGRAM : V2_TRANSPORT_STREAM);
  header[14] = payloadLength >> 8;
  header[15] = payloadLength & 0xff;
  let at = V2_FIXED_LENGTH;
  const size = family === 4 ? 4 : 16;
  const skip = 16 - size; // an IPv4 address sits in the last 4 bytes of its slot
  for (let i = 0; i < size; i++) header[at++] = scratch[SOURCE_AT + skip + i]!;
  for (let i = 0; i < size; i++) header[at++] = scratch[DESTINATION_AT + skip + i]!;
  header[at++] = info.source.port >> 8;
  header[at++] = info.source.port & 0xff;
  header[at++] = info.destination.port >> 8;
  header[at++] = info.destination.port & 0xff;
  if (uniqueId !== undefined) {
    header[at] = PP2_TYPE_UNIQUE_ID;
    header.writeUInt16BE(uniqueId.length, at + 1);
    uniqueId.copy(header, at + PP2_TLV_HEADER_LENGTH);
  }
  return header;
}

const V1_LOCAL = Buffer.from('PROXY UNKNOWN\r\n', 'latin1');
const V2_LOCAL = Buffer.concat([V2_SIGNATURE, Buffer.from([V2_VERSION | V2_COMMAND_LOCAL, (V2_AF_UNSPEC << 4) | V2_TRANSPORT_UNSPEC, 0, 0])]);

/**
 * The header a health probe sends (the probe is Switchyard's own connection, not a relayed
 * one): v1 `PROXY UNKNOWN\r\n`, v2 LOCAL with AF_UNSPEC and no address block. Receivers
 * then keep the real connection endpoints. Note the spec warns that some v1 receivers
 * reject UNKNOWN; v2 LOCAL has no such problem. Returns a fresh copy the caller may keep or
 * modify.
 */
export function buildLocalProxyHeader(version: 'v1' | 'v2'): Buffer {
  return Buffer.from(version === 'v1' ? V1_LOCAL : V2_LOCAL);
}

// ---- address handling ------------------------------------------------------------------------

/**
 * Two 16-byte slots (source, destination), reused by every call: an IPv6 address fills its
 * slot, an IPv4 one sits in its last 4 bytes, so mapping it into IPv6 is writing the prefix.
 * Safe to share because build is synchronous.
 */
const scratch = new Uint8Array(32);
const SOURCE_AT = 0;
const DESTINATION_AT = 16;

/** Parses `text` into its slot; returns the family after unmapping ::ffff:a.b.c.d. */
function readAddress(text: string, slot: number, role: string): 4 | 6 {
  if (typeof text === 'string') {
    if (text.indexOf(':') < 0) {
      if (parseIPv4(text, scratch, slot + 12)) return 4;
    } else {
      // A zone id (fe80::1%eth0) names an interface of this host: meaningless to the receiver.
      const zone = text.indexOf('%');
      if (parseIPv6(zone < 0 ? text : text.slice(0, zone), scratch, slot)) return isMappedIPv4(slot) ? 4 : 6;
    }
  }
  fail(`${role} address ${JSON.stringify(text)} is not an IP literal`);
}

function isMappedIPv4(slot: number): boolean {
  for (let i = 0; i < 10; i++) if (scratch[slot + i] !== 0) return false;
  return scratch[slot + 10] === 0xff && scratch[slot + 11] === 0xff;
}

function mapToIPv6(slot: number): void {
  scratch.fill(0, slot, slot + 10);
  scratch[slot + 10] = 0xff;
  scratch[slot + 11] = 0xff;
}

function checkPort(port: number, role: string): void {
  if (!Number.isInteger(port) || port < 0 || port > 0xffff) fail(`${role} port ${port} is not 0-65535`);
}

function fail(message: string): never {
  throw new SwitchyardError('SWY_PROXY_HEADER_INVALID', `cannot build PROXY header: ${message}`, { source: 'internal' });
}
