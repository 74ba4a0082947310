import { connect } from 'node:net';
import type { Probe, ProbeResult } from './checker.ts';
import { MAX_REPLY_BYTES, describeReply, probeBytes, probePayload } from './probe-payload.ts';

/**
 * The `tcp` health probe. Connects to `server.connectHost` on `check.port ?? server.port`;
 * writes the PROXY header (when the pool sends one) and `send` in one write; then:
 * - without `expect`, passes once the bytes are flushed (or at connect when there are none);
 * - with `expect`, reads until the reply matches (pass), cannot match any more, the peer
 *   closes, or MAX_REPLY_BYTES arrived (fail).
 *
 * Never rejects: every failure is a `{ pass: false, detail }` value. The caller's `signal`
 * is the only timeout; when it aborts, the probe resolves at once with a detail naming what
 * it was waiting for (`connecting`, `waiting for reply`). The socket is always destroyed
 * before the promise resolves, so no probe leaks a connection.
 */
export const tcpProbe: Probe = (server, check, options) =>
  new Promise<ProbeResult>((resolve) => {
    const { signal, proxyHeader } = options;
    if (signal.aborted) {
      resolve({ pass: false, detail: 'not started' });
      return;
    }
    const { send, matcher } = probePayload(check);
    const firstBytes = probeBytes(proxyHeader, send);
    let connected = false;
    let reply: Buffer = Buffer.alloc(0);
    let settled = false;

    const socket = connect({ host: server.connectHost, port: check.port ?? server.port });
    socket.setNoDelay(true);

    const finish = (pass: boolean, detail: string) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      socket.destroy();
      resolve({ pass, detail });
    };
    const waiting = () => {
      if (!connected) return 'connecting';
      if (matcher === undefined) return 'sending';
      return reply.length === 0 ? 'waiting for reply' : `waiting for reply, got ${describeReply(reply)}`;
    };
    const onAbort = () => finish(false, waiting());
    signal.addEventListener('abort', onAbort, { once: true });

    socket.once('connect', () => {
      connected = true;
      if (matcher === undefined) {
        if (firstBytes === undefined) finish(true, 'ok');
        // Wait for the flush so the peer sees the bytes before our close, as a client would.
        else socket.write(firstBytes, () => finish(true, 'ok'));
        return;
      }
      if (firstBytes !== undefined) socket.write(firstBytes);
    });

    if (matcher !== undefined) {
      const judge = (complete: boolean) => {
        const verdict = matcher.check(reply, complete);
        if (verdict === 'match') finish(true, 'ok');
        else if (verdict === 'mismatch') {
          finish(false, reply.length === 0 ? 'closed without a reply' : `reply did not match ${matcher.description} (got ${describeReply(reply)})`);
        }
      };
      socket.on('data', (chunk: Buffer) => {
        // Bounded: a server streaming garbage cannot grow this past MAX_REPLY_BYTES.
        const room = MAX_REPLY_BYTES - reply.length;
        reply = Buffer.concat([reply, chunk.length > room ? chunk.subarray(0, room) : chunk]);
        judge(reply.length >= MAX_REPLY_BYTES);
      });
      socket.once('end', () => judge(true));
    }

    socket.once('error', (err: NodeJS.ErrnoException) => {
      const what = err.code ?? err.message;
      finish(false, connected ? `${what} while ${waiting()}` : `connect ${what}`);
    });
    // Closed without an error or a verdict (e.g. peer closed before we finished sending).
    socket.once('close', () => finish(false, connected ? 'connection closed' : 'connect failed'));
  });
