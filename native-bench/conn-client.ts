/**
 * The concurrency scenario's load. It starts, waits for a first line on stdin (the harness
 * reads the balancer's baseline RSS meanwhile, while Node boots), then opens N connections to
 * --host:--port, at most WINDOW connecting at once. On each it sends one HTTP request and waits
 * for the whole `ok\n` reply, so every connection is proven to reach the upstream through the
 * balancer, not merely accepted by it. Then it holds them all open and prints
 *
 *   READY {"requested":N,"opened":n,"failed":f,"openMs":t}
 *
 * It then waits until its stdin closes (the harness has read the balancer's RSS), prints
 * `DONE {"lostWhileHeld":k}`, closes everything and exits. If the harness dies, stdin closes
 * too, so this process never outlives it.
 *
 * Connections come from several 127.0.0.x source addresses: each local bind reserves a port per
 * source address, so spreading them keeps far from ephemeral-port exhaustion.
 *
 * Usage: conn-client.ts --host 127.0.0.1 --port P --connections N [--tag <anything>]
 * (`--tag` is ignored; the harness passes its work dir so leftovers can be recognised.)
 */
import { connect, type Socket } from 'node:net';

/** 127.0.0.101–116: clear of the upstream's listening aliases (127.0.0.2–17). */
const SOURCE_ADDRESSES = Array.from({ length: 16 }, (_, i) => `127.0.0.${101 + i}`);
/** Connects in flight at once; below every listen backlog involved (nginx 511, somaxconn 4096). */
const WINDOW = 256;
/** A connection that has not answered its request by then counts as failed. */
const PER_CONNECTION_TIMEOUT_MS = 10_000;
/** The whole opening phase is bounded too. */
const OPEN_DEADLINE_MS = 60_000;
const REQUEST = 'GET / HTTP/1.1\r\nHost: bench\r\n\r\n';

function argument(name: string): string | undefined {
  const index = process.argv.indexOf(`--${name}`);
  return index >= 0 ? process.argv[index + 1] : undefined;
}

const host = argument('host') ?? '127.0.0.1';
const port = Number(argument('port'));
const requested = Number(argument('connections'));
if (!Number.isInteger(port) || port <= 0 || !Number.isInteger(requested) || requested <= 0) {
  console.error('usage: conn-client.ts --host 127.0.0.1 --port P --connections N');
  process.exit(2);
}

const held = new Set<Socket>();
let lostWhileHeld = 0;
let holding = false;

/** Opens one connection and resolves true once the reply to its request has fully arrived. */
function openOne(index: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port, localAddress: SOURCE_ADDRESSES[index % SOURCE_ADDRESSES.length] });
    let received = '';
    let settled = false;
    const settle = (ok: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (ok) held.add(socket);
      else socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => settle(false), PER_CONNECTION_TIMEOUT_MS);
    socket.setNoDelay(true);
    socket.on('connect', () => socket.write(REQUEST));
    socket.on('data', (chunk: Buffer) => {
      if (settled) return;
      received += chunk.toString('latin1');
      if (received.includes('\r\n\r\n') && received.endsWith('ok\n')) settle(true);
    });
    socket.on('error', () => settle(false));
    socket.on('close', () => {
      settle(false);
      if (held.delete(socket) && holding) lostWhileHeld++;
    });
  });
}

// Wait for the harness's go-ahead: the first line (or end) of stdin.
await new Promise<void>((resolve) => {
  process.stdin.once('data', () => resolve());
  process.stdin.once('end', () => resolve());
  process.stdin.resume();
});

const started = performance.now();
let opened = 0;
let failed = 0;
let next = 0;
/** One of WINDOW workers: opens connections one after another until all are attempted. */
async function worker(): Promise<void> {
  while (next < requested && performance.now() - started < OPEN_DEADLINE_MS) {
    if (await openOne(next++)) opened++;
    else failed++;
  }
}
await Promise.all(Array.from({ length: Math.min(WINDOW, requested) }, () => worker()));
const openMs = Math.round(performance.now() - started);
holding = true;
process.stdout.write(`READY ${JSON.stringify({ requested, opened: held.size, failed: failed + (opened - held.size), openMs })}\n`);

let finished = false;
const finish = () => {
  if (finished) return;
  finished = true;
  holding = false;
  process.stdout.write(`DONE ${JSON.stringify({ lostWhileHeld })}\n`, () => {
    for (const socket of held) socket.destroy();
    process.exit(0);
  });
};
if (process.stdin.readableEnded) finish();
process.stdin.on('end', finish);
process.stdin.on('close', finish);
process.on('SIGTERM', finish);
