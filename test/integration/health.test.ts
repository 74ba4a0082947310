import t from 'tap';
import { connect, type Socket } from 'node:net';
import { createSocket, type Socket as DgramSocket } from 'node:dgram';
import { healthCheckSchema, poolSchema, type HealthCheckConfig } from '../../src/config/schema.ts';
import { HealthChecker, type ProbeResult } from '../../src/health/checker.ts';
import { Pool } from '../../src/pool/pool.ts';
import { captureLogger } from '../helpers/log.ts';
import { tcpProbe } from '../../src/health/tcp-probe.ts';
import { udpProbe } from '../../src/health/udp-probe.ts';
import { buildLocalProxyHeader } from '../../src/proxy-protocol/build.ts';
import { UpstreamServer } from '../../src/pool/server.ts';
import { startBalancer } from '../helpers/balancer.ts';
import { listenTcp, readTag, waitFor, type RunningServer } from '../helpers/net.ts';

// ---- helpers ---------------------------------------------------------------------------------

const messages = (lines: () => Array<Record<string, unknown>>) => lines().map((line) => String(line.msg));
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A TCP server on 127.0.0.1:`port` (0 = any). */
const listenOn = (port: number, onConnection: (socket: Socket) => void): Promise<RunningServer> => listenTcp(onConnection, '127.0.0.1', port);

/** As helpers/net.ts tagServer, but on a chosen port (to bring a server back where it was). */
function tagServerOn(port: number, tag: string): Promise<RunningServer> {
  return listenOn(port, (socket) => {
    socket.write(`${tag}\n`);
    socket.pipe(socket);
  });
}

/**
 * A tiny Redis-like server: answers every `PING\r\n` with `reply` (default `+PONG\r\n`).
 * Counts the PINGs and the connections, and whether each connection was closed by the peer.
 */
async function redisLike(reply = '+PONG\r\n') {
  const stats = { connections: 0, pings: 0, closed: 0 };
  const running = await listenOn(0, (socket) => {
    stats.connections++;
    let buffered = '';
    socket.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('latin1');
      while (buffered.includes('PING\r\n')) {
        buffered = buffered.replace('PING\r\n', '');
        stats.pings++;
        socket.write(reply);
      }
    });
    socket.on('end', () => stats.closed++);
  });
  return { ...running, stats };
}

const V2_SIGNATURE = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');

/**
 * A server that insists on a PROXY header (v1 or v2) as the very first bytes, as a backend
 * behind `accept-proxy` does: anything else is closed at once. After the header it behaves as
 * redisLike for `PING\r\n` and answers anything else with `tag\n`. Records each connection's
 * first chunk, to check the header and `send` arrived in one write.
 */
async function proxyRequiringServer(tag: string) {
  const firstChunks: Buffer[] = [];
  const stats = { accepted: 0, rejected: 0 };
  const running = await listenOn(0, (socket) => {
    let buffered: Buffer = Buffer.alloc(0);
    let headerDone = false;
    socket.on('data', (chunk: Buffer) => {
      if (!headerDone && buffered.length === 0) firstChunks.push(chunk);
      buffered = Buffer.concat([buffered, chunk]);
      if (!headerDone) {
        let rest: Buffer | undefined;
        if (buffered.subarray(0, 6).toString('latin1') === 'PROXY ') {
          const end = buffered.indexOf('\r\n');
          if (end < 0) return;
          rest = buffered.subarray(end + 2);
        } else if (buffered.length >= 16 && buffered.subarray(0, 12).equals(V2_SIGNATURE)) {
          const length = 16 + buffered.readUInt16BE(14);
          if (buffered.length < length) return;
          rest = buffered.subarray(length);
        } else if (buffered.length >= 6 || !'PROXY '.startsWith(buffered.toString('latin1')) && !V2_SIGNATURE.subarray(0, buffered.length).equals(buffered)) {
          stats.rejected++;
          socket.destroy();
          return;
        } else return;
        headerDone = true;
        stats.accepted++;
        buffered = rest;
        if (buffered.length === 0) {
          socket.write(`${tag}\n`);
          return;
        }
      }
      const text = buffered.toString('latin1');
      buffered = Buffer.alloc(0);
      socket.write(text.startsWith('PING\r\n') ? '+PONG\r\n' : `${tag}\n`);
    });
  });
  return { ...running, firstChunks, stats };
}

/** A port with nothing listening: bind one, note it, close it. */
async function closedTcpPort(): Promise<number> {
  const running = await listenTcp(() => {});
  await running.close();
  return running.port;
}

function check(overrides: Record<string, unknown> = {}): HealthCheckConfig {
  return healthCheckSchema.parse({ interval: '1s', timeout: '500ms', ...overrides });
}

function serverAt(port: number, host = '127.0.0.1'): UpstreamServer {
  return new UpstreamServer(poolSchema.parse({ servers: [{ address: `${host}:${port}` }] }).servers[0]!, 0);
}

/** Runs a probe with its own abort after `timeoutMs` (what the checker does). */
async function probeWith(probe: typeof tcpProbe, server: UpstreamServer, hc: HealthCheckConfig, timeoutMs = 500, proxyHeader?: Buffer): Promise<ProbeResult & { ms: number }> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  const started = Date.now();
  const result = await probe(server, hc, { signal: controller.signal, proxyHeader });
  clearTimeout(timer);
  return { ...result, ms: Date.now() - started };
}

// ---- tcp probe -------------------------------------------------------------------------------

t.test('tcp probe: connect success passes and the socket is closed afterwards', async (t) => {
  let closed = 0;
  // allowHalfOpen servers: the probe's FIN shows as 'end' (the server side stays open).
  const running = await listenTcp((socket) => {
    socket.on('end', () => closed++);
    socket.resume();
  });
  t.teardown(() => running.close());
  const result = await probeWith(tcpProbe, serverAt(running.port), check());
  t.match(result, { pass: true, detail: 'ok' });
  await waitFor(() => closed === 1, 2000, 'the server to see the probe close');
  t.pass('the probe closed its connection');
});

t.test('tcp probe: a refused connect fails with the errno', async (t) => {
  const port = await closedTcpPort();
  const result = await probeWith(tcpProbe, serverAt(port), check());
  t.match(result, { pass: false, detail: 'connect ECONNREFUSED' });
});

t.test('tcp probe: `port` overrides the server port', async (t) => {
  const running = await listenTcp(() => {});
  t.teardown(() => running.close());
  const closed = await closedTcpPort();
  const result = await probeWith(tcpProbe, serverAt(closed), check({ port: running.port }));
  t.match(result, { pass: true, detail: 'ok' });
});

t.test('tcp probe: send/expect against a Redis-like server', async (t) => {
  const good = await redisLike();
  const bad = await redisLike('-ERR loading\r\n');
  t.teardown(() => Promise.all([good.close(), bad.close()]));
  const hc = check({ send: 'PING\\r\\n', expect: '+PONG' });
  t.match(await probeWith(tcpProbe, serverAt(good.port), hc), { pass: true, detail: 'ok' });
  t.equal(good.stats.pings, 1, 'the escapes were decoded: the server saw PING\\r\\n');
  const mismatch = await probeWith(tcpProbe, serverAt(bad.port), hc);
  t.match(mismatch, { pass: false, detail: 'reply did not match "+PONG" (got "-ERR loading\\r\\n")' });
  t.ok(mismatch.ms < 400, 'a wrong reply fails at once, not at the timeout');
  const regex = await probeWith(tcpProbe, serverAt(good.port), check({ send: 'PING\\r\\n', expect: '/^\\+PO+NG\\r\\n$/' }));
  t.match(regex, { pass: true, detail: 'ok' });
  await waitFor(() => good.stats.closed === good.stats.connections && bad.stats.closed === bad.stats.connections, 2000, 'every probe connection closed');
});

t.test('tcp probe: a silent server fails when the signal aborts, saying what it waited for', async (t) => {
  const silent = await listenTcp(() => {});
  t.teardown(() => silent.close());
  const result = await probeWith(tcpProbe, serverAt(silent.port), check({ send: 'PING\\r\\n', expect: '+PONG' }), 150);
  t.match(result, { pass: false, detail: 'waiting for reply' });
  t.ok(result.ms >= 140 && result.ms < 1000, `resolved right after the abort (${result.ms}ms)`);

  const partial = await listenTcp((socket) => socket.write('+PO'));
  t.teardown(() => partial.close());
  const half = await probeWith(tcpProbe, serverAt(partial.port), check({ expect: '+PONG' }), 150);
  t.match(half, { pass: false, detail: 'waiting for reply, got "+PO"' });
});

t.test('tcp probe: a server that closes without replying, or floods without matching, fails', async (t) => {
  const closer = await listenTcp((socket) => socket.end());
  const flood = await listenTcp((socket) => {
    const junk = Buffer.alloc(64 * 1024, 0x61);
    socket.write(junk);
  });
  t.teardown(() => Promise.all([closer.close(), flood.close()]));
  t.match(await probeWith(tcpProbe, serverAt(closer.port), check({ expect: '+PONG' })), { pass: false, detail: 'closed without a reply' });
  const flooded = await probeWith(tcpProbe, serverAt(flood.port), check({ expect: '/PONG/' }), 2000);
  t.match(flooded, { pass: false, detail: /^reply did not match \/PONG\/ \(got "a+"\.\.\.\)$/ });
  t.ok(flooded.ms < 1500, 'gives up at the 16 KiB bound, not at the timeout');
});

t.test('tcp probe: the PROXY header and send leave in one write', async (t) => {
  const strict = await proxyRequiringServer('strict');
  t.teardown(() => strict.close());
  const hc = check({ send: 'PING\\r\\n', expect: '+PONG' });
  t.match(await probeWith(tcpProbe, serverAt(strict.port), hc, 500, buildLocalProxyHeader('v1')), { pass: true, detail: 'ok' });
  t.equal(strict.firstChunks.at(-1)!.toString('latin1'), 'PROXY UNKNOWN\r\nPING\r\n');
  t.match(await probeWith(tcpProbe, serverAt(strict.port), hc, 500, buildLocalProxyHeader('v2')), { pass: true, detail: 'ok' });
  t.equal(strict.firstChunks.at(-1)!.length, 16 + 6, 'v2 LOCAL header (16 bytes) + PING\\r\\n in the first chunk');
  t.match(await probeWith(tcpProbe, serverAt(strict.port), check(), 500, buildLocalProxyHeader('v1')), { pass: true }, 'without send, the header alone');
  t.match(await probeWith(tcpProbe, serverAt(strict.port), hc, 500), { pass: false }, 'without the header the strict server closes on us');
});

t.test('tcp probe: an already aborted signal starts nothing', async (t) => {
  const controller = new AbortController();
  controller.abort();
  t.match(await tcpProbe(serverAt(1), check(), { signal: controller.signal }), { pass: false, detail: 'not started' });
});

// ---- udp probe -------------------------------------------------------------------------------

async function udpServer(onMessage: (socket: DgramSocket, message: Buffer, rinfo: { address: string; port: number }) => void): Promise<{ port: number; received: Buffer[]; close(): Promise<void> }> {
  const socket = createSocket('udp4');
  const received: Buffer[] = [];
  socket.on('message', (message, rinfo) => {
    received.push(message);
    onMessage(socket, message, rinfo);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', () => resolve()));
  return { port: socket.address().port, received, close: () => new Promise<void>((resolve) => socket.close(() => resolve())) };
}

t.test('udp probe: any reply passes without expect; the datagram is send (or empty)', async (t) => {
  const echo = await udpServer((socket, message, rinfo) => socket.send(message.length ? message : Buffer.from('hi'), rinfo.port, rinfo.address));
  t.teardown(() => echo.close());
  t.match(await probeWith(udpProbe, serverAt(echo.port), check({ type: 'udp' })), { pass: true, detail: 'ok' });
  t.equal(echo.received.at(-1)!.length, 0, 'an empty datagram when there is no send');
  t.match(await probeWith(udpProbe, serverAt(echo.port), check({ type: 'udp', send: 'ping\\x00', expect: 'ping' })), { pass: true });
  t.equal(echo.received.at(-1)!.toString('hex'), '70696e6700');
  t.match(await probeWith(udpProbe, serverAt(echo.port), check({ type: 'udp', send: 'nope', expect: 'ping' })), { pass: false, detail: 'reply did not match "ping" (got "nope")' });
  t.match(await probeWith(udpProbe, serverAt(echo.port), check({ type: 'udp', send: 'ping' }), 500, buildLocalProxyHeader('v2')), { pass: true });
  t.equal(echo.received.at(-1)!.length, 16 + 4, 'the PROXY v2 header leads the datagram');
});

t.test('udp probe: port unreachable (ECONNREFUSED) fails', async (t) => {
  const gone = await udpServer(() => {});
  await gone.close();
  const result = await probeWith(udpProbe, serverAt(gone.port), check({ type: 'udp', send: 'ping' }), 1000);
  t.match(result, { pass: false, detail: 'ECONNREFUSED (port unreachable)' });
  t.ok(result.ms < 900, 'without waiting for the timeout');
});

t.test('udp probe: a silent server fails at the abort', async (t) => {
  const silent = await udpServer(() => {});
  t.teardown(() => silent.close());
  const result = await probeWith(udpProbe, serverAt(silent.port), check({ type: 'udp', send: 'ping' }), 150);
  t.match(result, { pass: false, detail: 'waiting for reply' });
  t.equal(silent.received.length, 1);
});

t.test('a udp health check (real clock, default probe) marks a silent port down and keeps a replying one up', async (t) => {
  const echo = await udpServer((socket, message, rinfo) => socket.send(message, rinfo.port, rinfo.address));
  const gone = await udpServer(() => {});
  await gone.close();
  const { logger, lines } = captureLogger('info');
  const pool = new Pool('dns', poolSchema.parse({
    servers: [{ address: `127.0.0.1:${echo.port}` }, { address: `127.0.0.1:${gone.port}` }],
    healthCheck: { type: 'udp', interval: '100ms', timeout: '80ms', send: 'ping', expect: 'ping' },
  }), { logger });
  const checker = new HealthChecker(pool, { logger });
  t.teardown(async () => {
    checker.stop();
    pool.close();
    await echo.close();
  });
  checker.start();
  await waitFor(() => !pool.servers[1]!.healthy, 2000, 'the closed udp port to be marked down');
  await sleep(300);
  t.equal(pool.servers[0]!.healthy, true, 'the echoing server stays up');
  t.ok(echo.received.length >= 3, `probed every interval (${echo.received.length} datagrams)`);
  t.ok(messages(lines).includes(`server 127.0.0.1:${gone.port} up -> down: ECONNREFUSED (port unreachable) after 1 check`));
  checker.stop();
  const count = echo.received.length;
  await sleep(250);
  t.equal(echo.received.length, count, 'no probe after stop()');
});

// ---- through the balancer ----------------------------------------------------------------------

const FAST_CHECK = { interval: '100ms', timeout: '80ms', rise: 2, fall: 2 };

/** One connection through the balancer: the tag it got, or why it failed (bounded: 2 s). */
async function oneConnection(port: number): Promise<{ tag?: string; error?: string }> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('hung for 2s')), 2000);
  });
  try {
    const { tag, socket } = await Promise.race([readTag(port), hung]);
    socket.destroy();
    return { tag };
  } catch (err) {
    return { error: (err as Error).message };
  } finally {
    clearTimeout(timer);
  }
}

/** Short connections in a loop (`concurrency` at a time) until stop(); each result timestamped. */
function loadLoop(port: number, concurrency = 4) {
  const results: Array<{ start: number; tag?: string; error?: string }> = [];
  let stopped = false;
  const workers = Array.from({ length: concurrency }, async () => {
    while (!stopped) {
      const start = Date.now();
      results.push({ start, ...(await oneConnection(port)) });
    }
  });
  return {
    results,
    stop: async () => {
      stopped = true;
      await Promise.all(workers);
    },
  };
}

async function tagsOf(port: number, n: number): Promise<string[]> {
  const tags: string[] = [];
  for (let i = 0; i < n; i++) {
    const result = await oneConnection(port);
    tags.push(result.tag ?? `error: ${result.error}`);
  }
  return tags;
}


t.test('a server killed mid-load is taken out after `fall` probes, and back after `rise` when it returns', async (t) => {
  const s1 = await tagServerOn(0, 's1');
  let s2 = await tagServerOn(0, 's2');
  const s3 = await tagServerOn(0, 's3');
  const port2 = s2.port;
  const { sy, lines } = await startBalancer({
    listeners: [{ name: 'front', protocol: 'tcp', bind: '127.0.0.1:0', pool: 'app' }],
    pools: {
      app: {
        retries: 2,
        servers: [s1, s2, s3].map((s) => ({ address: `127.0.0.1:${s.port}` })),
        healthCheck: FAST_CHECK,
        // Only the active check may take it out, so this test measures the active check.
        passiveCheck: { failures: 0 },
      },
    },
  });
  t.teardown(async () => {
    await sy.shutdown(100);
    await Promise.all([s1.close(), s2.close(), s3.close()]);
  });
  const port = sy.address('front').port;
  const pool = sy.pools.get('app')!;
  const server2 = pool.servers[1]!;

  const load = loadLoop(port);
  await sleep(300);
  t.ok(load.results.some((r) => r.tag === 's2'), 's2 takes traffic before the kill');

  await s2.close();
  const killedAt = Date.now();
  await waitFor(() => !server2.healthy, 3000, 's2 to be marked down');
  const downAfter = Date.now() - killedAt;
  t.ok(downAfter < 1000, `marked down ${downAfter}ms after the kill (fall 2 × interval 100ms)`);
  const picksAtFlip = server2.total;
  await sleep(300);
  t.equal(server2.total, picksAtFlip, 'no new connection goes to it once it is down');
  t.ok(
    messages(lines).includes(`server 127.0.0.1:${port2} up -> down: connect ECONNREFUSED after 2 checks`),
    'the flip is logged with the probe reason',
  );

  s2 = await tagServerOn(port2, 's2');
  const restartedAt = Date.now();
  await waitFor(() => server2.healthy, 3000, 's2 to come back');
  const upAfter = Date.now() - restartedAt;
  t.ok(upAfter >= 85, `back only after rise (2) passing probes: ${upAfter}ms after the restart`);
  t.ok(messages(lines).includes(`server 127.0.0.1:${port2} down -> up: ok after 2 checks`), 'the return is logged');
  const upAt = Date.now();
  await sleep(300);
  await load.stop();

  const failed = load.results.filter((r) => r.error !== undefined);
  t.same(
    failed.filter((r) => r.start >= killedAt),
    [],
    'no client connection started after the kill failed (refused connects were retried elsewhere)',
  );
  t.ok(failed.length <= 4, `at most the connections in flight at the kill failed (${failed.length})`);
  t.ok(load.results.filter((r) => r.start > upAt && r.tag === 's2').length > 0, 's2 gets traffic again');
  t.ok(
    lines().filter((line) => String(line.msg).startsWith(`server 127.0.0.1:${port2}`)).length === 2,
    'exactly two flips logged for s2 (down, up)',
  );
});

t.test('backups serve only while every primary is down, and hand traffic back', async (t) => {
  let p1 = await tagServerOn(0, 'p1');
  const p2 = await tagServerOn(0, 'p2');
  const b1 = await tagServerOn(0, 'b1');
  const port1 = p1.port;
  const { sy, lines } = await startBalancer({
    listeners: [{ name: 'front', protocol: 'tcp', bind: '127.0.0.1:0', pool: 'app' }],
    pools: {
      app: {
        servers: [{ address: `127.0.0.1:${p1.port}` }, { address: `127.0.0.1:${p2.port}` }, { address: `127.0.0.1:${b1.port}`, backup: true }],
        healthCheck: FAST_CHECK,
      },
    },
  });
  t.teardown(async () => {
    await sy.shutdown(100);
    await Promise.all([p1.close(), p2.close(), b1.close()]);
  });
  const port = sy.address('front').port;
  const pool = sy.pools.get('app')!;
  await sleep(150);
  t.same([...new Set(await tagsOf(port, 20))].sort(), ['p1', 'p2'], 'primaries only while they are up');

  await Promise.all([p1.close(), p2.close()]);
  t.same(new Set(await tagsOf(port, 10)), new Set(['b1']), 'every primary refusing: failover reaches the backup at once');
  await waitFor(() => !pool.servers[0]!.healthy && !pool.servers[1]!.healthy, 3000, 'both primaries down');
  t.same(new Set(await tagsOf(port, 10)), new Set(['b1']), 'no primary ready: the backup serves');
  t.notOk(lines().some((line) => line.event === 'pool-down'), 'a ready backup means the pool is not down');

  p1 = await tagServerOn(port1, 'p1');
  await waitFor(() => pool.servers[0]!.healthy, 3000, 'p1 to come back');
  const backupPicks = pool.servers[2]!.total;
  t.same(new Set(await tagsOf(port, 20)), new Set(['p1']), 'a primary is back: traffic returns to it');
  t.equal(pool.servers[2]!.total, backupPicks, 'the backup got nothing more');
});

t.test('no server ready: connections are closed at once, logged, never hung', async (t) => {
  const a = await tagServerOn(0, 'a');
  const b = await tagServerOn(0, 'b');
  const { sy, lines } = await startBalancer({
    listeners: [{ name: 'front', protocol: 'tcp', bind: '127.0.0.1:0', pool: 'app' }],
    pools: { app: { servers: [a, b].map((s) => ({ address: `127.0.0.1:${s.port}` })), healthCheck: FAST_CHECK } },
  });
  t.teardown(async () => {
    await sy.shutdown(100);
  });
  const port = sy.address('front').port;
  const pool = sy.pools.get('app')!;
  await Promise.all([a.close(), b.close()]);
  await waitFor(() => !pool.hasReadyServer(), 3000, 'the pool to have no ready server');
  t.match(lines().find((line) => line.event === 'pool-down'), { level: 'error', msg: 'pool app has no ready server: new connections will be refused' });

  for (let i = 0; i < 5; i++) {
    const started = Date.now();
    const outcome = await new Promise<{ data: number; ms: number }>((resolve) => {
      const socket = connect({ port, host: '127.0.0.1' });
      let data = 0;
      socket.on('data', (chunk) => (data += chunk.length));
      socket.on('error', () => {});
      socket.on('close', () => resolve({ data, ms: Date.now() - started }));
      setTimeout(() => socket.destroy(), 2000).unref();
    });
    t.equal(outcome.data, 0, 'nothing sent to the client');
    t.ok(outcome.ms < 500, `closed at once (${outcome.ms}ms)`);
  }
  await waitFor(() => lines().filter((line) => JSON.stringify(line).includes('no-server-ready')).length >= 5, 2000, 'one log line per refused connection');
  t.pass('each refused connection is logged as no-server-ready');
});

t.test('send/expect probes against a Redis-like server', async (t) => {
  const good = await redisLike();
  const bad = await redisLike('-ERR loading\r\n');
  const { sy, lines } = await startBalancer({
    listeners: [{ name: 'redis', protocol: 'tcp', bind: '127.0.0.1:0', pool: 'redis' }],
    pools: {
      redis: {
        servers: [{ address: `127.0.0.1:${good.port}` }, { address: `127.0.0.1:${bad.port}` }],
        healthCheck: { ...FAST_CHECK, send: 'PING\\r\\n', expect: '+PONG' },
      },
    },
  });
  t.teardown(async () => {
    await sy.shutdown(100);
    await Promise.all([good.close(), bad.close()]);
  });
  const pool = sy.pools.get('redis')!;
  await waitFor(() => !pool.servers[1]!.healthy, 2000, 'the -ERR server to be marked down');
  t.ok(
    messages(lines).includes(`server 127.0.0.1:${bad.port} up -> down: reply did not match "+PONG" (got "-ERR loading\\r\\n") after 1 check`),
    'the first failing probe marks it down at once, with the reply in the reason',
  );
  await sleep(400);
  t.equal(pool.servers[0]!.healthy, true, 'the +PONG server stays up');
  t.ok(good.stats.pings >= 3, `the good server was probed repeatedly (${good.stats.pings} PINGs)`);
  t.ok(good.stats.connections - good.stats.closed <= 1, 'every probe closed its connection (one may be in flight)');

  const port = sy.address('redis').port;
  for (let i = 0; i < 5; i++) {
    const reply = await new Promise<string>((resolve, reject) => {
      const socket = connect({ port, host: '127.0.0.1' }, () => socket.write('PING\r\n'));
      socket.once('data', (chunk) => {
        resolve(chunk.toString());
        socket.destroy();
      });
      socket.once('error', reject);
    });
    t.equal(reply, '+PONG\r\n', 'client traffic goes to the healthy server only');
  }
});

t.test('a probe sends the PROXY header first when the pool sends one', async (t) => {
  const v1 = await proxyRequiringServer('v1');
  const v2 = await proxyRequiringServer('v2');
  const none = await proxyRequiringServer('none');
  const pingCheck = { ...FAST_CHECK, send: 'PING\\r\\n', expect: '+PONG' };
  const { sy, lines } = await startBalancer({
    listeners: [
      { name: 'front-v1', protocol: 'tcp', bind: '127.0.0.1:0', pool: 'with-v1' },
      { name: 'front-v2', protocol: 'tcp', bind: '127.0.0.1:0', pool: 'with-v2' },
    ],
    pools: {
      'with-v1': { servers: [{ address: `127.0.0.1:${v1.port}` }], sendProxyProtocol: 'v1', healthCheck: pingCheck },
      'with-v2': { servers: [{ address: `127.0.0.1:${v2.port}` }], sendProxyProtocol: 'v2', healthCheck: pingCheck },
      // The same strict server without sendProxyProtocol: its probes must fail.
      'without': { servers: [{ address: `127.0.0.1:${none.port}` }], healthCheck: pingCheck },
    },
  });
  t.teardown(async () => {
    await sy.shutdown(100);
    await Promise.all([v1.close(), v2.close(), none.close()]);
  });
  await waitFor(() => !sy.pools.get('without')!.servers[0]!.healthy, 2000, 'the pool without PROXY to fail its probes');
  await sleep(400);
  t.equal(sy.pools.get('with-v1')!.servers[0]!.healthy, true, 'v1 pool: probes pass');
  t.equal(sy.pools.get('with-v2')!.servers[0]!.healthy, true, 'v2 pool: probes pass');
  t.ok(v1.stats.accepted >= 3 && v1.stats.rejected === 0, `v1 server accepted every probe (${v1.stats.accepted})`);
  t.ok(v2.stats.accepted >= 3 && v2.stats.rejected === 0, `v2 server accepted every probe (${v2.stats.accepted})`);
  t.ok(
    v1.firstChunks.some((chunk) => chunk.toString('latin1') === 'PROXY UNKNOWN\r\nPING\r\n'),
    'v1: a LOCAL header and PING in the same first chunk',
  );
  t.ok(
    v2.firstChunks.some((chunk) => chunk.length === 22 && chunk.subarray(0, 12).equals(V2_SIGNATURE) && chunk[12] === 0x20),
    'v2: a LOCAL header (version 2, command LOCAL) and PING in the same first chunk',
  );
  t.ok(none.stats.rejected >= 1 && none.stats.accepted === 0, 'without the header the strict server closed the probe');
  t.ok(messages(lines).some((msg) => msg.startsWith(`server 127.0.0.1:${none.port} up -> down:`)), 'and the failure is logged');

  t.same(await tagsOf(sy.address('front-v1').port, 3), ['v1', 'v1', 'v1'], 'client traffic through the v1 pool is accepted by the strict server');
  t.same(await tagsOf(sy.address('front-v2').port, 3), ['v2', 'v2', 'v2'], 'and through the v2 pool');
});
