import t from 'tap';
import { createSocket } from 'node:dgram';
import { validateConfig } from '../../src/config/load.ts';
import type { UdpListenerConfig } from '../../src/config/schema.ts';
import { UdpListener } from '../../src/l4/udp-listener.ts';
import { Pool } from '../../src/pool/pool.ts';
import { ProxyHeaderParser } from '../../src/proxy-protocol/parse.ts';
import { captureLogger } from '../helpers/log.ts';
import { waitFor } from '../helpers/net.ts';
import { client, deadPort, echoServer, openFds, sessionEnds, startUdp, tagOf, tally } from '../helpers/udp.ts';

// UdpListener over real loopback sockets, built directly on a Pool (no Server), with dgram
// echo servers that tag their replies, so a client learns which server answered.

t.test('sessions: each downstream address:port sticks to one server; sessions spread round-robin', async (t) => {
  const servers = await Promise.all(['a', 'b', 'c'].map((tag) => echoServer(t, tag)));
  const s = await startUdp(t, servers);
  const clients = await Promise.all(Array.from({ length: 12 }, () => client(t, s)));
  const first: Array<string | undefined> = [];
  for (const c of clients) first.push(tagOf(await c.ask('hello')));
  t.same(tally(first), { a: 4, b: 4, c: 4 }, '12 sessions over 3 servers');
  for (const [i, c] of clients.entries()) {
    const again = [tagOf(await c.ask('one')), tagOf(await c.ask('two'))];
    t.same(again, [first[i], first[i]], `client ${i} stays on ${first[i]}`);
  }
  t.equal(s.listener.openCount(), 12);
  t.same(
    s.pool.servers.map((server) => server.active),
    [4, 4, 4],
    'each session holds one pick',
  );
  const reply = await clients[0]!.ask('payload');
  t.equal(reply?.toString(), `${first[0]}:payload`, 'payload passes unchanged both ways');
  t.equal(s.listener.counters.sessions, 12);
});

t.test('responses: 1 ends each session at its reply, so one client socket is balanced per query', async (t) => {
  const servers = await Promise.all(['a', 'b', 'c'].map((tag) => echoServer(t, tag)));
  const s = await startUdp(t, servers, { udp: { responses: 1 } });
  const c = await client(t, s);
  const tags: Array<string | undefined> = [];
  for (let i = 0; i < 12; i++) tags.push(tagOf(await c.ask(`q${i}`)));
  t.same(tally(tags), { a: 4, b: 4, c: 4 }, 'queries from one address:port spread over all servers');
  t.equal(tags.join(''), 'abc'.repeat(4));
  await waitFor(() => s.listener.openCount() === 0, 2_000, 'sessions to end');
  t.same(
    s.pool.servers.map((server) => server.active),
    [0, 0, 0],
    'every pick released',
  );
  const ends = sessionEnds(s.lines);
  t.equal(ends.length, 12, 'one log line per session');
  t.match(ends[0], { end: 'responses', server: '127.0.0.1:' + servers[0]!.port, datagramsIn: 1, datagramsOut: 1, bytesIn: 2, bytesOut: 4 });
  t.type(ends[0]!.durationMs, 'number');
  t.match(String(ends[0]!.downstream), /^127\.0\.0\.1:\d+$/);
});

t.test('responses: 1 with pipelined queries keeps the session until every reply is in', async (t) => {
  const servers = await Promise.all(['a', 'b'].map((tag) => echoServer(t, tag, { delayMs: 50 })));
  const s = await startUdp(t, servers, { udp: { responses: 1 } });
  const c = await client(t, s);
  const got: Buffer[] = [];
  c.socket.on('message', (m) => got.push(m));
  for (let i = 0; i < 5; i++) c.send(`q${i}`);
  await waitFor(() => got.length === 5, 3_000, 'five replies');
  t.same(got.map((m) => m.toString()).sort(), ['a:q0', 'a:q1', 'a:q2', 'a:q3', 'a:q4'], 'no reply lost');
  await waitFor(() => s.listener.openCount() === 0, 2_000, 'session to end after the last reply');
});

t.test('ip-hash: a source address keeps its server across sessions and source ports', async (t) => {
  const servers = await Promise.all(['a', 'b', 'c'].map((tag) => echoServer(t, tag)));
  const s = await startUdp(t, servers, { pool: { algorithm: 'ip-hash' }, udp: { responses: 1 } });
  const bySource = new Map<string, string | undefined>();
  for (let i = 2; i < 22; i++) {
    const source = `127.0.0.${i}`;
    const tags: Array<string | undefined> = [];
    for (let round = 0; round < 3; round++) {
      const c = await client(t, s, source);
      tags.push(tagOf(await c.ask('who')));
      c.close();
    }
    t.equal(new Set(tags).size, 1, `${source}: same server from three source ports (${tags.join(',')})`);
    bySource.set(source, tags[0]);
  }
  t.ok(new Set(bySource.values()).size >= 2, `20 sources use more than one server (${[...new Set(bySource.values())].join(',')})`);
});

t.test('idle sessions expire by the sweep and their sockets close', async (t) => {
  const servers = await Promise.all(['a', 'b'].map((tag) => echoServer(t, tag)));
  const s = await startUdp(t, servers, { udp: { sessionTimeout: '200ms' } });
  const clients = await Promise.all(Array.from({ length: 20 }, () => client(t, s)));
  const before = openFds();
  const replies = await Promise.all(clients.map((c) => c.ask('x')));
  t.equal(replies.filter(Boolean).length, 20);
  t.equal(s.listener.openCount(), 20);
  t.ok(openFds() >= before + 20, 'one upstream socket per session');
  await waitFor(() => s.listener.openCount() === 0, 3_000, 'sessions to expire');
  await waitFor(() => openFds() <= before, 2_000, 'upstream sockets to close');
  t.equal(s.listener.replayBytes, 0, 'no replay buffer left behind');
  t.same(
    s.pool.servers.map((server) => server.active),
    [0, 0],
  );
  const ends = sessionEnds(s.lines);
  t.equal(ends.length, 20);
  t.ok(
    ends.every((line) => line.end === 'idle'),
    'all ended idle',
  );
  const reply = await clients[0]!.ask('back');
  t.ok(reply, 'a downstream whose session expired gets a new one');
});

t.test('maxSessions: datagrams from new downstreams are dropped, counted and logged once', async (t) => {
  const servers = [await echoServer(t, 'a')];
  const s = await startUdp(t, servers, { udp: { maxSessions: 3, sessionTimeout: '300ms' } });
  const clients = await Promise.all(Array.from({ length: 6 }, () => client(t, s)));
  const replies = await Promise.all(clients.map((c) => c.ask('x', 300)));
  t.equal(replies.filter(Boolean).length, 3, 'three sessions admitted');
  t.equal(s.listener.openCount(), 3);
  t.equal(s.listener.drops.totals['sessions-full'], 3);
  const warns = s.lines().filter((line) => line.event === 'udp-drop');
  t.equal(warns.length, 1, 'three drops in the same second: one line');
  t.equal(warns[0]!.level, 'warn');
  const refused = clients.filter((_, i) => replies[i] === undefined);
  await waitFor(() => s.listener.openCount() === 0, 3_000, 'sessions to expire');
  const later = await refused[0]!.ask('again');
  t.ok(later, 'room again once sessions expired');
});

t.test('a session whose server is marked down moves on its next datagram; none ready = dropped', async (t) => {
  const servers = await Promise.all(['a', 'b'].map((tag) => echoServer(t, tag)));
  const s = await startUdp(t, servers);
  const c = await client(t, s);
  t.equal(tagOf(await c.ask('1')), 'a');
  const [a, b] = s.pool.servers;
  s.pool.setHealth(a!, false, 'test');
  t.equal(tagOf(await c.ask('2')), 'b', 'moved to b');
  t.equal(tagOf(await c.ask('3')), 'b', 'and stays there');
  t.equal(a!.active, 0, 'old pick released');
  t.equal(b!.active, 1);
  t.equal(s.listener.openCount(), 1);
  t.equal(s.listener.counters.migrations, 1);
  t.match(sessionEnds(s.lines)[0], { end: 'server-down', server: `127.0.0.1:${servers[0]!.port}`, datagramsIn: 1, datagramsOut: 1 });

  s.pool.setHealth(b!, false, 'test');
  t.equal(await c.ask('4', 300), undefined, 'no server ready: dropped');
  t.equal(s.listener.drops.totals['no-server-ready'], 1);
  t.equal(s.listener.openCount(), 0, 'the session ended');
  t.equal(b!.active, 0);
  const other = await client(t, s);
  t.equal(await other.ask('5', 200), undefined, 'a new downstream is dropped too');
  t.equal(s.listener.drops.totals['no-server-ready'], 2);
  t.same(
    servers.map((server) => server.received.length),
    [1, 2],
    'nothing was queued for later',
  );
  s.pool.setHealth(a!, true, 'test');
  t.equal(tagOf(await c.ask('6')), 'a', 'traffic resumes when a server is ready');
});

t.test('ECONNREFUSED: a refused datagram is replayed to another server and counts as a passive failure', async (t) => {
  const dead = await deadPort();
  const live = await echoServer(t, 'b');
  const s = await startUdp(t, [{ host: '127.0.0.1', port: dead }, live], { pool: { passiveCheck: { failures: 2 } } });
  const [deadServer] = s.pool.servers;
  const first = await client(t, s);
  t.equal((await first.ask('q1'))?.toString(), 'b:q1', 'the query reached b after the dead server refused it');
  t.equal(deadServer!.consecutiveFailures, 1);
  t.equal(deadServer!.healthy, true, 'one failure is below passiveCheck.failures');
  t.match(sessionEnds(s.lines)[0], { end: 'error', detail: 'ECONNREFUSED (port unreachable)', datagramsIn: 1, datagramsOut: 0 });
  // Round-robin hands new sessions to the dead server again now and then: each query still
  // gets its answer, and the second refusal marks the server down.
  const answers: string[] = [];
  for (let i = 2; i <= 8; i++) {
    const c = await client(t, s);
    answers.push(String(await c.ask(`q${i}`)));
  }
  t.same(answers, [2, 3, 4, 5, 6, 7, 8].map((i) => `b:q${i}`), 'no query lost');
  t.equal(deadServer!.healthy, false, 'marked down by traffic');
  t.equal(s.listener.counters.failovers, 2, 'once down, the dead server is no longer picked');
  t.equal(deadServer!.active, 0, 'picks of the refused server released');
});

t.test('back-to-back datagrams to a refusing server are all replayed, none twice', async (t) => {
  const dead = await deadPort();
  const live = await echoServer(t, 'b');
  const s = await startUdp(t, [{ host: '127.0.0.1', port: dead }, live]);
  const c = await client(t, s);
  const got: string[] = [];
  c.socket.on('message', (m) => got.push(m.toString()));
  // All ten leave before the first ICMP error is read: the kernel reports it on a later send.
  for (let i = 0; i < 10; i++) c.send(`p${i}`);
  await waitFor(() => got.length >= 10, 2_000, 'ten replies');
  await new Promise((resolve) => setTimeout(resolve, 100));
  t.same(
    got.sort(),
    Array.from({ length: 10 }, (_, i) => `b:p${i}`).sort(),
    'every datagram answered exactly once, by the live server',
  );
  t.equal(s.listener.counters.failovers, 1);
});

t.test('replay memory is capped across sessions and returns to zero', async (t) => {
  // A one-way server (syslog-like): never replies, so nothing but the window clears the buffers.
  const sink = createSocket('udp4');
  let sunk = 0;
  sink.on('message', () => sunk++);
  await new Promise<void>((resolve) => sink.bind(0, '127.0.0.1', resolve));
  t.teardown(() => sink.close());
  const s = await startUdp(t, [{ host: '127.0.0.1', port: sink.address().port }], { replayBudgetBytes: 10_000, udp: { sessionTimeout: '300ms' } });
  const clients = await Promise.all(Array.from({ length: 5 }, () => client(t, s)));
  for (const c of clients) for (let i = 0; i < 10; i++) c.send(Buffer.alloc(1_000, i));
  await waitFor(() => sunk === 50, 2_000, 'all 50 datagrams delivered');
  t.equal(s.listener.replayBytes, 10_000, 'kept up to the budget, not 50,000 bytes');
  await waitFor(() => s.listener.openCount() === 0, 2_000, 'sessions to expire');
  t.equal(s.listener.replayBytes, 0, 'all released');
});

t.test('a server that goes away mid-session: the session fails over without losing the datagram', async (t) => {
  const servers = await Promise.all(['a', 'b'].map((tag) => echoServer(t, tag)));
  const s = await startUdp(t, servers);
  const c = await client(t, s);
  t.equal(tagOf(await c.ask('1')), 'a');
  await servers[0]!.close();
  t.equal((await c.ask('2'))?.toString(), 'b:2', 'replayed to b');
  t.equal(tagOf(await c.ask('3')), 'b');
  t.equal(s.listener.openCount(), 1);
});

t.test('every server refusing: the session ends with an error after pool.retries, nothing thrown', async (t) => {
  const ports = [await deadPort(), await deadPort()];
  const s = await startUdp(
    t,
    ports.map((port) => ({ host: '127.0.0.1', port })),
    { pool: { passiveCheck: { failures: 0 } } },
  );
  const c = await client(t, s);
  t.equal(await c.ask('x', 300), undefined);
  await waitFor(() => s.listener.openCount() === 0, 1_000, 'session to end');
  t.equal(s.listener.drops.totals['upstream-failed'], 1);
  t.same(
    s.pool.servers.map((server) => server.active),
    [0, 0],
  );
  const last = sessionEnds(s.lines).at(-1);
  t.match(last, { end: 'error', detail: 'ECONNREFUSED (port unreachable)' });
});

t.test('a reply arriving after its session expired is dropped safely', async (t) => {
  const slow = await echoServer(t, 'slow', { delayMs: 400 });
  const s = await startUdp(t, [slow], { udp: { sessionTimeout: '100ms' } });
  const c = await client(t, s);
  t.equal(await c.ask('late', 700), undefined, 'the late reply never reaches the downstream');
  t.equal(s.listener.openCount(), 0);
  t.equal(slow.received.length, 1, 'the server did get the datagram');
  t.equal(sessionEnds(s.lines)[0]!.end, 'idle');
  const noErrors = s.lines().filter((line) => line.level === 'error');
  t.same(noErrors, [], 'nothing logged as an error');
});

t.test('zero-length and 65,507-byte datagrams pass unchanged both ways', async (t) => {
  const server = await echoServer(t, 'a');
  const s = await startUdp(t, [server]);
  const c = await client(t, s);
  const empty = await c.ask(Buffer.alloc(0));
  t.equal(empty?.length, 0, 'empty reply delivered');
  t.equal(server.received[0]!.length, 0, 'empty datagram delivered upstream');
  const big = Buffer.alloc(65_507);
  for (let i = 0; i < big.length; i++) big[i] = (i * 31 + 7) & 0xff;
  const echoed = await c.ask(big);
  t.equal(server.received[1]!.length, 65_507);
  t.ok(server.received[1]!.equals(big), 'upstream got the exact bytes');
  t.ok(echoed?.equals(big), 'downstream got the exact bytes back');
  const log = sessionEnds(s.lines);
  t.equal(log.length, 0, 'session still open');
  s.listener.close();
  t.match(sessionEnds(s.lines)[0], { end: 'shutdown', datagramsIn: 2, bytesIn: 65_507, datagramsOut: 2, bytesOut: 65_507 });
});

t.test('IPv6: a listener on ::1 balances to IPv6 and IPv4 servers', async (t) => {
  const v6 = await echoServer(t, 'six', { host: '::1' });
  const v4 = await echoServer(t, 'four');
  const s = await startUdp(t, [v6, v4], { bind: '[::1]:0' });
  t.equal(s.host, '::1');
  const tags: Array<string | undefined> = [];
  for (let i = 0; i < 4; i++) {
    const c = await client(t, s);
    tags.push(tagOf(await c.ask('hi')));
  }
  t.same(tally(tags), { six: 2, four: 2 });
  s.listener.close();
  t.match(String(sessionEnds(s.lines)[0]!.downstream), /^\[::1\]:\d+$/);
});

t.test('sendProxyProtocol v2: every datagram to the upstream starts with a DGRAM header', async (t) => {
  const server = await echoServer(t, 'a');
  const s = await startUdp(t, [server], { pool: { sendProxyProtocol: 'v2' } });
  const c = await client(t, s);
  t.ok(await c.ask('first'));
  t.ok(await c.ask(Buffer.alloc(0)));
  t.equal(server.received.length, 2);
  const payloads: string[] = [];
  for (const datagram of server.received) {
    const result = new ProxyHeaderParser().push(datagram);
    if (result.status !== 'done') {
      t.fail(`no PROXY header: ${result.status}`);
      continue;
    }
    t.match(result.header, {
      version: 2,
      command: 'proxy',
      transport: 'udp',
      family: 4,
      source: { address: '127.0.0.1', port: c.socket.address().port },
      destination: { address: '127.0.0.1', port: s.port },
    });
    payloads.push(result.rest.toString());
  }
  t.same(payloads, ['first', ''], 'payload follows the header in the same datagram');
});

t.test('log level warn: no session lines, drops still logged', async (t) => {
  const server = await echoServer(t, 'a');
  const s = await startUdp(t, [server], { level: 'warn', udp: { responses: 1 } });
  const c = await client(t, s);
  t.ok(await c.ask('x'));
  await waitFor(() => s.listener.openCount() === 0, 1_000, 'session end');
  s.pool.setHealth(s.pool.servers[0]!, false, 'test');
  t.equal(await c.ask('y', 200), undefined);
  t.equal(sessionEnds(s.lines).length, 0);
  t.equal(s.lines().filter((line) => line.event === 'udp-drop').length, 1);
});

t.test('through Switchyard: a udp listener from config, health-checked pool, graceful shutdown', async (t) => {
  // Imported here so a Server still in progress fails this test alone, not the whole file.
  const { startBalancer } = await import('../helpers/balancer.ts');
  const servers = await Promise.all(['a', 'b'].map((tag) => echoServer(t, tag)));
  const { sy, lines } = await startBalancer({
    listeners: [{ name: 'dns', protocol: 'udp', bind: '127.0.0.1:0', pool: 'p', udp: { responses: 1 } }],
    pools: {
      p: {
        servers: servers.map((server) => ({ address: `127.0.0.1:${server.port}` })),
        healthCheck: { type: 'udp', interval: '100ms', timeout: '100ms', rise: 1, fall: 1, send: 'ping' },
      },
    },
  });
  let stopped = false;
  t.teardown(() => (stopped ? undefined : sy.shutdown(200)));
  const bound = sy.address('dns');
  const c = await client(t, { host: '127.0.0.1', port: bound.port });
  const tags: Array<string | undefined> = [];
  for (let i = 0; i < 4; i++) tags.push(tagOf(await c.ask(`q${i}`)));
  t.same(tally(tags), { a: 2, b: 2 });
  // The active check notices a server gone and the pool stops picking it, before traffic is lost.
  await servers[1]!.close();
  await waitFor(() => lines().some((line) => String(line.msg).includes('up -> down')), 3_000, 'health check to mark b down');
  const after: Array<string | undefined> = [];
  for (let i = 0; i < 4; i++) after.push(tagOf(await c.ask(`r${i}`)));
  t.same(tally(after), { a: 4 });
  t.equal(sy.openCount(), 0, 'responses: 1 sessions all ended');
  await sy.shutdown(500);
  stopped = true;
  t.ok(lines().some((line) => line.msg === 'session ended' && line.end === 'responses'));
});

t.test('listen: an address in use rejects with SWY_BIND_FAILED naming listener and address', async (t) => {
  const server = await echoServer(t, 'a');
  const config = validateConfig({
    listeners: [{ name: 'taken', protocol: 'udp', bind: `127.0.0.1:${server.port}`, pool: 'p' }],
    pools: { p: { servers: [{ address: `127.0.0.1:${server.port}` }] } },
  });
  const { logger } = captureLogger('info');
  const pool = new Pool('p', config.pools.p!, { logger });
  const listener = new UdpListener(config.listeners[0] as UdpListenerConfig, pool, { logger });
  await t.rejects(listener.listen(), { code: 'SWY_BIND_FAILED', message: new RegExp(`listener "taken" cannot bind udp 127\\.0\\.0\\.1:${server.port}`) });
  listener.close();
  listener.close();
  t.equal(listener.openCount(), 0, 'close is idempotent, also after a failed listen');
});
