/**
 * The UDP scenarios' load, in one of three modes. Each measures a window of --seconds
 * (fractions allowed) after --warmup-ms, prints `MEASURING` when the window opens and one line
 * `RESULT {json}` when it closes (read by parseUdpClient in parse.ts), then winds down.
 *
 * - `rr` (request/reply, closed loop): --clients sockets, each bound to its own source
 *   address:port (127.0.0.101–116, port from the kernel) and connected to the target. Each
 *   sends a --size datagram, waits for the reply, sends the next. The first 4 bytes carry a
 *   sequence number, so a late reply to a retried request is not taken for the current one.
 *   A request without reply after --timeout-ms counts as lost and is sent again (as a new
 *   request). RESULT: requests, seconds, rps, p50Ms, p99Ms, lost, late, socketErrors, clients.
 *
 * - `new` (sessions from new sources, closed loop): --clients workers; each opens a fresh
 *   socket (a new source port, so the balancer sees a new downstream), sends one query,
 *   waits for the reply, closes the socket and starts over. Timeouts as in `rr`.
 *   RESULT: sessions, seconds, sps, p50Ms, p99Ms, lost, socketErrors, clients.
 *
 * - `blast` (one-way throughput): --clients connected sockets send --size datagrams as fast
 *   as they can (bounded by each socket's send queue) for --seconds, no warm-up. The upstream
 *   is a sink that counts what arrives; its counters are read over TCP (--counters host:port,
 *   straight from the sink, not through the balancer) before and after, with a short pause
 *   after the blast for datagrams still in buffers. RESULT: sent, received, seconds, pps
 *   (received per second), mbps (received payload, Mbit/s), loss (share of sent not received).
 *
 * `--echo host:port` (rr and new): this process also is the upstream, a UDP echo on that
 * address. One process doing both halves of the load side costs far less CPU than two
 * processes sharing a core (one event loop, no context switch between them), and the load
 * side must be faster than the balancers (see README, "UDP"). The echo binds before the first
 * request and closes only after the replies still in flight have come back, so a balancer
 * never sends to a closed port (Switchyard would count the ICMP refusals as failures).
 *
 * Usage: udp-client.ts --mode rr|new|blast --host 127.0.0.1 --port P --seconds S
 *          [--clients N] [--size B] [--timeout-ms T] [--warmup-ms W] [--echo host:port]
 *          [--counters host:port] [--tag <anything>]
 * (`--tag` is ignored; the harness passes its work dir so leftovers can be recognised.)
 */
import { createSocket, type Socket } from 'node:dgram';
import { connect } from 'node:net';
import { LatencyHistogram, literalLookup } from './udp-protocol.ts';

/** 127.0.0.101–116: clear of the upstream's addresses, as in conn-client.ts. */
const SOURCE_ADDRESSES = Array.from({ length: 16 }, (_, i) => `127.0.0.${101 + i}`);
/** How often lost requests are looked for. */
const TIMEOUT_SCAN_MS = 20;
/** Latencies above this land in one bucket (they are counted, only not resolved). */
const HISTOGRAM_LIMIT_MS = 1_000;
/** After a blast, before the sink's counters are read again: buffers drain meanwhile. */
const BLAST_DRAIN_MS = 150;
/** Blast: datagrams each socket may have queued in libuv (not yet handed to the kernel). */
const BLAST_QUEUE = 64;
/** Blast: datagrams per socket per event-loop turn, so timers still run. */
const BLAST_BURST = 256;
/**
 * rr and new: after the window, how long replies still in flight may come back before the
 * sockets close (it closes sooner once none is outstanding).
 */
const WIND_DOWN_MS = 100;
/** How often the wind-down looks whether every reply is in. */
const WIND_DOWN_POLL_MS = 2;

function argument(name: string): string | undefined {
  const index = process.argv.indexOf(`--${name}`);
  return index >= 0 ? process.argv[index + 1] : undefined;
}
function numberArgument(name: string, fallback: number): number {
  const text = argument(name);
  return text === undefined ? fallback : Number(text);
}

const mode = argument('mode');
const host = argument('host') ?? '127.0.0.1';
const port = numberArgument('port', NaN);
const seconds = numberArgument('seconds', NaN);
const clients = numberArgument('clients', mode === 'blast' ? 4 : 64);
const size = numberArgument('size', mode === 'blast' ? 1200 : 64);
const timeoutMs = numberArgument('timeout-ms', 200);
const warmupMs = numberArgument('warmup-ms', 200);
const countersAt = argument('counters');
const echoAt = argument('echo');
const valid =
  (mode === 'rr' || mode === 'new' || mode === 'blast') &&
  Number.isInteger(port) &&
  port > 0 &&
  seconds > 0 &&
  seconds <= 600 &&
  Number.isInteger(clients) &&
  clients > 0 &&
  clients <= 10_000 &&
  Number.isInteger(size) &&
  size >= 4 &&
  size <= 65_507 &&
  timeoutMs > 0 &&
  warmupMs >= 0 &&
  (mode !== 'blast' || countersAt !== undefined) &&
  (echoAt === undefined || splitEndpoint(echoAt) !== undefined);
if (!valid) {
  console.error(
    'usage: udp-client.ts --mode rr|new|blast --host 127.0.0.1 --port P --seconds S [--clients N] [--size B] [--timeout-ms T] [--warmup-ms W] [--echo host:port] [--counters host:port]',
  );
  process.exit(2);
}

function splitEndpoint(text: string): { host: string; port: number } | undefined {
  const colon = text.lastIndexOf(':');
  const endpointPort = Number(text.slice(colon + 1));
  return colon > 0 && Number.isInteger(endpointPort) && endpointPort > 0 ? { host: text.slice(0, colon), port: endpointPort } : undefined;
}

/** The in-process upstream of `--echo`, or undefined. Bound when this returns (literal lookup). */
function startEcho(): Socket | undefined {
  if (echoAt === undefined) return undefined;
  const at = splitEndpoint(echoAt)!;
  const echo = createSocket({ type: 'udp4', lookup: literalLookup as never });
  echo.on('message', (datagram, from) => echo.send(datagram, from.port, from.address));
  echo.on('error', onSocketError);
  echo.bind({ address: at.host, port: at.port, exclusive: true });
  // As the balancers' listeners do: bursts of 64-byte requests must not overflow the default buffer.
  echo.setRecvBufferSize(4 * 1024 * 1024);
  return echo;
}

function newSocket(index: number): Socket {
  const socket = createSocket({ type: 'udp4', lookup: literalLookup as never });
  socket.on('error', onSocketError);
  // Synchronous with a literal lookup: the socket is bound when bind() returns.
  socket.bind({ address: SOURCE_ADDRESSES[index % SOURCE_ADDRESSES.length], port: 0 });
  return socket;
}

let socketErrors = 0;
function onSocketError(): void {
  // ECONNREFUSED (nothing listening yet or any more) and the like: the request is lost and
  // the timeout scan sends it again.
  socketErrors++;
}

/** Prints the RESULT line; `then` runs once it is written. */
function report(result: Record<string, number>, then: () => void): void {
  process.stdout.write(`RESULT ${JSON.stringify(result)}\n`, then);
}

/** The window opens: say so (the harness reads the balancer's CPU time now). */
function openWindowAt(at: number): void {
  setTimeout(() => process.stdout.write('MEASURING\n'), Math.max(0, at - performance.now()));
}

/** Closes `socket` unless it is closed already (a reply may have closed it meanwhile). */
function closeQuietly(socket: Socket): void {
  try {
    socket.close();
  } catch {
    // ERR_SOCKET_DGRAM_NOT_RUNNING: already closed.
  }
}

/**
 * After the window: let the replies in flight come back (until `outstanding()` is 0, at most
 * WIND_DOWN_MS), then close everything and exit.
 */
function windDown(sockets: () => Iterable<Socket>, echo: Socket | undefined, outstanding: () => number): void {
  const deadline = performance.now() + WIND_DOWN_MS;
  const check = (): void => {
    if (outstanding() > 0 && performance.now() < deadline) {
      setTimeout(check, WIND_DOWN_POLL_MS);
      return;
    }
    for (const socket of sockets()) closeQuietly(socket);
    if (echo !== undefined) closeQuietly(echo);
    process.exit(0);
  };
  check();
}

const roundMs = (value: number | undefined): number | undefined => (value === undefined ? undefined : Math.round(value * 1000) / 1000);

// ---------------------------------------------------------------------------------------------
// rr and new: closed loops with a measured window after the warm-up.

const started = performance.now();
const windowStart = started + warmupMs;
const windowEnd = windowStart + seconds * 1000;
const histogram = new LatencyHistogram(HISTOGRAM_LIMIT_MS);
let lost = 0;
let late = 0;
let stopped = false;

interface RrClient {
  socket: Socket;
  payload: Buffer;
  seq: number;
  sentAt: number;
  /** A request is out and its reply has not come back. */
  waiting: boolean;
}

function runRequestReply(): void {
  const echo = startEcho();
  openWindowAt(windowStart);
  const all: RrClient[] = [];
  for (let i = 0; i < clients; i++) {
    const client: RrClient = { socket: newSocket(i), payload: Buffer.alloc(size), seq: 0, sentAt: 0, waiting: false };
    client.socket.connect(port, host);
    client.socket.on('message', (reply: Buffer) => {
      if (reply.length < 4 || reply.readUInt32LE(0) !== client.seq) {
        late++;
        return;
      }
      const now = performance.now();
      client.waiting = false;
      if (now >= windowStart && now < windowEnd) histogram.record(now - client.sentAt);
      if (!stopped) sendNext(client, now);
    });
    client.socket.once('connect', () => sendNext(client, performance.now()));
    all.push(client);
  }
  const scan = setInterval(() => {
    const now = performance.now();
    if (now >= windowEnd) {
      stopped = true;
      clearInterval(scan);
      const measured = (windowEnd - windowStart) / 1000;
      report({
        requests: histogram.count,
        seconds: measured,
        rps: histogram.count / measured,
        p50Ms: roundMs(histogram.percentile(0.5)) ?? NaN,
        p99Ms: roundMs(histogram.percentile(0.99)) ?? NaN,
        lost,
        late,
        socketErrors,
        clients,
      }, () => windDown(() => all.map((client) => client.socket), echo, () => all.filter((client) => client.waiting).length));
      return;
    }
    for (const client of all) {
      if (client.sentAt > 0 && now - client.sentAt > timeoutMs) {
        if (now >= windowStart) lost++;
        sendNext(client, now);
      }
    }
  }, TIMEOUT_SCAN_MS);
}

function sendNext(client: RrClient, now: number): void {
  client.seq = (client.seq + 1) >>> 0;
  client.payload.writeUInt32LE(client.seq, 0);
  client.sentAt = now;
  client.waiting = true;
  client.socket.send(client.payload);
}

interface NewWorker {
  index: number;
  socket: Socket | undefined;
  sentAt: number;
}

function runNewSessions(): void {
  const echo = startEcho();
  openWindowAt(windowStart);
  const payload = Buffer.alloc(size);
  const workers: NewWorker[] = Array.from({ length: clients }, (_, index) => ({ index, socket: undefined, sentAt: 0 }));
  const begin = (worker: NewWorker, now: number): void => {
    const socket = newSocket(worker.index);
    worker.socket = socket;
    worker.sentAt = now;
    socket.once('message', () => {
      const at = performance.now();
      if (at >= windowStart && at < windowEnd) histogram.record(at - worker.sentAt);
      socket.close();
      worker.socket = undefined;
      if (!stopped) begin(worker, at);
    });
    socket.send(payload, port, host);
  };
  for (const worker of workers) begin(worker, performance.now());
  const scan = setInterval(() => {
    const now = performance.now();
    if (now >= windowEnd) {
      stopped = true;
      clearInterval(scan);
      const measured = (windowEnd - windowStart) / 1000;
      report({
        sessions: histogram.count,
        seconds: measured,
        sps: histogram.count / measured,
        p50Ms: roundMs(histogram.percentile(0.5)) ?? NaN,
        p99Ms: roundMs(histogram.percentile(0.99)) ?? NaN,
        lost,
        socketErrors,
        clients,
      }, () => windDown(() => workers.flatMap((worker) => (worker.socket === undefined ? [] : [worker.socket])), echo, () => workers.filter((worker) => worker.socket !== undefined).length));
      return;
    }
    for (const worker of workers) {
      if (worker.socket !== undefined && now - worker.sentAt > timeoutMs) {
        if (now >= windowStart) lost++;
        worker.socket.close();
        begin(worker, now);
      }
    }
  }, TIMEOUT_SCAN_MS);
}

// ---------------------------------------------------------------------------------------------
// blast: one-way, counted at the sink.

/** The sink's counters, read over TCP from `at` (host:port). */
function readCounters(at: string): Promise<{ datagrams: number; bytes: number }> {
  const colon = at.lastIndexOf(':');
  return new Promise((resolve, reject) => {
    const socket = connect({ host: at.slice(0, colon), port: Number(at.slice(colon + 1)) });
    let text = '';
    socket.setEncoding('utf8');
    socket.setTimeout(2_000, () => socket.destroy(new Error(`no counters from ${at} within 2 s`)));
    socket.on('data', (chunk: string) => (text += chunk));
    socket.on('error', reject);
    socket.on('end', () => {
      try {
        resolve(JSON.parse(text) as { datagrams: number; bytes: number });
      } catch {
        reject(new Error(`counters from ${at} are not JSON: ${text.slice(0, 100)}`));
      }
    });
  });
}

async function runBlast(): Promise<void> {
  const before = await readCounters(countersAt!);
  const payload = Buffer.alloc(size, 0x61);
  const sockets: Socket[] = [];
  await Promise.all(
    Array.from({ length: clients }, (_, i) => {
      const socket = newSocket(i);
      sockets.push(socket);
      return new Promise<void>((resolve) => {
        socket.connect(port, host, () => resolve());
      });
    }),
  );
  let sent = 0;
  process.stdout.write('MEASURING\n');
  const begin = performance.now();
  const end = begin + seconds * 1000;
  await new Promise<void>((resolve) => {
    const pump = (): void => {
      if (performance.now() >= end) {
        resolve();
        return;
      }
      for (const socket of sockets) {
        for (let n = 0; n < BLAST_BURST && socket.getSendQueueCount() < BLAST_QUEUE; n++) {
          socket.send(payload);
          sent++;
        }
      }
      setImmediate(pump);
    };
    pump();
  });
  const measured = (performance.now() - begin) / 1000;
  for (const socket of sockets) socket.close();
  await new Promise((resolve) => setTimeout(resolve, BLAST_DRAIN_MS));
  const after = await readCounters(countersAt!);
  const received = after.datagrams - before.datagrams;
  report({
    sent,
    received,
    seconds: measured,
    pps: received / measured,
    mbps: ((after.bytes - before.bytes) * 8) / measured / 1e6,
    loss: sent > 0 ? Math.max(0, 1 - received / sent) : 0,
    socketErrors,
    clients,
  }, () => process.exit(0));
}

if (mode === 'rr') runRequestReply();
else if (mode === 'new') runNewSessions();
else
  runBlast().catch((err: Error) => {
    console.error(`udp-client: ${err.message}`);
    process.exit(1);
  });
process.on('SIGTERM', () => process.exit(1));
