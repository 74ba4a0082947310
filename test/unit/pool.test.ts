import t from 'tap';
import { poolSchema } from '../../src/config/schema.ts';
import { Pool, type ServerHealthChange } from '../../src/pool/pool.ts';
import { captureLogger } from '../helpers/log.ts';

/** Cooldown timers that fire only when the test says so. */
function fakeTimers() {
  const timers: Array<{ fn: () => void; ms: number; cancelled: boolean }> = [];
  return {
    timers,
    setTimer(fn: () => void, ms: number) {
      const timer = { fn, ms, cancelled: false };
      timers.push(timer);
      return {
        cancel: () => {
          timer.cancelled = true;
        },
      };
    },
    pending: () => timers.filter((timer) => !timer.cancelled),
    /** Fires every pending timer once. */
    fireAll() {
      for (const timer of timers.splice(0)) if (!timer.cancelled) timer.fn();
    },
  };
}

interface ServerSpec {
  address: string;
  backup?: boolean;
  weight?: number;
  maxConnections?: number;
}

function makePool(options: { servers: ServerSpec[]; algorithm?: string; healthCheck?: Record<string, unknown>; passiveCheck?: Record<string, unknown> }) {
  const config = poolSchema.parse({
    algorithm: options.algorithm ?? 'round-robin',
    servers: options.servers,
    ...(options.healthCheck ? { healthCheck: options.healthCheck } : {}),
    ...(options.passiveCheck ? { passiveCheck: options.passiveCheck } : {}),
  });
  const { logger, lines } = captureLogger('info');
  const timers = fakeTimers();
  const pool = new Pool('pg', config, { logger, random: () => 0.5, setTimer: timers.setTimer });
  const changes: ServerHealthChange[] = [];
  pool.onHealthChange((change) => changes.push(change));
  const byAddress = (label: string) => pool.servers.find((server) => server.label === label)!;
  /** Messages of the server flip lines. */
  const flips = () => lines().filter((line) => typeof line.msg === 'string' && line.msg.startsWith('server ')).map((line) => line.msg);
  const events = () => lines().filter((line) => line.event === 'pool-down' || line.event === 'pool-recovered');
  return { pool, config, lines, timers, changes, byAddress, flips, events };
}

/** Picks `n` times (releasing each at once) and counts picks per server label. */
function tally(pool: Pool, n: number, clientIp = '127.0.0.1'): Record<string, number> {
  const counts: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const result = pool.pick(clientIp);
    const key = result.server ? result.server.label : `failure:${result.failure}`;
    counts[key] = (counts[key] ?? 0) + 1;
    if (result.server) pool.release(result.server);
  }
  return counts;
}

const A = '10.0.0.11:5432';
const B = '10.0.0.12:5432';
const BACKUP = '10.0.0.21:5432';
const BACKUP2 = '10.0.0.22:5432';

t.test('backups take traffic only while no primary is ready, and give it back', async (t) => {
  const { pool, byAddress } = makePool({ servers: [{ address: A }, { address: B }, { address: BACKUP, backup: true }, { address: BACKUP2, backup: true }] });
  t.same(tally(pool, 20), { [A]: 10, [B]: 10 }, 'all primaries ready: backups idle');
  pool.setHealth(byAddress(A), false, 'test');
  t.same(tally(pool, 20), { [B]: 20 }, 'one primary left: still no backup');
  pool.setHealth(byAddress(B), false, 'test');
  t.same(tally(pool, 20), { [BACKUP]: 10, [BACKUP2]: 10 }, 'no primary ready: backups share the traffic');
  pool.setHealth(byAddress(BACKUP), false, 'test');
  t.same(tally(pool, 10), { [BACKUP2]: 10 });
  pool.setHealth(byAddress(B), true, 'test');
  t.same(tally(pool, 20), { [B]: 20 }, 'a primary back: backups give the traffic back at once');
});

t.test('a disabled primary counts as not ready (readiness = healthy and enabled)', async (t) => {
  const { pool, byAddress } = makePool({ servers: [{ address: A }, { address: BACKUP, backup: true }] });
  byAddress(A).enabled = false;
  t.same(tally(pool, 4), { [BACKUP]: 4 }, 'the primary is healthy but disabled: the backup serves');
  byAddress(A).enabled = true;
  t.same(tally(pool, 4), { [A]: 4 });
  byAddress(A).enabled = false;
  byAddress(BACKUP).enabled = false;
  t.same(tally(pool, 2), { 'failure:no-server-ready': 2 }, 'all disabled: no server ready');
});

t.test('failover: excluding every ready primary reaches a backup', async (t) => {
  const { pool, byAddress } = makePool({ servers: [{ address: A }, { address: B }, { address: BACKUP, backup: true }] });
  const a = byAddress(A);
  const b = byAddress(B);
  let result = pool.pick('127.0.0.1', new Set([a]));
  t.equal(result.server?.label, B, 'one primary tried: the other primary');
  pool.release(result.server!);
  result = pool.pick('127.0.0.1', new Set([a, b]));
  t.equal(result.server?.label, BACKUP, 'every ready primary tried: the backup rather than closing the client');
  pool.release(result.server!);
  pool.setHealth(b, false, 'test');
  result = pool.pick('127.0.0.1', new Set([a]));
  t.equal(result.server?.label, BACKUP, 'the only ready primary tried: the backup');
  pool.release(result.server!);
  result = pool.pick('127.0.0.1', new Set([a, byAddress(BACKUP)]));
  t.same(result, { failure: 'no-server-available' }, 'everything ready already tried: a failure value, not a throw');
});

t.test('a ready but full primary does not open the backups', async (t) => {
  const { pool, byAddress } = makePool({ servers: [{ address: A, maxConnections: 1 }, { address: BACKUP, backup: true }] });
  const first = pool.pick('127.0.0.1');
  t.equal(first.server?.label, A);
  t.same(pool.pick('127.0.0.1'), { failure: 'no-server-available' }, 'backups are for when no primary is ready, not for overflow');
  pool.release(first.server!);
  t.equal(byAddress(A).active, 0, 'release undoes the pick');
  t.equal(byAddress(A).total, 1);
});

t.test('pick failures: no-server-ready when all are down, no-server-available when all are full or weight 0', async (t) => {
  const down = makePool({ servers: [{ address: A }, { address: B }] });
  for (const server of down.pool.servers) down.pool.setHealth(server, false, 'test');
  t.same(down.pool.pick('127.0.0.1'), { failure: 'no-server-ready' });

  const full = makePool({ servers: [{ address: A, maxConnections: 1 }, { address: B, weight: 0 }] });
  t.equal(full.pool.pick('127.0.0.1').server?.label, A);
  t.same(full.pool.pick('127.0.0.1'), { failure: 'no-server-available' });
});

t.test('passive check: `failures` consecutive failed connects mark a server down, logged once', async (t) => {
  const { pool, byAddress, flips, changes } = makePool({
    servers: [{ address: A }, { address: B }],
    passiveCheck: { failures: 3, cooldown: '10s' },
  });
  const a = byAddress(A);
  pool.recordConnect(a, false, 'connect ECONNREFUSED');
  pool.recordConnect(a, false, 'connect ECONNREFUSED');
  pool.recordConnect(a, true, 'ok');
  pool.recordConnect(a, false, 'connect ECONNREFUSED');
  pool.recordConnect(a, false, 'connect ECONNREFUSED');
  t.equal(a.healthy, true, 'a success resets the count: 2 + 2 failures never reach 3');
  pool.recordConnect(a, false, 'connect timeout');
  t.equal(a.healthy, false, 'the third consecutive failure marks it down');
  for (let i = 0; i < 5; i++) pool.recordConnect(a, false, 'connect ECONNREFUSED');
  t.same(flips(), ['server 10.0.0.11:5432 up -> down: connect timeout after 3 failed connects from traffic'], 'logged once, with the last failure as reason');
  t.equal(changes.length, 1, 'subscribers told once');
  t.same(tally(pool, 6), { [B]: 6 }, 'no new traffic to it');
});

t.test('passive check: failures 0 disables it', async (t) => {
  const { pool, byAddress, flips } = makePool({ servers: [{ address: A }, { address: B }], passiveCheck: { failures: 0 } });
  for (let i = 0; i < 50; i++) pool.recordConnect(byAddress(A), false, 'connect ECONNREFUSED');
  t.equal(byAddress(A).healthy, true);
  t.same(flips(), []);
});

t.test('passive check without an active check: cooldown brings the server back, one failure downs it again', async (t) => {
  const { pool, byAddress, flips, timers } = makePool({ servers: [{ address: A }, { address: B }], passiveCheck: { failures: 2, cooldown: '7s' } });
  const a = byAddress(A);
  pool.recordConnect(a, false, 'connect ECONNREFUSED');
  t.equal(timers.pending().length, 0, 'no timer before the server is marked down');
  pool.recordConnect(a, false, 'connect ECONNREFUSED');
  t.equal(a.healthy, false);
  t.same(timers.pending().map((timer) => timer.ms), [7000], 'one cooldown timer of `cooldown`');
  timers.fireAll();
  t.equal(a.healthy, true, 'back after the cooldown');
  t.same(tally(pool, 4), { [A]: 2, [B]: 2 }, 'and taking traffic');
  pool.recordConnect(a, false, 'connect ECONNREFUSED');
  t.equal(a.healthy, false, 'a single failure right after the cooldown marks it down again');
  t.same(timers.pending().map((timer) => timer.ms), [7000], 'with a new cooldown');
  timers.fireAll();
  pool.recordConnect(a, true, 'ok');
  pool.recordConnect(a, false, 'connect ECONNREFUSED');
  t.equal(a.healthy, true, 'a success after the cooldown restores the full failure budget');
  t.same(flips(), [
    'server 10.0.0.11:5432 up -> down: connect ECONNREFUSED after 2 failed connects from traffic',
    'server 10.0.0.11:5432 down -> up: passive cooldown elapsed, retrying with traffic',
    'server 10.0.0.11:5432 up -> down: connect ECONNREFUSED after 2 failed connects from traffic',
    'server 10.0.0.11:5432 down -> up: passive cooldown elapsed, retrying with traffic',
  ]);
});

t.test('close() cancels a pending cooldown', async (t) => {
  const { pool, byAddress, timers } = makePool({ servers: [{ address: A }, { address: B }], passiveCheck: { failures: 1 } });
  pool.recordConnect(byAddress(A), false, 'connect ECONNREFUSED');
  t.equal(timers.pending().length, 1);
  pool.close();
  t.equal(timers.pending().length, 0);
});

t.test('passive check with an active check: no cooldown; `rise` passing probes bring it back', async (t) => {
  const { pool, byAddress, flips, timers } = makePool({
    servers: [{ address: A }, { address: B }],
    healthCheck: { interval: '1s', timeout: '500ms', rise: 2, fall: 3 },
    passiveCheck: { failures: 2 },
  });
  const a = byAddress(A);
  pool.recordProbe(a, true, 'ok');
  pool.recordConnect(a, false, 'connect ECONNREFUSED');
  pool.recordConnect(a, false, 'connect ECONNREFUSED');
  t.equal(a.healthy, false, 'traffic marked it down before the probes would');
  t.equal(timers.pending().length, 0, 'the active check decides when it returns: no cooldown timer');
  pool.recordProbe(a, true, 'ok');
  t.equal(a.healthy, false, 'one pass is not enough (rise 2)');
  pool.recordProbe(a, true, 'ok');
  t.equal(a.healthy, true);
  t.same(flips(), [
    'server 10.0.0.11:5432 up -> down: connect ECONNREFUSED after 2 failed connects from traffic',
    'server 10.0.0.11:5432 down -> up: ok after 2 checks',
  ]);
  pool.recordConnect(a, false, 'connect ECONNREFUSED');
  t.equal(a.healthy, true, 'coming back up reset the failure count');
});

t.test('active results: the first decides at once, then rise/fall; each flip logged once in the documented format', async (t) => {
  const { pool, byAddress, flips, changes, lines } = makePool({
    servers: [{ address: A }, { address: B }],
    healthCheck: { interval: '1s', timeout: '500ms', rise: 2, fall: 3 },
  });
  const a = byAddress(A);
  const b = byAddress(B);
  pool.recordProbe(b, false, 'connect ECONNREFUSED');
  t.equal(b.healthy, false, 'a first failure marks an unconfirmed server down at once');
  pool.recordProbe(a, true, 'ok');
  pool.recordProbe(a, false, 'connect ECONNREFUSED');
  pool.recordProbe(a, false, 'connect ECONNREFUSED');
  t.equal(a.healthy, true);
  pool.recordProbe(a, false, 'connect ECONNREFUSED');
  t.equal(a.healthy, false);
  pool.recordProbe(a, false, 'connect ECONNREFUSED');
  pool.recordProbe(a, true, 'ok');
  pool.recordProbe(a, true, 'ok');
  t.same(flips(), [
    'server 10.0.0.12:5432 up -> down: connect ECONNREFUSED after 1 check',
    'server 10.0.0.11:5432 up -> down: connect ECONNREFUSED after 3 checks',
    'server 10.0.0.11:5432 down -> up: ok after 2 checks',
  ]);
  const down = lines().find((line) => line.msg === 'server 10.0.0.11:5432 up -> down: connect ECONNREFUSED after 3 checks')!;
  t.match(down, { level: 'warn', module: 'pool', pool: 'pg', server: A, from: 'up', to: 'down', reason: 'connect ECONNREFUSED after 3 checks' }, 'structured fields');
  const up = lines().find((line) => line.msg === 'server 10.0.0.11:5432 down -> up: ok after 2 checks')!;
  t.equal(up.level, 'info', 'coming up is info, going down a warning');
  t.same(
    changes.map((change) => [change.server.label, change.healthy, change.reason, change.pool === pool]),
    [
      [B, false, 'connect ECONNREFUSED after 1 check', true],
      [A, false, 'connect ECONNREFUSED after 3 checks', true],
      [A, true, 'ok after 2 checks', true],
    ],
    'subscribers get every flip, once, with the reason',
  );
});

t.test('setHealth is idempotent: a call that changes nothing logs and tells nothing', async (t) => {
  const { pool, byAddress, flips, changes } = makePool({ servers: [{ address: A }, { address: B }] });
  pool.setHealth(byAddress(A), true, 'already up');
  pool.setHealth(byAddress(A), false, 'admin');
  pool.setHealth(byAddress(A), false, 'admin again');
  t.same(flips(), ['server 10.0.0.11:5432 up -> down: admin']);
  t.equal(changes.length, 1);
});

t.test('unsubscribe stops notifications', async (t) => {
  const { pool, byAddress } = makePool({ servers: [{ address: A }, { address: B }] });
  const seen: boolean[] = [];
  const unsubscribe = pool.onHealthChange((change) => seen.push(change.healthy));
  pool.setHealth(byAddress(A), false, 'test');
  unsubscribe();
  unsubscribe();
  pool.setHealth(byAddress(A), true, 'test');
  t.same(seen, [false]);
});

t.test('pool-down and pool-recovered are logged once per transition', async (t) => {
  const { pool, byAddress, events } = makePool({ servers: [{ address: A }, { address: B }, { address: BACKUP, backup: true }] });
  pool.setHealth(byAddress(A), false, 'test');
  pool.setHealth(byAddress(B), false, 'test');
  t.same(events(), [], 'a ready backup keeps the pool up');
  pool.setHealth(byAddress(BACKUP), false, 'test');
  t.match(events(), [{ event: 'pool-down', level: 'error', msg: 'pool pg has no ready server: new connections will be refused' }]);
  t.equal(pool.hasReadyServer(), false);
  pool.setHealth(byAddress(BACKUP), true, 'test');
  pool.setHealth(byAddress(A), true, 'test');
  pool.setHealth(byAddress(B), true, 'test');
  t.match(events(), [{ event: 'pool-down' }, { event: 'pool-recovered', level: 'info', msg: 'pool pg has a ready server again' }], 'recovered once, not per server');
  pool.setHealth(byAddress(A), false, 'test');
  pool.setHealth(byAddress(B), false, 'test');
  pool.setHealth(byAddress(BACKUP), false, 'test');
  t.equal(events().length, 3, 'a second outage is logged again');
});

t.test('a flapping server never reshuffles the other clients (ip-hash; selectors are not rebuilt)', async (t) => {
  const servers = [A, B, '10.0.0.13:5432', '10.0.0.14:5432'].map((address) => ({ address }));
  const { pool, byAddress } = makePool({ algorithm: 'ip-hash', servers });
  const clients = Array.from({ length: 400 }, (_, i) => `127.0.${i >> 8}.${i & 255}`);
  const mapping = () =>
    clients.map((ip) => {
      const result = pool.pick(ip);
      pool.release(result.server!);
      return result.server!.label;
    });
  const before = mapping();
  t.ok(before.filter((label) => label === B).length > 40, 'the flapping server had its share of clients');
  const flapper = byAddress(B);
  for (let round = 0; round < 3; round++) {
    pool.setHealth(flapper, false, 'flap');
    const during = mapping();
    clients.forEach((ip, i) => {
      if (before[i] !== B && during[i] !== before[i]) t.fail(`client ${ip} moved from ${before[i]} to ${during[i]} while ${B} was down`);
    });
    t.ok(
      during.every((label) => label !== B),
      `round ${round}: nothing goes to the down server`,
    );
    pool.setHealth(flapper, true, 'flap');
    t.same(mapping(), before, `round ${round}: after it returns, every client maps exactly as before`);
  }
});

t.test('round-robin skips a down server and takes it back without restarting the cycle', async (t) => {
  const { pool, byAddress } = makePool({ servers: [{ address: A, weight: 2 }, { address: B }, { address: '10.0.0.13:5432' }] });
  t.same(tally(pool, 8), { [A]: 4, [B]: 2, '10.0.0.13:5432': 2 });
  pool.setHealth(byAddress(A), false, 'test');
  t.same(tally(pool, 8), { [B]: 4, '10.0.0.13:5432': 4 });
  pool.setHealth(byAddress(A), true, 'test');
  t.same(tally(pool, 8), { [A]: 4, [B]: 2, '10.0.0.13:5432': 2 }, 'weights honoured again at once');
});
