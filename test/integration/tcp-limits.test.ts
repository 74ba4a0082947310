import t from 'tap';
import { connect, type Socket } from 'node:net';
import { startBalancer } from '../helpers/balancer.ts';
import { listenTcp, readTag, tagServer, waitFor, type RunningServer } from '../helpers/net.ts';
import { closeOutcome, connectClient, readBytes, readUntilEnd, sleep } from '../helpers/tcp-client.ts';
import { connectionLines, tcpDocument, type TestServer } from '../helpers/tcp-balancer.ts';
import type { Switchyard } from '../../src/server.ts';

// Limits, timeouts, drain and the connection log line, through real loopback sockets.

type Lines = () => Array<Record<string, unknown>>;
type Asserts = Pick<typeof t, 'ok' | 'notOk' | 'equal'>;

interface Setup {
  sy: Switchyard;
  port: number;
  lines: Lines;
  clients: Set<Socket>;
}

async function start(
  t: { teardown(fn: () => unknown): void },
  servers: readonly TestServer[],
  upstreams: readonly RunningServer[],
  extra: Parameters<typeof tcpDocument>[1] = {},
): Promise<Setup> {
  const { sy, lines } = await startBalancer(tcpDocument(servers, extra));
  const clients = new Set<Socket>();
  t.teardown(async () => {
    for (const socket of clients) socket.destroy();
    await sy.shutdown(1000);
    await Promise.all(upstreams.map((server) => server.close()));
  });
  return { sy, port: sy.address('t').port, lines, clients };
}

async function hold(s: Setup): Promise<{ tag: string; socket: Socket }> {
  const held = await readTag(s.port);
  s.clients.add(held.socket);
  return held;
}

/** Resolves when a connect attempt is refused or the connection closes; never hangs (3 s). */
function connectExpectingRefusal(port: number): Promise<{ refused: boolean; errorCode: string | undefined; data: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: '127.0.0.1' });
    let data = '';
    let errorCode: string | undefined;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('the connection was neither refused nor closed within 3 s'));
    }, 3000);
    socket.on('data', (chunk: Buffer) => (data += chunk.toString()));
    socket.on('error', (err: NodeJS.ErrnoException) => (errorCode ??= err.code));
    socket.once('close', () => {
      clearTimeout(timer);
      resolve({ refused: errorCode === 'ECONNREFUSED', errorCode, data });
    });
  });
}

t.test('listener maxConnections: the connection above the cap is closed at once, and the cap frees up', { timeout: 15_000 }, async (t) => {
  const a = await tagServer('a');
  const s = await start(t, [a.port], [a], { listener: { maxConnections: 2 } });
  const first = await hold(s);
  await hold(s);

  const extra = await connectClient(s.port);
  const outcome = await closeOutcome(extra, 2000);
  t.equal(outcome.data.length, 0, 'the third connection received nothing');
  t.ok(outcome.ms < 500, `it was closed at once (${outcome.ms}ms)`);
  const warn = s.lines().find((line) => line.msg === 'listener full: connection closed');
  t.ok(warn, 'a warn line says why');
  t.equal(warn?.level, 'warn');
  t.equal(warn?.listener, 't');

  first.socket.end();
  s.clients.delete(first.socket);
  await waitFor(() => s.sy.openCount() === 1, 3000, 'the first connection to finish');
  const again = await hold(s);
  t.equal(again.tag, 'a', 'with one slot free, a new connection is accepted');
});

t.test('server maxConnections: a full server is skipped; all full means no-server-available', { timeout: 15_000 }, async (t) => {
  const a = await tagServer('a');
  const b = await tagServer('b');
  const s = await start(t, [{ port: a.port, maxConnections: 1 }, { port: b.port, maxConnections: 3 }], [a, b]);
  const onA = await hold(s);
  t.equal(onA.tag, 'a', 'round-robin starts with a');
  const next: string[] = [];
  for (let i = 0; i < 3; i++) next.push((await hold(s)).tag);
  t.same(next, ['b', 'b', 'b'], 'a is full (1), so everything goes to b');

  const refused = await closeOutcome(await connectClient(s.port), 2000);
  t.equal(refused.data.length, 0, 'with both servers full, the client is closed and receives nothing');
  await waitFor(() => connectionLines(s.lines()).length === 1, 3000, 'the refused connection’s log line');
  t.match(connectionLines(s.lines())[0], { end: 'no-server-available', attempts: 0 });

  onA.socket.end();
  s.clients.delete(onA.socket);
  await waitFor(() => s.sy.pools.get('p')!.servers[0]!.active === 0, 3000, 'a to be released');
  t.equal((await hold(s)).tag, 'a', 'a takes connections again once it has room');
});

t.test('idle timeout: a silent connection is closed; traffic in either direction keeps one open', { timeout: 20_000 }, async (t) => {
  // The first bytes choose the upstream's behaviour: "echo" echoes, "sink" reads and never
  // answers, "tick" writes one byte every 100 ms, eight times, and never reads.
  const echo = await listenTcp((socket) => {
    socket.once('data', (first: Buffer) => {
      const mode = first.toString();
      if (mode === 'echo') socket.pipe(socket);
      if (mode === 'sink') socket.resume();
      if (mode === 'tick') {
        let ticks = 0;
        const timer = setInterval(() => {
          socket.write('.');
          if (++ticks === 8) clearInterval(timer);
        }, 100);
        socket.once('close', () => clearInterval(timer));
      }
    });
  });
  const s = await start(t, [echo.port], [echo], { listener: { timeouts: { idle: '300ms' } } });

  t.test('silent: closed after about 300 ms, logged as idle-timeout', async (t) => {
    const before = connectionLines(s.lines()).length;
    const socket = await connectClient(s.port);
    const started = Date.now();
    const outcome = await closeOutcome(socket, 3000);
    const elapsed = Date.now() - started;
    t.ok(elapsed >= 250 && elapsed < 1500, `closed after ${elapsed}ms`);
    await waitFor(() => connectionLines(s.lines()).length === before + 1, 3000, 'the log line');
    t.match(connectionLines(s.lines())[before], { end: 'idle-timeout' });
    t.equal(outcome.data.length, 0);
  });

  const keepsOpen = async (t: Asserts, mode: 'echo' | 'sink' | 'tick', clientWrites: boolean) => {
    const socket = await connectClient(s.port);
    s.clients.add(socket);
    const closed = closeOutcome(socket, 5000);
    let lastTraffic = Date.now();
    socket.on('data', () => (lastTraffic = Date.now()));
    socket.write(mode);
    const started = Date.now();
    for (let i = 0; i < 8; i++) {
      await sleep(100);
      if (clientWrites) {
        socket.write('x');
        lastTraffic = Date.now();
      }
    }
    t.notOk(socket.destroyed, `still open after ${Date.now() - started}ms of traffic every 100 ms`);
    // Then silence: the idle timeout applies again, counted from the last byte either way.
    const outcome = await closed;
    const silent = Date.now() - lastTraffic;
    t.ok(silent >= 250 && silent < 1500, `closed ${silent}ms after the last byte`);
    const expected = { echo: 'x'.repeat(8), sink: '', tick: '.'.repeat(8) }[mode];
    t.equal(outcome.data.toString(), expected, 'the traffic arrived');
  };

  t.test('client → upstream → client traffic (echo) keeps it open', (t) => keepsOpen(t, 'echo', true));
  t.test('client → upstream only (the upstream never answers) keeps it open', (t) => keepsOpen(t, 'sink', true));
  t.test('upstream → client only keeps it open', (t) => keepsOpen(t, 'tick', false));
});

t.test('graceful drain: an open exchange completes, new connections are refused, shutdown resolves when it closes', { timeout: 15_000 }, async (t) => {
  // Replies 300 ms after the request arrives, then ends.
  let requestSeen!: () => void;
  const requestArrived = new Promise<void>((resolve) => (requestSeen = resolve));
  const slow = await listenTcp((socket) => {
    socket.once('data', () => {
      requestSeen();
      setTimeout(() => socket.end('reply'), 300);
    });
  });
  const { sy, lines } = await startBalancer(tcpDocument([slow.port]));
  t.teardown(async () => {
    await sy.shutdown(100);
    await slow.close();
  });
  const port = sy.address('t').port;

  const client = await connectClient(port);
  const reply = readUntilEnd(client, 3000);
  client.write('request');
  await requestArrived;

  const started = Date.now();
  let resolvedAt: number | undefined;
  const shutdown = sy.shutdown(2000).then(() => (resolvedAt = Date.now() - started));

  const late = await connectExpectingRefusal(port);
  t.ok(late.refused || late.data === '', `a new connection during drain is refused (${late.errorCode ?? 'closed'})`);
  t.equal(late.data, '', 'and reaches no upstream');
  t.equal(resolvedAt, undefined, 'shutdown waits while the exchange is open');

  t.equal((await reply).toString(), 'reply', 'the open exchange completed during the drain');
  await shutdown;
  t.ok(resolvedAt! >= 250 && resolvedAt! < 1500, `shutdown resolved once the connection closed (${resolvedAt}ms), well before the 2 s deadline`);
  t.match(connectionLines(lines())[0], { end: 'closed' });
  t.ok(lines().some((line) => line.msg === 'drained: all connections finished'));
});

t.test('drain deadline: a connection still open is closed, and shutdown resolves at the deadline', { timeout: 15_000 }, async (t) => {
  const a = await tagServer('a');
  const { sy, lines } = await startBalancer(tcpDocument([a.port]));
  t.teardown(() => a.close());
  const { socket } = await readTag(sy.address('t').port);
  const closed = closeOutcome(socket, 3000);

  const started = Date.now();
  await sy.shutdown(500);
  const elapsed = Date.now() - started;
  t.ok(elapsed >= 450 && elapsed < 1500, `shutdown resolved at the deadline (${elapsed}ms)`);
  const outcome = await closed;
  t.ok(outcome.ms < 1500, 'the client connection was closed by the balancer');
  await waitFor(() => connectionLines(lines()).length === 1, 3000, 'the log line');
  t.match(connectionLines(lines())[0], { end: 'shutdown' });
  t.ok(lines().some((line) => line.msg === 'drain timeout: closed 1 still open'));
});

t.test('the connection log line: listener, downstream, server, real byte counts, duration, end', { timeout: 15_000 }, async (t) => {
  const request = Buffer.alloc(12_345, 'q');
  const reply = Buffer.alloc(54_321, 'r');
  const upstream = await listenTcp((socket) => {
    void readUntilEnd(socket).then(() => setTimeout(() => socket.end(reply), 100));
  });
  const s = await start(t, [upstream.port], [upstream]);
  const client = await connectClient(s.port);
  const downstream = `127.0.0.1:${client.localPort}`;
  const got = readUntilEnd(client);
  client.end(request);
  t.equal((await got).length, reply.length);
  await waitFor(() => connectionLines(s.lines()).length === 1, 3000, 'the log line');
  const line = connectionLines(s.lines())[0]!;
  t.match(line, {
    level: 'info',
    module: 'tcp',
    listener: 't',
    downstream,
    server: `127.0.0.1:${upstream.port}`,
    attempts: 1,
    bytesIn: request.length,
    bytesOut: reply.length,
    end: 'closed',
  });
  t.type(line.id, 'string');
  t.ok(typeof line.durationMs === 'number' && line.durationMs >= 100 && line.durationMs < 3000, `durationMs ${line.durationMs} covers the 100 ms the upstream waited`);
});

t.test('the connection log line over IPv6 loopback brackets addresses', { timeout: 15_000 }, async (t) => {
  const upstream = await tagServer('v6', '::1');
  const { sy, lines } = await startBalancer({
    listeners: [{ name: 't6', protocol: 'tcp', bind: '[::1]:0', pool: 'p' }],
    pools: { p: { servers: [{ address: `[::1]:${upstream.port}` }] } },
  });
  t.teardown(async () => {
    await sy.shutdown(1000);
    await upstream.close();
  });
  const { tag, socket } = await readTag(sy.address('t6').port, { host: '::1' });
  t.equal(tag, 'v6');
  const localPort = socket.localPort;
  socket.end();
  await waitFor(() => connectionLines(lines()).length === 1, 3000, 'the log line');
  t.match(connectionLines(lines())[0], { listener: 't6', downstream: `[::1]:${localPort}`, server: `[::1]:${upstream.port}`, end: 'closed' });
});

t.test('log.level warn: no connection lines, warnings still logged', { timeout: 15_000 }, async (t) => {
  const a = await tagServer('a');
  const { sy, lines } = await startBalancer(tcpDocument([a.port], { top: { log: { level: 'warn' } }, listener: { maxConnections: 1 } }));
  t.teardown(async () => {
    await sy.shutdown(1000);
    await a.close();
  });
  const port = sy.address('t').port;
  const held = await readTag(port);
  const rejected = await closeOutcome(await connectClient(port), 2000);
  t.equal(rejected.data.length, 0, 'the second connection was rejected (listener full)');
  held.socket.end();
  await waitFor(() => sy.openCount() === 0, 3000, 'the connection to finish');
  for (let i = 0; i < 3; i++) {
    const { socket } = await readTag(port);
    socket.end();
    await waitFor(() => sy.openCount() === 0, 3000, 'the connection to finish');
  }
  t.same(connectionLines(lines()), [], 'no connection lines at warn');
  t.ok(lines().some((line) => line.msg === 'listener full: connection closed'), 'the listener-full warning is still there');
  t.same(lines().filter((line) => line.level === 'info' || line.level === 'debug'), [], 'nothing below warn');
});
