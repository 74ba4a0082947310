import t from 'tap';
import { SessionTable, mustMigrate, repliesComplete, sweepIntervalFor, type TableEntry } from '../../src/l4/udp-sessions.ts';
import { DropLog } from '../../src/l4/udp-drops.ts';
import { captureLogger } from '../helpers/log.ts';

/** A fake clock the tests move by hand. */
function clock(start = 1_000) {
  let time = start;
  return { now: () => time, advance: (ms: number) => (time += ms) };
}

function entry(key: string): TableEntry {
  return { key, lastActivity: 0 };
}

function table(options: { sessionTimeout?: number; maxSessions?: number } = {}) {
  const c = clock();
  const sessions = new SessionTable<TableEntry>({ sessionTimeout: options.sessionTimeout ?? 30_000, maxSessions: options.maxSessions ?? 100, now: c.now });
  const expired: string[] = [];
  const sweep = () => sessions.sweep((session) => expired.push(session.key));
  return { sessions, clock: c, expired, sweep };
}

t.test('sweep interval: half the timeout, at most 1 s, at least 10 ms', async (t) => {
  const cases = [
    { timeout: 30_000, expect: 1_000 },
    { timeout: 2_000, expect: 1_000 },
    { timeout: 1_000, expect: 500 },
    { timeout: 300, expect: 150 },
    { timeout: 5, expect: 10 },
  ];
  for (const { timeout, expect } of cases) t.equal(sweepIntervalFor(timeout), expect, `sessionTimeout ${timeout}ms`);
});

t.test('a session idle for sessionTimeout is removed by the next sweep, not before', async (t) => {
  const { sessions, clock, expired, sweep } = table({ sessionTimeout: 30_000 });
  const a = entry('127.0.0.1:5000');
  t.equal(sessions.add(a), true);
  t.equal(a.lastActivity, 1_000, 'add stamps the activity time');
  clock.advance(29_999);
  t.equal(sweep(), 0);
  t.equal(sessions.size, 1);
  clock.advance(1);
  t.equal(sweep(), 1, 'exactly sessionTimeout idle: expired');
  t.same(expired, ['127.0.0.1:5000']);
  t.equal(sessions.size, 0);
  t.equal(sessions.get(a.key), undefined);
});

t.test('touch extends the session; only idle sessions expire', async (t) => {
  const { sessions, clock, expired, sweep } = table({ sessionTimeout: 1_000 });
  const busy = entry('127.0.0.1:1');
  const quiet = entry('127.0.0.1:2');
  sessions.add(busy);
  sessions.add(quiet);
  for (let i = 0; i < 5; i++) {
    clock.advance(600);
    sessions.touch(busy);
    sweep();
  }
  t.same(expired, ['127.0.0.1:2'], 'the quiet session expired at its first sweep after 1 s');
  t.equal(sessions.get(busy.key), busy, 'the busy one lives on, 3 s after it started');
  clock.advance(1_000);
  sweep();
  t.same(expired, ['127.0.0.1:2', '127.0.0.1:1']);
});

t.test('the expired callback runs after removal, so it may start a new session for the same key', async (t) => {
  const c = clock();
  const sessions = new SessionTable<TableEntry>({ sessionTimeout: 10, maxSessions: 1, now: c.now });
  sessions.add(entry('k'));
  c.advance(10);
  const replacement = entry('k');
  sessions.sweep(() => t.equal(sessions.add(replacement), true, 'room and key are free inside the callback'));
  t.equal(sessions.get('k'), replacement);
});

t.test('the live callback sees every session that stays, with the sweep time', async (t) => {
  const { sessions, clock } = table({ sessionTimeout: 1_000 });
  sessions.add(entry('a'));
  clock.advance(500);
  sessions.add(entry('b'));
  clock.advance(600);
  const live: Array<[string, number]> = [];
  sessions.sweep(
    () => {},
    (session, now) => live.push([session.key, now]),
  );
  t.same(live, [['b', 2_100]], 'a expired, b is live');
});

t.test('a sweep with a budget expires in chunks and resumes where it stopped', async (t) => {
  const { sessions, clock, expired } = table({ sessionTimeout: 1_000, maxSessions: 10_000 });
  for (let i = 0; i < 10; i++) sessions.add(entry(`old${i}`));
  clock.advance(500);
  sessions.add(entry('young'));
  for (let i = 10; i < 25; i++) sessions.add(entry(`old${i}`));
  for (let i = 10; i < 25; i++) sessions.get(`old${i}`)!.lastActivity = 0;
  clock.advance(600);
  const visitedLive: string[] = [];
  const chunk = () => sessions.sweep((s) => expired.push(s.key), (s) => visitedLive.push(s.key), 10);
  t.equal(chunk(), 10);
  t.equal(sessions.sweeping, true, 'paused on its budget');
  sessions.add(entry('arrived-mid-pass'));
  t.equal(chunk(), 10);
  t.equal(sessions.sweeping, true);
  t.equal(chunk(), 5);
  t.equal(sessions.sweeping, false, 'pass complete');
  t.equal(expired.length, 25, 'every idle session expired exactly once');
  t.equal(new Set(expired).size, 25);
  t.same(visitedLive, ['young', 'arrived-mid-pass'], 'live sessions seen once each');
  t.same([...sessions.drain()].map((s) => s.key).sort(), ['arrived-mid-pass', 'young']);
});

t.test('maxSessions: add refuses when full; room returns when a session leaves', async (t) => {
  const { sessions, clock, sweep } = table({ maxSessions: 3, sessionTimeout: 1_000 });
  for (let i = 0; i < 3; i++) t.equal(sessions.add(entry(`k${i}`)), true);
  t.equal(sessions.full, true);
  t.equal(sessions.add(entry('k3')), false, 'refused when full');
  t.equal(sessions.size, 3);
  t.equal(sessions.get('k3'), undefined);
  t.equal(sessions.delete(sessions.get('k0')!), true);
  t.equal(sessions.full, false);
  t.equal(sessions.add(entry('k3')), true);
  clock.advance(1_000);
  t.equal(sweep(), 3, 'a sweep frees everything idle');
  t.equal(sessions.full, false);
  t.equal(sessions.size, 0);
});

t.test('a key already present is refused, and delete only removes the very session', async (t) => {
  const { sessions } = table();
  const first = entry('same');
  const stale = entry('same');
  t.equal(sessions.add(first), true);
  t.equal(sessions.add(stale), false);
  t.equal(sessions.delete(stale), false, 'a stale reference cannot remove the live session');
  t.equal(sessions.get('same'), first);
  t.equal(sessions.delete(first), true);
  t.equal(sessions.delete(first), false, 'deleting twice is harmless');
});

t.test('drain removes and returns every session', async (t) => {
  const { sessions } = table();
  sessions.add(entry('a'));
  sessions.add(entry('b'));
  t.same(
    sessions.drain().map((s) => s.key),
    ['a', 'b'],
  );
  t.equal(sessions.size, 0);
});

t.test('responses: N replies per datagram from the downstream', async (t) => {
  const cases = [
    { responses: undefined, datagrams: 1, replies: 100, complete: false, why: 'unset: never ends by replies' },
    { responses: 1, datagrams: 1, replies: 0, complete: false, why: 'waiting for the reply' },
    { responses: 1, datagrams: 1, replies: 1, complete: true, why: 'DNS: one query, one answer' },
    { responses: 1, datagrams: 3, replies: 2, complete: false, why: 'pipelined queries: one still outstanding' },
    { responses: 1, datagrams: 3, replies: 3, complete: true, why: 'pipelined queries all answered' },
    { responses: 2, datagrams: 1, replies: 1, complete: false, why: 'two replies expected' },
    { responses: 2, datagrams: 1, replies: 2, complete: true, why: 'both replies arrived' },
    { responses: 3, datagrams: 2, replies: 5, complete: false, why: '6 expected' },
  ];
  for (const c of cases) t.equal(repliesComplete(c.responses, c.datagrams, c.replies), c.complete, c.why);
});

t.test('migration: a session moves only when its server is no longer ready', async (t) => {
  t.equal(mustMigrate({ ready: true }), false);
  t.equal(mustMigrate({ ready: false }), true);
});

t.test('drop log: first drop logged at once, then at most one line per interval with counts', async (t) => {
  const c = clock();
  const { logger, lines } = captureLogger('warn');
  const drops = new DropLog(logger, c.now, 1_000);
  drops.count('sessions-full');
  t.equal(lines().length, 1, 'first drop logged at once');
  for (let i = 0; i < 500; i++) drops.count('sessions-full');
  for (let i = 0; i < 7; i++) drops.count('no-server-ready');
  t.equal(lines().length, 1, 'a flood inside the interval writes nothing more');
  drops.flush();
  t.equal(lines().length, 1, 'flush respects the interval');
  c.advance(1_000);
  drops.flush();
  const all = lines();
  t.equal(all.length, 2);
  t.equal(all[1]!.level, 'warn');
  t.equal(all[1]!.dropped, 507);
  t.same(all[1]!.reasons, { 'sessions-full': 500, 'no-server-ready': 7 });
  t.equal(drops.total, 508);
  t.equal(drops.totals['sessions-full'], 501);
  c.advance(5_000);
  drops.flush();
  t.equal(lines().length, 2, 'nothing pending: nothing written');
});

t.test('drop log at level error writes nothing but still counts', async (t) => {
  const c = clock();
  const { logger, lines } = captureLogger('error');
  const drops = new DropLog(logger, c.now);
  drops.count('no-server-ready');
  c.advance(2_000);
  drops.count('no-server-ready');
  t.equal(lines().length, 0);
  t.equal(drops.totals['no-server-ready'], 2);
});
