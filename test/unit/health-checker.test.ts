import t from 'tap';
import { poolSchema, type PoolConfig } from '../../src/config/schema.ts';
import { HealthChecker, type CheckedPool, type Clock, type Probe, type ProbeResult } from '../../src/health/checker.ts';
import { createMatcher, decodeEscapes, describeReply, probeBytes } from '../../src/health/probe-payload.ts';
import { UpstreamServer } from '../../src/pool/server.ts';
import { Pool } from '../../src/pool/pool.ts';
import { captureLogger } from '../helpers/log.ts';

/** Lets promise callbacks (and anything queued behind them) run. */
const flush = () => new Promise<void>((resolve) => setImmediate(resolve));

/** A deterministic clock: timers fire only inside advance(), in time order. */
class FakeClock implements Clock {
  time = 0;
  private nextId = 1;
  readonly timers = new Map<number, { at: number; fn: () => void }>();

  now(): number {
    return this.time;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.nextId++;
    this.timers.set(id, { at: this.time + ms, fn });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number);
  }
  /** Moves time forward by `ms`, firing due timers one by one with promise jobs run between. */
  async advance(ms: number): Promise<void> {
    const end = this.time + ms;
    for (;;) {
      await flush();
      let dueId = -1;
      let dueAt = Number.POSITIVE_INFINITY;
      // Map iteration is insertion order, so equal deadlines fire in the order they were set.
      for (const [id, timer] of this.timers) {
        if (timer.at <= end && timer.at < dueAt) {
          dueId = id;
          dueAt = timer.at;
        }
      }
      if (dueId < 0) break;
      const timer = this.timers.get(dueId)!;
      this.timers.delete(dueId);
      this.time = timer.at;
      timer.fn();
    }
    this.time = end;
    await flush();
  }
}

type Behaviour =
  /** Resolves after `after` ms (of fake time) with this result; resolves at once on abort. */
  | { after: number; result: ProbeResult }
  /** Never resolves by itself; resolves when aborted (like a connect that hangs). */
  | { hang: true }
  /** Ignores the abort (a buggy probe); resolves only when the test calls release(). */
  | { stuck: true }
  /** Rejects (a buggy probe). */
  | { reject: Error };

interface ProbeCall {
  server: string;
  at: number;
  signal: AbortSignal;
  proxyHeader: Buffer | undefined;
  port: number | undefined;
}

/** A probe driven by the fake clock. Tracks every call and the peak concurrency per server. */
function fakeProbe(clock: FakeClock, behave: (server: UpstreamServer, call: number) => Behaviour) {
  const calls: ProbeCall[] = [];
  const inFlight = new Map<string, number>();
  let peak = 0;
  const stuck: Array<() => void> = [];
  const probe: Probe = (server, check, options) => {
    const call = calls.filter((c) => c.server === server.label).length;
    calls.push({ server: server.label, at: clock.now(), signal: options.signal, proxyHeader: options.proxyHeader, port: check.port });
    const now = (inFlight.get(server.label) ?? 0) + 1;
    inFlight.set(server.label, now);
    peak = Math.max(peak, now);
    const done = () => inFlight.set(server.label, inFlight.get(server.label)! - 1);
    const behaviour = behave(server, call);
    if ('reject' in behaviour) {
      done();
      return Promise.reject(behaviour.reject);
    }
    return new Promise<ProbeResult>((resolve) => {
      const finish = (result: ProbeResult) => {
        done();
        resolve(result);
      };
      if ('stuck' in behaviour) {
        stuck.push(() => finish({ pass: true, detail: 'ok (late)' }));
        return;
      }
      let timer: unknown;
      if ('after' in behaviour) timer = clock.setTimeout(() => finish(behaviour.result), behaviour.after);
      options.signal.addEventListener('abort', () => {
        if (timer !== undefined) clock.clearTimeout(timer);
        finish({ pass: false, detail: 'connecting' });
      });
    });
  };
  return {
    probe,
    calls,
    peak: () => peak,
    releaseStuck: () => {
      for (const release of stuck.splice(0)) release();
    },
  };
}

const PASS: ProbeResult = { pass: true, detail: 'ok' };
const REFUSED: ProbeResult = { pass: false, detail: 'connect ECONNREFUSED' };

function poolConfig(overrides: Record<string, unknown> = {}, servers = 2): PoolConfig {
  return poolSchema.parse({
    servers: Array.from({ length: servers }, (_, i) => ({ address: `10.0.0.${11 + i}:5432` })),
    healthCheck: { interval: '1s', timeout: '200ms', rise: 2, fall: 3 },
    ...overrides,
  });
}

interface Recorded {
  at: number;
  server: string;
  pass: boolean;
  detail: string;
}

/** A pool stand-in that records what the checker reports. */
function recordingPool(config: PoolConfig, clock: FakeClock): CheckedPool & { recorded: Recorded[] } {
  const recorded: Recorded[] = [];
  return {
    name: 'pg',
    config,
    servers: config.servers.map((server, index) => new UpstreamServer(server, index)),
    recordProbe(server: UpstreamServer, pass: boolean, detail: string) {
      recorded.push({ at: clock.now(), server: server.label, pass, detail });
    },
    recorded,
  };
}

function setup(options: { config?: PoolConfig; behave?: (server: UpstreamServer, call: number) => Behaviour; random?: () => number } = {}) {
  const clock = new FakeClock();
  const pool = recordingPool(options.config ?? poolConfig(), clock);
  const fake = fakeProbe(clock, options.behave ?? (() => ({ after: 10, result: PASS })));
  const { logger, lines } = captureLogger('debug');
  const checker = new HealthChecker(pool, { logger, clock, probe: fake.probe, random: options.random ?? (() => 0.5) });
  return { clock, pool, fake, checker, lines };
}

const startsOf = (calls: ProbeCall[], server: string) => calls.filter((c) => c.server === server).map((c) => c.at);

t.test('nothing happens before start(); first probes run right at start, spread over interval/10', async (t) => {
  const { clock, fake, checker } = setup({ config: poolConfig({}, 4) });
  await clock.advance(5000);
  t.equal(fake.calls.length, 0, 'no probe before start()');
  checker.start();
  await clock.advance(99);
  t.same(
    fake.calls.map((c) => [c.server, c.at - 5000]),
    [
      ['10.0.0.11:5432', 0],
      ['10.0.0.12:5432', 25],
      ['10.0.0.13:5432', 50],
      ['10.0.0.14:5432', 75],
    ],
    'four servers, interval 1s: first probes at 0, 25, 50, 75 ms',
  );
  checker.stop();
});

t.test('probes every backup too', async (t) => {
  const config = poolSchema.parse({
    servers: [{ address: '10.0.0.11:5432' }, { address: '10.0.0.12:5432', backup: true }],
    healthCheck: { interval: '1s', timeout: '200ms' },
  });
  const { clock, fake, checker } = setup({ config });
  checker.start();
  await clock.advance(2500);
  t.same(startsOf(fake.calls, '10.0.0.12:5432').length, 3, 'the backup is probed each interval');
  checker.stop();
});

t.test('interval is measured start to start, with jitter of up to ±10% from the injected random', async (t) => {
  const cases = [
    { random: 0.5, expect: [0, 1000, 2000, 3000], what: 'random 0.5: no jitter' },
    { random: 0, expect: [0, 900, 1800, 2700], what: 'random 0: -10%' },
    { random: 0.9999, expect: [0, 1100, 2200, 3300], what: 'random ~1: +10%' },
  ];
  for (const { random, expect, what } of cases) {
    const { clock, fake, checker } = setup({ config: poolConfig({}, 1), random: () => random, behave: () => ({ after: 150, result: PASS }) });
    checker.start();
    await clock.advance(3400);
    t.same(startsOf(fake.calls, '10.0.0.11:5432'), expect, what);
    checker.stop();
  }
  const sequence = [0, 1, 0.25];
  let next = 0;
  const { clock, fake, checker } = setup({ config: poolConfig({}, 1), random: () => sequence[next++ % sequence.length]!, behave: () => ({ after: 50, result: PASS }) });
  checker.start();
  await clock.advance(3000);
  t.same(startsOf(fake.calls, '10.0.0.11:5432'), [0, 900, 2000, 2950], 'each interval draws its own jitter');
  checker.stop();
});

t.test('each result goes to pool.recordProbe with the probe detail', async (t) => {
  const { clock, pool, checker } = setup({
    config: poolConfig({}, 2),
    behave: (server, call) => ({ after: 20, result: server.label === '10.0.0.12:5432' && call >= 1 ? REFUSED : PASS }),
  });
  checker.start();
  await clock.advance(1500);
  t.same(pool.recorded, [
    { at: 20, server: '10.0.0.11:5432', pass: true, detail: 'ok' },
    { at: 70, server: '10.0.0.12:5432', pass: true, detail: 'ok' },
    { at: 1020, server: '10.0.0.11:5432', pass: true, detail: 'ok' },
    { at: 1070, server: '10.0.0.12:5432', pass: false, detail: 'connect ECONNREFUSED' },
  ]);
  checker.stop();
});

t.test('a probe that outlives timeout is aborted and recorded as a timeout, with what it waited for', async (t) => {
  const { clock, pool, fake, checker } = setup({ config: poolConfig({}, 1), behave: (_server, call) => (call === 0 ? { hang: true } : { after: 10, result: PASS }) });
  checker.start();
  await clock.advance(199);
  t.equal(pool.recorded.length, 0, 'nothing recorded before the timeout');
  t.equal(fake.calls[0]!.signal.aborted, false);
  await clock.advance(1);
  t.equal(fake.calls[0]!.signal.aborted, true, 'the probe was aborted at the timeout');
  t.same(pool.recorded, [{ at: 200, server: '10.0.0.11:5432', pass: false, detail: 'timeout after 200ms (connecting)' }]);
  await clock.advance(1000);
  t.same(startsOf(fake.calls, '10.0.0.11:5432'), [0, 1000], 'the next probe still starts one interval after the first started');
  t.same(pool.recorded[1], { at: 1010, server: '10.0.0.11:5432', pass: true, detail: 'ok' });
  checker.stop();
});

t.test('a result arriving exactly at the timeout, or after it, counts as a timeout', async (t) => {
  const { clock, pool, checker } = setup({ config: poolConfig({}, 1), behave: () => ({ after: 200, result: PASS }) });
  checker.start();
  await clock.advance(500);
  t.equal(pool.recorded.length, 1, 'one result per probe');
  t.equal(pool.recorded[0]!.pass, false, 'a probe that took the whole timeout fails');
  t.match(pool.recorded[0]!.detail, /^timeout after 200ms/);
  checker.stop();
});

t.test('a probe that ignores its abort: the timeout is recorded anyway and probes never overlap', async (t) => {
  const { clock, pool, fake, checker, lines } = setup({ config: poolConfig({}, 1), behave: (_server, call) => (call === 0 ? { stuck: true } : { after: 10, result: PASS }) });
  checker.start();
  await clock.advance(200);
  t.same(pool.recorded, [{ at: 200, server: '10.0.0.11:5432', pass: false, detail: 'timeout after 200ms' }], 'fallback records the plain timeout');
  await clock.advance(2000);
  t.equal(fake.calls.length, 1, 'no new probe while the stuck one is still running');
  t.ok(
    lines().some((line) => line.level === 'warn' && String(line.msg).includes('still running after its timeout')),
    'the skipped round is logged',
  );
  fake.releaseStuck();
  await flush();
  t.equal(pool.recorded.length, 1, 'the late result of a timed-out probe is ignored');
  await clock.advance(1200);
  t.ok(fake.calls.length >= 2, 'probing resumes once the stuck probe has settled');
  t.equal(fake.peak(), 1, 'never two probes of one server in flight');
  t.equal(pool.recorded.at(-1)!.pass, true);
  checker.stop();
});

t.test('never two probes of the same server in flight, whatever the durations and jitter', async (t) => {
  let seed = 7;
  const random = () => {
    // A small LCG: deterministic, but jitter varies every interval.
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
  const config = poolConfig({ healthCheck: { interval: '1s', timeout: '1s' } }, 5);
  const { clock, pool, fake, checker } = setup({
    config,
    random,
    behave: (_server, call) => (call % 3 === 0 ? { hang: true } : { after: 600 + (call % 5) * 100, result: PASS }),
  });
  checker.start();
  await clock.advance(60_000);
  t.equal(fake.peak(), 1, 'peak in-flight probes per server');
  for (const server of pool.servers) {
    const starts = startsOf(fake.calls, server.label);
    t.ok(starts.length >= 50 && starts.length <= 70, `${server.label}: about one probe per second (${starts.length})`);
  }
  checker.stop();
});

t.test('a probe that rejects or throws is a failure, not a crash', async (t) => {
  const { clock, pool, checker } = setup({ config: poolConfig({}, 1), behave: () => ({ reject: new Error('boom') }) });
  checker.start();
  await clock.advance(1500);
  t.same(
    pool.recorded.map((r) => [r.pass, r.detail]),
    [
      [false, 'probe error: boom'],
      [false, 'probe error: boom'],
    ],
  );
  checker.stop();

  const clock2 = new FakeClock();
  const pool2 = recordingPool(poolConfig({}, 1), clock2);
  const throwing: Probe = () => {
    throw new Error('sync boom');
  };
  const checker2 = new HealthChecker(pool2, { logger: captureLogger().logger, clock: clock2, probe: throwing, random: () => 0.5 });
  checker2.start();
  await clock2.advance(10);
  t.same(pool2.recorded.map((r) => r.detail), ['probe error: sync boom']);
  checker2.stop();
});

t.test('stop() aborts probes in flight, cancels every timer, and records nothing more', async (t) => {
  const { clock, pool, fake, checker } = setup({ config: poolConfig({}, 3), behave: () => ({ after: 100, result: PASS }) });
  checker.start();
  await clock.advance(70);
  const running = fake.calls.filter((c) => !c.signal.aborted);
  t.equal(running.length, 3, 'three probes in flight');
  checker.stop();
  t.ok(
    fake.calls.every((c) => c.signal.aborted),
    'every in-flight probe was aborted',
  );
  await flush();
  t.equal(clock.timers.size, 0, 'no timer left behind');
  await clock.advance(10_000);
  t.equal(fake.calls.length, 3, 'no probe after stop');
  t.equal(pool.recorded.length, 0, 'aborted probes are not recorded');
  checker.stop();
  checker.start();
  await clock.advance(10_000);
  t.equal(fake.calls.length, 3, 'stop is final: start() after stop() does nothing');
});

t.test('start() twice does not double the probes', async (t) => {
  const { clock, fake, checker } = setup({ config: poolConfig({}, 1) });
  checker.start();
  checker.start();
  await clock.advance(2500);
  t.same(startsOf(fake.calls, '10.0.0.11:5432'), [0, 1000, 2000]);
  checker.stop();
});

t.test('the probe gets the check (port) and, when the pool sends PROXY, a LOCAL header', async (t) => {
  const plain = setup({ config: poolConfig({ healthCheck: { interval: '1s', timeout: '200ms', port: 8008 } }, 1) });
  plain.checker.start();
  await plain.clock.advance(10);
  t.equal(plain.fake.calls[0]!.port, 8008);
  t.equal(plain.fake.calls[0]!.proxyHeader, undefined, 'no header when the pool sends none');
  plain.checker.stop();

  const v1 = setup({ config: poolConfig({ sendProxyProtocol: 'v1' }, 1) });
  v1.checker.start();
  await v1.clock.advance(10);
  t.match(v1.fake.calls[0]!.proxyHeader?.toString('latin1'), /^PROXY UNKNOWN\r\n$/, 'v1 LOCAL header');
  v1.checker.stop();

  const v2 = setup({ config: poolConfig({ sendProxyProtocol: 'v2' }, 1) });
  v2.checker.start();
  await v2.clock.advance(10);
  const header = v2.fake.calls[0]!.proxyHeader!;
  t.same(header.subarray(0, 12), Buffer.from('0d0a0d0a000d0a515549540a', 'hex'), 'v2 signature');
  t.equal(header[12], 0x20, 'v2 version 2, command LOCAL');
  v2.checker.stop();
});

t.test('the constructor rejects a pool without healthCheck and an invalid send', async (t) => {
  const clock = new FakeClock();
  const { logger } = captureLogger();
  t.throws(() => new HealthChecker(recordingPool(poolSchema.parse({ servers: [{ address: '10.0.0.11:1' }] }), clock), { logger }), { code: 'SWY_CONFIG_INVALID' });
  t.throws(
    () => new HealthChecker(recordingPool(poolConfig({ healthCheck: { send: 'PING\\q' } }), clock), { logger }),
    { code: 'SWY_CONFIG_INVALID', message: /unknown escape "\\q"/ },
  );
});

t.test('with a real Pool: fall failures flip the server once, logged with the reason', async (t) => {
  const clock = new FakeClock();
  const { logger, lines } = captureLogger('info');
  const pool = new Pool('pg', poolConfig({}, 2), { logger });
  const probe: Probe = async (server, _check, _options) => (server.label === '10.0.0.12:5432' && clock.now() >= 2000 ? REFUSED : PASS);
  const checker = new HealthChecker(pool, { logger, clock, probe, random: () => 0.5 });
  checker.start();
  await clock.advance(3100);
  t.equal(pool.servers[1]!.healthy, true, 'two failures (fall=3) are not enough');
  await clock.advance(1000);
  t.equal(pool.servers[1]!.healthy, false, 'the third failure marks it down');
  await clock.advance(5000);
  const flips = lines().filter((line) => String(line.msg).startsWith('server '));
  t.same(
    flips.map((line) => line.msg),
    ['server 10.0.0.12:5432 up -> down: connect ECONNREFUSED after 3 checks'],
    'one flip, logged once, however many failures follow',
  );
  checker.stop();
  pool.close();
});

t.test('probe payload: send escapes', async (t) => {
  const cases: Array<[string, string]> = [
    ['PING\\r\\n', '50494e470d0a'],
    ['a\\tb', '610962'],
    ['\\\\', '5c'],
    ['\\x00\\xff\\x7F', '00ff7f'],
    ['PING\r\n', '50494e470d0a'],
    ['é', 'c3a9'],
    ['', ''],
  ];
  for (const [text, hex] of cases) {
    const decoded = decodeEscapes(text);
    t.ok(Buffer.isBuffer(decoded), `${JSON.stringify(text)} decodes`);
    t.equal((decoded as Buffer).toString('hex'), hex, JSON.stringify(text));
  }
  for (const bad of ['\\q', 'x\\', '\\x4', '\\xZZ']) {
    t.type(decodeEscapes(bad), 'string', `${JSON.stringify(bad)} is a problem string`);
  }
});

t.test('probe payload: expect matchers', async (t) => {
  const prefix = createMatcher('+PONG');
  t.equal(prefix.description, '"+PONG"');
  t.equal(prefix.check(Buffer.from('+PONG\r\n'), false), 'match');
  t.equal(prefix.check(Buffer.from('+PO'), false), 'need-more', 'a partial reply waits for more');
  t.equal(prefix.check(Buffer.from('+PO'), true), 'mismatch', 'unless no more will come');
  t.equal(prefix.check(Buffer.from('-ERR'), false), 'mismatch', 'a wrong first byte fails at once');
  t.equal(prefix.check(Buffer.alloc(0), true), 'mismatch');

  const regex = createMatcher('/role:master/');
  t.equal(regex.description, '/role:master/');
  t.equal(regex.check(Buffer.from('# Replication\r\nrole:master\r\n'), false), 'match');
  t.equal(regex.check(Buffer.from('# Replication\r\n'), false), 'need-more');
  t.equal(regex.check(Buffer.from('role:slave'), true), 'mismatch');

  t.equal(createMatcher('/').check(Buffer.from('/x'), false), 'match', 'a lone "/" is a prefix, not a regex');
  t.equal(describeReply(Buffer.from('-ERR\r\n')), '"-ERR\\r\\n"');
  t.equal(describeReply(Buffer.alloc(40, 0x61), 4), '"aaaa"...');
});

t.test('probe payload: PROXY header and send leave in one buffer', async (t) => {
  const header = Buffer.from('PROXY UNKNOWN\r\n');
  const send = Buffer.from('PING\r\n');
  t.equal(probeBytes(undefined, undefined), undefined);
  t.equal(probeBytes(undefined, send), send);
  t.equal(probeBytes(header, undefined), header);
  t.equal(probeBytes(header, send)!.toString(), 'PROXY UNKNOWN\r\nPING\r\n');
});
