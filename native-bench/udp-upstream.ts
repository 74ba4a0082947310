/**
 * The UDP scenarios' upstream: one Node process on --host:--port, in one of two modes.
 *
 * - `echo`: sends every datagram back to where it came from, unchanged (request/reply loads).
 * - `sink`: counts datagrams and bytes and answers nothing (one-way throughput).
 *
 * Both also listen on TCP on the same host and port, for two things that must not depend on
 * UDP delivery: the harness's readiness check (a TCP connect, as for every other upstream)
 * and the counters: a TCP client gets one JSON line `{"datagrams":n,"bytes":b}` and the
 * connection closes. udp-client.ts reads the sink's counters before and after a blast; the
 * difference is what arrived.
 *
 * Usage: udp-upstream.ts --mode echo|sink --host 127.0.0.1 --port P [--tag <anything>]
 * (`--tag` is ignored; the harness passes its work dir so leftovers can be recognised.)
 */
import { createSocket, type RemoteInfo } from 'node:dgram';
import { createServer, isIP } from 'node:net';
import { literalLookup } from './udp-protocol.ts';

/** As large as net.core.rmem_max allows: the upstream must not be where bursts are lost. */
const BUFFER_BYTES = 4 * 1024 * 1024;

function argument(name: string): string | undefined {
  const index = process.argv.indexOf(`--${name}`);
  return index >= 0 ? process.argv[index + 1] : undefined;
}

const mode = argument('mode');
const host = argument('host') ?? '127.0.0.1';
const port = Number(argument('port'));
if ((mode !== 'echo' && mode !== 'sink') || !Number.isInteger(port) || port <= 0 || isIP(host) !== 4) {
  console.error('usage: udp-upstream.ts --mode echo|sink --host 127.0.0.1 --port P');
  process.exit(2);
}

let datagrams = 0;
let bytes = 0;
const socket = createSocket({ type: 'udp4', lookup: literalLookup as never });

const onEcho = (datagram: Buffer, from: RemoteInfo): void => {
  datagrams++;
  bytes += datagram.length;
  socket.send(datagram, from.port, from.address);
};
const onSink = (datagram: Buffer): void => {
  datagrams++;
  bytes += datagram.length;
};
socket.on('message', mode === 'echo' ? onEcho : onSink);
socket.on('error', (err) => {
  // A reply the kernel would not send (ENOBUFS) loses that datagram only.
  if ((err as NodeJS.ErrnoException).syscall !== 'send') {
    console.error(`udp-upstream: ${err.message}`);
    process.exit(1);
  }
});

const counters = createServer((connection) => {
  connection.end(`${JSON.stringify({ datagrams, bytes })}\n`);
});

socket.bind({ address: host, port, exclusive: true }, () => {
  socket.setRecvBufferSize(BUFFER_BYTES);
  socket.setSendBufferSize(BUFFER_BYTES);
  // Listening on TCP last: a successful TCP connect means the UDP side is ready too.
  counters.listen(port, host);
});

process.on('SIGTERM', () => process.exit(0));
