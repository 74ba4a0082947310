import type { HealthCheckConfig } from '../config/schema.ts';

/**
 * What a health probe writes (`send`) and how it judges the reply (`expect`), compiled once
 * per health-check config so no probe re-parses text.
 */

/** The most reply bytes a probe buffers while waiting for `expect` to match. */
export const MAX_REPLY_BYTES = 16 * 1024;

/**
 * Decodes the escapes allowed in `send`: `\r \n \t \\ \xHH`. Other characters are encoded as
 * UTF-8. Returns a problem string (never throws) for an unknown escape or a malformed `\x`,
 * so a typo such as `\R` is reported rather than sent as two literal bytes.
 *
 * YAML double-quoted strings already turn `"\r\n"` into real control characters; those pass
 * through unchanged, so both spellings work.
 */
export function decodeEscapes(text: string): Buffer | string {
  const bytes: number[] = [];
  let literalStart = 0;
  const flushLiteral = (end: number) => {
    if (end > literalStart) for (const byte of Buffer.from(text.slice(literalStart, end), 'utf8')) bytes.push(byte);
  };
  for (let i = 0; i < text.length; i++) {
    if (text[i] !== '\\') continue;
    flushLiteral(i);
    const next = text[i + 1];
    switch (next) {
      case 'r':
        bytes.push(0x0d);
        break;
      case 'n':
        bytes.push(0x0a);
        break;
      case 't':
        bytes.push(0x09);
        break;
      case '\\':
        bytes.push(0x5c);
        break;
      case 'x': {
        const hex = text.slice(i + 2, i + 4);
        if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return `"\\x" at position ${i} must be followed by two hex digits`;
        bytes.push(Number.parseInt(hex, 16));
        i += 2;
        break;
      }
      case undefined:
        return 'ends with a lone "\\" (write "\\\\" for a backslash)';
      default:
        return `unknown escape "\\${next}" at position ${i} (allowed: \\r \\n \\t \\\\ \\xHH)`;
    }
    i++;
    literalStart = i + 1;
  }
  flushLiteral(text.length);
  return Buffer.from(bytes);
}

/** The verdict on the reply bytes received so far. */
export type MatchVerdict = 'match' | 'mismatch' | 'need-more';

export interface ReplyMatcher {
  /** How `expect` reads in a log line: `"+PONG"` or `/^\+PONG/`. */
  readonly description: string;
  /**
   * Judges the reply so far.
   * @param reply every byte received so far (at most MAX_REPLY_BYTES)
   * @param complete true when no more bytes will come (peer closed, buffer full, or a
   *   datagram, which is a whole reply): `need-more` is then never returned
   */
  check(reply: Buffer, complete: boolean): MatchVerdict;
}

/**
 * Builds the matcher for `expect`: written `/like this/` it is a regular expression tested
 * against the reply decoded as UTF-8; otherwise the reply must start with its UTF-8 bytes.
 * A prefix matcher decides as soon as the first bytes differ or enough bytes arrived, so a
 * wrong reply fails at once instead of waiting for the timeout.
 * Throws only for an invalid regex, which the config schema already rejects.
 */
export function createMatcher(expect: string): ReplyMatcher {
  if (expect.length > 1 && expect.startsWith('/') && expect.endsWith('/')) {
    const regex = new RegExp(expect.slice(1, -1));
    return {
      description: expect,
      check(reply, complete) {
        if (regex.test(reply.toString('utf8'))) return 'match';
        return complete ? 'mismatch' : 'need-more';
      },
    };
  }
  const prefix = Buffer.from(expect, 'utf8');
  return {
    description: JSON.stringify(expect),
    check(reply, complete) {
      const length = Math.min(reply.length, prefix.length);
      if (reply.compare(prefix, 0, length, 0, length) !== 0) return 'mismatch';
      if (reply.length >= prefix.length) return 'match';
      return complete ? 'mismatch' : 'need-more';
    },
  };
}

/** A reply excerpt for a log line: the first bytes, JSON-quoted so control bytes are visible. */
export function describeReply(reply: Buffer, maxBytes = 32): string {
  const excerpt = reply.subarray(0, maxBytes).toString('latin1');
  return `${JSON.stringify(excerpt)}${reply.length > maxBytes ? '...' : ''}`;
}

export interface ProbePayload {
  /** The decoded `send` bytes, or undefined when nothing is to be sent. */
  send: Buffer | undefined;
  /** The matcher for `expect`, or undefined when any reply (or just a connect) passes. */
  matcher: ReplyMatcher | undefined;
}

const compiled = new WeakMap<HealthCheckConfig, ProbePayload>();

/**
 * The compiled `send`/`expect` of a health-check config, built on first use and cached for
 * the config object's life (a reload builds new config objects, so nothing goes stale).
 * Throws when `send` has an invalid escape: invalid configuration, caught at checker start.
 */
export function probePayload(check: HealthCheckConfig): ProbePayload {
  let payload = compiled.get(check);
  if (payload === undefined) {
    let send: Buffer | undefined;
    if (check.send !== undefined) {
      const decoded = decodeEscapes(check.send);
      if (typeof decoded === 'string') throw new Error(`healthCheck.send: ${decoded}`);
      send = decoded;
    }
    payload = { send, matcher: check.expect === undefined ? undefined : createMatcher(check.expect) };
    compiled.set(check, payload);
  }
  return payload;
}

/**
 * The bytes a probe writes first: the PROXY header (when the pool sends one) and `send`,
 * joined so they leave in one write (one segment), as the data path does with real traffic.
 */
export function probeBytes(proxyHeader: Buffer | undefined, send: Buffer | undefined): Buffer | undefined {
  if (proxyHeader === undefined || proxyHeader.length === 0) return send;
  if (send === undefined || send.length === 0) return proxyHeader;
  return Buffer.concat([proxyHeader, send]);
}
