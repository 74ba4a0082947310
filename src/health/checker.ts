import type { Logger } from '../core/log.ts';
import type { HealthCheckConfig } from '../config/schema.ts';
import type { Pool } from '../pool/pool.ts';
import type { UpstreamServer } from '../pool/server.ts';
import { formatDuration } from '../core/duration.ts';
import { SwitchyardError, describeError } from '../core/errors.ts';
import { buildLocalProxyHeader } from '../proxy-protocol/build.ts';
import { probePayload } from './probe-payload.ts';
import { tcpProbe } from './tcp-probe.ts';
import { udpProbe } from './udp-probe.ts';

/** One probe's outcome. `detail` is short and human: `ok`, `connect ECONNREFUSED`, ... */
export interface ProbeResult {
  pass: boolean;
  detail: string;
}

export interface ProbeOptions {
  /** PROXY header to send first (LOCAL command), when the pool sends one to its servers. */
  proxyHeader?: Buffer;
  /** Aborted on timeout or stop(): the probe must then release its socket and resolve. */
  signal: AbortSignal;
}

/**
 * Checks one server once. Must never reject (failures are values) and must resolve soon
 * after `signal` aborts, with a detail naming what it was waiting for (`connecting`,
 * `waiting for reply`); the checker turns that into `timeout after 1s (connecting)`.
 */
export type Probe = (server: UpstreamServer, check: HealthCheckConfig, options: ProbeOptions) => Promise<ProbeResult>;

/** Time as the checker sees it; injected so unit tests drive it with a fake clock. */
export interface Clock {
  /** Monotonic milliseconds. */
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** Real time. Timers are unref()'d: health checks alone never keep the process alive. */
export const systemClock: Clock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/** The part of Pool the checker uses (a Pool satisfies it; unit tests may pass less). */
export type CheckedPool = Pick<Pool, 'name' | 'config' | 'servers' | 'recordProbe'>;

export interface HealthCheckerDeps {
  logger: Logger;
  clock?: Clock;
  /** Defaults to the probe for `healthCheck.type` (tcpProbe or udpProbe). */
  probe?: Probe;
  /** Uniform random in [0, 1) for the jitter. */
  random?: () => number;
}

/** Each interval is moved by up to this share of itself, either way, so probes drift apart. */
const JITTER = 0.1;
/** The first probes of a pool are spread over this share of the interval. */
const START_SPREAD = 0.1;

/** One probe in flight. */
interface ProbeRun {
  readonly controller: AbortController;
  readonly startedAt: number;
  timeoutTimer: unknown;
  /** Records the timeout when an aborted probe fails to resolve promptly (a buggy probe). */
  fallbackTimer: unknown;
  timedOut: boolean;
  recorded: boolean;
}

interface Slot {
  readonly server: UpstreamServer;
  /** The timer that starts this server's next probe. */
  nextTimer: unknown;
  /** The probe still running (until its promise settles, even after a timeout). */
  running: ProbeRun | undefined;
}

/**
 * Active health checks for one pool: probes every server (backups too) every `interval`,
 * and reports each result through `pool.recordProbe` (the pool's one choke point decides
 * rise/fall, logs flips and tells subscribers).
 *
 * Scheduling: a server's probes start `interval` apart, measured start to start, each moved
 * by a random ±10% so the probes of many servers (and many balancers) drift apart instead of
 * hitting a backend at once. Start-to-start keeps detection time at about `fall × interval`
 * even when probes time out. The first probes run right at start(), spread evenly over the
 * first tenth of the interval so a large pool does not open hundreds of sockets at once.
 *
 * Never two probes of one server in flight: the next probe is scheduled only once the current
 * one has a result, and if a timed-out probe still has not settled when the next is due,
 * that round is skipped.
 */
export class HealthChecker {
  private readonly pool: CheckedPool;
  private readonly check: HealthCheckConfig;
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly probe: Probe;
  private readonly random: () => number;
  private readonly proxyHeader: Buffer | undefined;
  private readonly timeoutText: string;
  private readonly slots: Slot[];
  private started = false;
  private stopped = false;

  /** Throws SwitchyardError(SWY_CONFIG_INVALID) when the pool has no healthCheck or `send` is invalid. */
  constructor(pool: CheckedPool, deps: HealthCheckerDeps) {
    const check = pool.config.healthCheck;
    if (check === undefined) {
      throw new SwitchyardError('SWY_CONFIG_INVALID', `pool ${pool.name} has no healthCheck`, { source: 'config' });
    }
    try {
      probePayload(check);
    } catch (err) {
      throw new SwitchyardError('SWY_CONFIG_INVALID', `pools.${pool.name}.${describeError(err)}`, { source: 'config', cause: err });
    }
    this.pool = pool;
    this.check = check;
    this.logger = deps.logger.child({ module: 'health', pool: pool.name });
    this.clock = deps.clock ?? systemClock;
    this.probe = deps.probe ?? (check.type === 'udp' ? udpProbe : tcpProbe);
    this.random = deps.random ?? Math.random;
    const version = pool.config.sendProxyProtocol;
    this.proxyHeader = version === undefined ? undefined : buildLocalProxyHeader(version);
    this.timeoutText = `timeout after ${formatDuration(check.timeout)}`;
    this.slots = pool.servers.map((server) => ({ server, nextTimer: undefined, running: undefined }));
  }

  /** Starts probing. Called once, after the pool's servers have their addresses. Idempotent. */
  start(): void {
    if (this.started || this.stopped) return;
    this.started = true;
    const { type, interval, timeout, rise, fall } = this.check;
    this.logger.info(
      { event: 'health-start', type, interval, timeout, rise, fall, servers: this.slots.length },
      `health checks for pool ${this.pool.name}: ${type} every ${formatDuration(interval)}, timeout ${formatDuration(timeout)}, rise ${rise}, fall ${fall}`,
    );
    const spread = (interval * START_SPREAD) / this.slots.length;
    this.slots.forEach((slot, index) => this.schedule(slot, Math.round(spread * index)));
  }

  /**
   * Stops for good: cancels every timer and aborts probes in flight (their sockets are
   * destroyed). No result is recorded after stop() returns. Idempotent.
   */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    for (const slot of this.slots) {
      if (slot.nextTimer !== undefined) this.clock.clearTimeout(slot.nextTimer);
      slot.nextTimer = undefined;
      const run = slot.running;
      if (run !== undefined) {
        this.clearRunTimers(run);
        run.controller.abort();
      }
    }
  }

  private schedule(slot: Slot, delay: number): void {
    slot.nextTimer = this.clock.setTimeout(() => {
      slot.nextTimer = undefined;
      this.runProbe(slot);
    }, delay);
  }

  /** The next probe starts `interval ± jitter` after this one started (never in the past). */
  private scheduleNext(slot: Slot, startedAt: number): void {
    const { interval } = this.check;
    const jitter = interval * JITTER * (2 * this.random() - 1);
    this.schedule(slot, Math.max(0, Math.round(startedAt + interval + jitter - this.clock.now())));
  }

  private runProbe(slot: Slot): void {
    if (this.stopped) return;
    const now = this.clock.now();
    if (slot.running !== undefined) {
      // A timed-out probe that ignored its abort: never overlap it; try again next round.
      this.logger.warn({ server: slot.server.label }, `health probe of ${slot.server.label} is still running after its timeout; skipping a round`);
      this.scheduleNext(slot, now);
      return;
    }
    const run: ProbeRun = {
      controller: new AbortController(),
      startedAt: now,
      timeoutTimer: undefined,
      fallbackTimer: undefined,
      timedOut: false,
      recorded: false,
    };
    slot.running = run;
    run.timeoutTimer = this.clock.setTimeout(() => this.onTimeout(slot, run), this.check.timeout);
    let pending: Promise<ProbeResult>;
    try {
      pending = this.probe(slot.server, this.check, { proxyHeader: this.proxyHeader, signal: run.controller.signal });
    } catch (err) {
      pending = Promise.reject(err);
    }
    pending.then(
      (result) => this.settle(slot, run, result),
      (err: unknown) => this.settle(slot, run, { pass: false, detail: `probe error: ${describeError(err)}` }),
    );
  }

  private onTimeout(slot: Slot, run: ProbeRun): void {
    run.timeoutTimer = undefined;
    if (run.recorded || this.stopped) return;
    run.timedOut = true;
    // A well-behaved probe resolves right after the abort, with what it was waiting for;
    // the fallback records the timeout anyway if it does not.
    run.fallbackTimer = this.clock.setTimeout(() => {
      run.fallbackTimer = undefined;
      this.record(slot, run, false, this.timeoutText);
    }, 0);
    run.controller.abort();
  }

  private settle(slot: Slot, run: ProbeRun, result: ProbeResult): void {
    if (slot.running === run) slot.running = undefined;
    if (run.timedOut) this.record(slot, run, false, `${this.timeoutText} (${result.detail})`);
    else this.record(slot, run, result.pass, result.detail);
  }

  private record(slot: Slot, run: ProbeRun, pass: boolean, detail: string): void {
    if (run.recorded || this.stopped) return;
    run.recorded = true;
    this.clearRunTimers(run);
    if (this.logger.isLevelEnabled('debug')) {
      this.logger.debug({ server: slot.server.label, pass, detail }, `probe ${slot.server.label}: ${pass ? 'pass' : 'fail'}: ${detail}`);
    }
    // Scheduled first, so even a throwing health subscriber cannot stop this server's checks.
    this.scheduleNext(slot, run.startedAt);
    this.pool.recordProbe(slot.server, pass, detail);
  }

  private clearRunTimers(run: ProbeRun): void {
    if (run.timeoutTimer !== undefined) this.clock.clearTimeout(run.timeoutTimer);
    if (run.fallbackTimer !== undefined) this.clock.clearTimeout(run.fallbackTimer);
    run.timeoutTimer = undefined;
    run.fallbackTimer = undefined;
  }
}
