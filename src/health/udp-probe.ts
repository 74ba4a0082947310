import { createSocket } from 'node:dgram';
import { isIP } from 'node:net';
import type { Probe, ProbeResult } from './checker.ts';
import { describeReply, probeBytes, probePayload } from './probe-payload.ts';

const EMPTY = Buffer.alloc(0);

/**
 * The `udp` health probe. A connected datagram socket sends one datagram (the PROXY header
 * when the pool sends one, then `send`; an empty datagram when neither) to
 * `server.connectHost` on `check.port ?? server.port`, and passes on the first reply that
 * matches `expect` (any reply when there is no `expect`). A reply that does not match fails
 * at once: a datagram is a whole reply, and a connected socket only hears from that server.
 *
 * ICMP port unreachable surfaces as ECONNREFUSED on a connected socket and fails the probe.
 * A server that stays silent fails when the caller's `signal` aborts (the checker's timeout),
 * so a UDP service that never answers the probe datagram cannot be checked this way: give
 * it a `send` it answers (a DNS query, a ping packet).
 *
 * Never rejects; the socket is always closed before the promise resolves.
 */
export const udpProbe: Probe = (server, check, options) =>
  new Promise<ProbeResult>((resolve) => {
    const { signal, proxyHeader } = options;
    if (signal.aborted) {
      resolve({ pass: false, detail: 'not started' });
      return;
    }
    const { send, matcher } = probePayload(check);
    const datagram = probeBytes(proxyHeader, send) ?? EMPTY;
    const host = server.connectHost;
    const socket = createSocket(isIP(host) === 6 ? 'udp6' : 'udp4');
    let sent = false;
    let settled = false;

    const finish = (pass: boolean, detail: string) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      try {
        socket.close();
      } catch {
        // Already closed (an error closed it first): nothing left to release.
      }
      resolve({ pass, detail });
    };
    const onAbort = () => finish(false, sent ? 'waiting for reply' : 'sending');
    signal.addEventListener('abort', onAbort, { once: true });

    socket.once('error', (err: NodeJS.ErrnoException) => {
      const what = err.code ?? err.message;
      finish(false, what === 'ECONNREFUSED' ? 'ECONNREFUSED (port unreachable)' : `${sent ? 'udp' : 'send'} ${what}`);
    });
    socket.on('message', (reply: Buffer) => {
      if (matcher === undefined || matcher.check(reply, true) === 'match') finish(true, 'ok');
      else finish(false, `reply did not match ${matcher.description} (got ${describeReply(reply)})`);
    });
    // Node calls this with an error when the address cannot be resolved or connected.
    socket.connect(check.port ?? server.port, host, (err?: Error) => {
      if (settled) return;
      if (err) {
        finish(false, `connect ${(err as NodeJS.ErrnoException).code ?? err.message}`);
        return;
      }
      socket.send(datagram, (err) => {
        if (err) finish(false, `send ${(err as NodeJS.ErrnoException).code ?? err.message}`);
        else sent = true;
      });
    });
  });
