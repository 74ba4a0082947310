import t from 'tap';
import { startBalancer } from '../helpers/balancer.ts';
import { tagServer, waitFor, type RunningServer } from '../helpers/net.ts';
import { closeOutcome, connectClient, sleep } from '../helpers/tcp-client.ts';
import { connectionLines, tcpDocument } from '../helpers/tcp-balancer.ts';
import { blackholeListener, deadPort } from '../helpers/unreachable.ts';
import type { Switchyard } from '../../src/server.ts';

// Failover through real loopback sockets. A "dead" server is a port nothing listens on (the
// connect is refused at once); a "blackhole" is a listener whose accept queue is full, so its
// SYNs go unanswered and only the connect timeout ends the attempt.

type Lines = () => Array<Record<string, unknown>>;

async function start(t: { teardown(fn: () => unknown): void }, document: unknown, upstreams: RunningServer[]): Promise<{ sy: Switchyard; port: number; lines: Lines }> {
  const { sy, lines } = await startBalancer(document);
  t.teardown(async () => {
    await sy.shutdown(1000);
    await Promise.all(upstreams.map((server) => server.close()));
  });
  return { sy, port: sy.address('t').port, lines };
}

/**
 * One client exchange: connect, send `ping\n` at once (before the balancer has an upstream)
 * and half-close, then collect everything until the connection closes.
 */
async function exchange(port: number, timeoutMs = 3000) {
  const socket = await connectClient(port);
  const outcome = closeOutcome(socket, timeoutMs);
  socket.end('ping\n');
  return outcome;
}

const downLines = (lines: Lines) => lines().filter((line) => typeof line.msg === 'string' && line.msg.includes('up -> down'));

t.test('a dead server with retries 2: every client reaches a live server and sees nothing of the failed attempt', { timeout: 30_000 }, async (t) => {
  const a = await tagServer('a');
  const b = await tagServer('b');
  const dead = await deadPort();
  // passiveCheck off: the dead server stays in the rotation, so failover happens again and again.
  const { sy, port, lines } = await start(t, tcpDocument([a.port, dead, b.port], { pool: { retries: 2, passiveCheck: { failures: 0 } } }), [a, b]);

  const seen: string[] = [];
  for (let i = 0; i < 30; i++) {
    const outcome = await exchange(port);
    const text = outcome.data.toString();
    seen.push(text);
    if (!/^[ab]\nping\n$/.test(text) || outcome.errorCode !== undefined || !outcome.ended) {
      t.fail(`connection ${i}: got ${JSON.stringify(text)}, error ${outcome.errorCode}, ended ${outcome.ended}`);
    }
  }
  t.equal(seen.filter((text) => /^[ab]\nping\n$/.test(text)).length, 30, 'all 30 got a live tag and their own bytes echoed back, nothing else');

  await waitFor(() => connectionLines(lines()).length === 30, 3000, '30 connection log lines');
  const conns = connectionLines(lines());
  const deadServer = sy.pools.get('p')!.servers[1]!;
  const retried = conns.filter((line) => line.attempts === 2);
  t.ok(retried.length >= 5, `failover happened (${retried.length} connections needed a second attempt)`);
  t.equal(retried.length, deadServer.total, 'every pick of the dead server was followed by exactly one retry');
  t.same(conns.filter((line) => line.end !== 'closed'), [], 'every connection ended normally');
  t.same(conns.filter((line) => line.server === deadServer.label), [], 'no connection is attributed to the dead server');
  t.same(conns.filter((line) => (line.attempts as number) > 2), [], 'never more than one failed attempt per connection');
  t.equal(deadServer.active, 0, 'failed attempts released their claim on the dead server');
});

t.test('all servers dead: clients are closed promptly, then the pool goes down', { timeout: 30_000 }, async (t) => {
  const dead1 = await deadPort();
  const dead2 = await deadPort();
  const { sy, port, lines } = await start(t, tcpDocument([dead1, dead2], { pool: { retries: 2, passiveCheck: { failures: 3, cooldown: '60s' } } }), []);

  for (let i = 0; i < 4; i++) {
    const outcome = await exchange(port, 2000);
    t.equal(outcome.data.length, 0, `connection ${i}: the client received nothing`);
    t.ok(outcome.ms < 1000, `connection ${i}: closed promptly (${outcome.ms}ms)`);
  }
  await waitFor(() => connectionLines(lines()).length === 4, 3000, '4 connection log lines');
  const conns = connectionLines(lines());
  t.same(
    conns.map((line) => [line.end, line.attempts, line.server]),
    [
      ['connect-failed', 2, null],
      ['connect-failed', 2, null],
      ['connect-failed', 2, null],
      ['no-server-ready', 0, null],
    ],
    'each of the first three tried both servers; the fourth found the pool down',
  );
  t.same(
    downLines(lines).map((line) => line.server).sort(),
    sy.pools.get('p')!.servers.map((server) => server.label).sort(),
    'both servers were marked down by the passive check',
  );
  t.ok(lines().some((line) => line.event === 'pool-down'), 'the pool-down line was logged');
  t.same(sy.pools.get('p')!.servers.map((server) => server.active), [0, 0], 'nothing left claimed');
});

t.test('retries 0: a dead first pick closes the client; the next client reaches the live server', { timeout: 30_000 }, async (t) => {
  const live = await tagServer('live');
  const dead = await deadPort();
  const { port, lines } = await start(t, tcpDocument([dead, live.port], { pool: { retries: 0 } }), [live]);

  const first = await exchange(port, 2000);
  t.equal(first.data.length, 0, 'the client received nothing');
  t.ok(first.ms < 1000, `closed promptly (${first.ms}ms)`);
  const second = await exchange(port);
  t.equal(second.data.toString(), 'live\nping\n', 'round-robin moved on to the live server');

  await waitFor(() => connectionLines(lines()).length === 2, 3000, '2 connection log lines');
  t.same(
    connectionLines(lines()).map((line) => [line.end, line.attempts]),
    [
      ['connect-failed', 1],
      ['closed', 1],
    ],
  );
});

t.test('backup: when every primary fails, the connection fails over to a backup server', { timeout: 30_000 }, async (t) => {
  const backup = await tagServer('backup');
  const primary = await tagServer('primary');
  const dead = await deadPort();
  const { sy, port, lines } = await start(
    t,
    tcpDocument([dead, { port: backup.port, backup: true }, primary.port], { pool: { retries: 2, passiveCheck: { failures: 0 } } }),
    [backup, primary],
  );
  const pool = sy.pools.get('p')!;
  const primaryServer = pool.servers[2]!;
  t.equal((await exchange(port)).data.toString().split('\n')[0], 'primary', 'a ready primary is preferred over the backup');

  // Take the live primary out: only the dead primary is left, and it fails on every attempt.
  pool.setHealth(primaryServer, false, 'test');
  for (let i = 0; i < 3; i++) {
    const outcome = await exchange(port);
    t.equal(outcome.data.toString(), 'backup\nping\n', `connection ${i}: served by the backup after the dead primary failed`);
  }
  await waitFor(() => connectionLines(lines()).length === 4, 3000, '4 connection lines');
  t.same(
    connectionLines(lines())
      .slice(1)
      .map((line) => [line.end, line.attempts, line.server]),
    new Array(3).fill(['closed', 2, pool.servers[1]!.label]),
  );
});

t.test('passive check: after passiveCheck.failures failed connects the dead server is marked down and never tried again', { timeout: 30_000 }, async (t) => {
  const live = await tagServer('live');
  const dead = await deadPort();
  const { sy, port, lines } = await start(t, tcpDocument([dead, live.port], { pool: { retries: 2, passiveCheck: { failures: 3, cooldown: '60s' } } }), [live]);
  const deadServer = sy.pools.get('p')!.servers[0]!;

  let connections = 0;
  while (downLines(lines).length === 0 && connections < 20) {
    const outcome = await exchange(port);
    connections++;
    t.equal(outcome.data.toString(), 'live\nping\n', `connection ${connections} was served by the live server`);
  }
  const down = downLines(lines);
  t.equal(down.length, 1, 'one "up -> down" line');
  t.equal(down[0]?.server, deadServer.label, 'for the dead server');
  t.match(String(down[0]?.msg), /ECONNREFUSED after 3 failed connects/, 'saying why and after how many failures');
  t.equal(deadServer.total, 3, 'marked down at the third failure, not later');
  t.equal(deadServer.healthy, false);

  const before = connectionLines(lines()).length;
  for (let i = 0; i < 10; i++) {
    const outcome = await exchange(port);
    t.equal(outcome.data.toString(), 'live\nping\n');
  }
  t.equal(deadServer.total, 3, 'the dead server was not picked again');
  await waitFor(() => connectionLines(lines()).length === before + 10, 3000, '10 more connection lines');
  t.same(
    connectionLines(lines())
      .slice(before)
      .map((line) => line.attempts),
    new Array(10).fill(1),
    'each later connection needed one attempt',
  );
});

t.test('connect timeout: an upstream that never answers the SYN is abandoned after timeouts.connect', { timeout: 30_000 }, async (t) => {
  const hole = await blackholeListener();
  if (hole === undefined) {
    // A skipped subtest, so the reason shows in the TAP output.
    t.skip('connect timeout: this kernel accepted every connection, so no loopback listener ignores SYNs', () => {});
    return;
  }
  t.teardown(() => hole.close());
  const live = await tagServer('live');

  t.test('with retries: the next server serves the client, early bytes included', async (t) => {
    const { port, lines } = await start(
      t,
      tcpDocument([hole.port, live.port], { pool: { retries: 2, passiveCheck: { failures: 0 } }, listener: { timeouts: { connect: '300ms' } } }),
      [],
    );
    const started = Date.now();
    const outcome = await exchange(port);
    const elapsed = Date.now() - started;
    t.equal(outcome.data.toString(), 'live\nping\n', 'served by the live server, with the bytes sent during the failed attempt');
    t.ok(elapsed >= 280 && elapsed < 2000, `the first attempt waited for the connect timeout (${elapsed}ms)`);
    await waitFor(() => connectionLines(lines()).length === 1, 3000, 'the connection log line');
    t.match(connectionLines(lines())[0], { end: 'closed', attempts: 2 });
  });

  t.test('without retries: the client is closed at the connect timeout', async (t) => {
    const { port, lines } = await start(
      t,
      tcpDocument([hole.port], { pool: { retries: 0, passiveCheck: { failures: 0 } }, listener: { timeouts: { connect: '300ms' } } }),
      [],
    );
    const outcome = await exchange(port, 3000);
    t.equal(outcome.data.length, 0, 'the client received nothing');
    t.ok(outcome.ms >= 280 && outcome.ms < 2000, `closed at the connect timeout (${outcome.ms}ms)`);
    await waitFor(() => connectionLines(lines()).length === 1, 3000, 'the connection log line');
    t.match(connectionLines(lines())[0], { end: 'connect-failed', attempts: 1 });
  });

  t.test('a client that resets during a slow connect is cleaned up at once, not at the timeout', async (t) => {
    const { sy, port, lines } = await start(
      t,
      tcpDocument([hole.port], { pool: { retries: 0, passiveCheck: { failures: 0 } }, listener: { timeouts: { connect: '3s' } } }),
      [],
    );
    const client = await connectClient(port);
    await sleep(100);
    const resetAt = Date.now();
    client.resetAndDestroy();
    await waitFor(() => connectionLines(lines()).length === 1, 2000, 'the connection to end before the 3 s connect timeout');
    t.ok(Date.now() - resetAt < 1000, `finished ${Date.now() - resetAt}ms after the reset`);
    t.match(connectionLines(lines())[0], { end: 'downstream-reset', attempts: 1 });
    t.equal(sy.pools.get('p')!.servers[0]!.active, 0, 'the abandoned attempt released its server');
    t.equal(sy.openCount(), 0);
  });

  t.teardown(() => live.close());
});
