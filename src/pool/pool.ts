import type { Logger } from '../core/log.ts';
import type { PoolConfig } from '../config/schema.ts';
import { selectorFactory } from '../balance/registry.ts';
import type { Selector } from '../balance/types.ts';
import { HealthState } from '../health/state.ts';
import { UpstreamServer } from './server.ts';

/** Why a pick found no server. Expected outcomes, returned as values (never thrown). */
export type PickFailure =
  /** No server (primary or backup) is ready: all down or disabled. */
  | 'no-server-ready'
  /** Servers are ready, but each is full (maxConnections), weighted 0, or already tried. */
  | 'no-server-available';

export type PickResult = { server: UpstreamServer; failure?: undefined } | { server?: undefined; failure: PickFailure };

export interface ServerHealthChange {
  pool: Pool;
  server: UpstreamServer;
  healthy: boolean;
  reason: string;
}

export interface PoolDeps {
  logger: Logger;
  /** Uniform random in [0, 1) for selectors. */
  random?: () => number;
  /** Schedules the passive-check cooldown; injected so tests need not sleep. */
  setTimer?: (fn: () => void, ms: number) => { cancel(): void };
}

const defaultTimer = (fn: () => void, ms: number) => {
  const handle = setTimeout(fn, ms);
  handle.unref();
  return { cancel: () => clearTimeout(handle) };
};

/**
 * A named set of servers with its selectors and health table.
 *
 * Pool is THE one place where a server's readiness changes (`setHealth`): active probes
 * (`recordProbe`) and passive results from real traffic (`recordConnect`) both end there,
 * which flips the state, logs the flip once with its reason, and tells subscribers.
 *
 * Primaries and backups have a selector each, built once; neither is rebuilt on a health
 * change, so ip-hash keeps every other client's mapping while one server flaps.
 */
export class Pool {
  readonly name: string;
  readonly config: PoolConfig;
  readonly servers: readonly UpstreamServer[];
  private readonly primaries: readonly UpstreamServer[];
  private readonly backups: readonly UpstreamServer[];
  private readonly primarySelector: Selector;
  private readonly backupSelector: Selector | undefined;
  private readonly health: HealthState[];
  private readonly cooldowns = new Map<UpstreamServer, { cancel(): void }>();
  private readonly subscribers: Array<(change: ServerHealthChange) => void> = [];
  private readonly logger: Logger;
  private readonly setTimer: NonNullable<PoolDeps['setTimer']>;
  private hadReadyServer = true;

  constructor(name: string, config: PoolConfig, deps: PoolDeps) {
    this.name = name;
    this.config = config;
    this.logger = deps.logger.child({ module: 'pool', pool: name });
    this.setTimer = deps.setTimer ?? defaultTimer;
    this.servers = config.servers.map((server, index) => new UpstreamServer(server, index));
    this.primaries = this.servers.filter((server) => !server.backup);
    this.backups = this.servers.filter((server) => server.backup);
    const factory = selectorFactory(config.algorithm);
    const options = { random: deps.random ?? Math.random };
    this.primarySelector = factory(this.primaries, options);
    this.backupSelector = this.backups.length > 0 ? factory(this.backups, options) : undefined;
    const check = config.healthCheck;
    this.health = this.servers.map(() => new HealthState(check?.rise ?? 1, check?.fall ?? 1));
  }

  /**
   * Picks a server for one new connection or session and counts it as active. Each
   * successful pick must be matched by exactly one `release(server)`.
   *
   * Backups are used only while no primary is ready, or when this connection has already
   * tried every ready primary (failover: the alternative would be closing the client).
   * @param clientIp normalised downstream IP (ip-hash key)
   * @param exclude servers this connection already tried
   */
  pick(clientIp: string, exclude?: ReadonlySet<UpstreamServer>): PickResult {
    let server = this.primarySelector.pick(clientIp, exclude);
    if (server === undefined && this.backupSelector !== undefined && !this.hasUntriedReadyPrimary(exclude)) {
      server = this.backupSelector.pick(clientIp, exclude);
    }
    if (server === undefined) {
      return { failure: this.hasReadyServer() ? 'no-server-available' : 'no-server-ready' };
    }
    server.active++;
    server.total++;
    return { server };
  }

  /** Ends one pick's claim on a server (connection closed, session expired). */
  release(server: UpstreamServer): void {
    server.active--;
  }

  hasReadyServer(): boolean {
    for (const server of this.servers) if (server.ready) return true;
    return false;
  }

  private hasUntriedReadyPrimary(exclude: ReadonlySet<UpstreamServer> | undefined): boolean {
    for (const server of this.primaries) {
      if (server.ready && (exclude === undefined || !exclude.has(server))) return true;
    }
    return false;
  }

  /**
   * One active probe result. Flips health after `rise`/`fall` consecutive results (the first
   * result after start decides at once; see HealthState).
   * @param detail what the probe saw, e.g. `connect ECONNREFUSED` or `reply matched`
   */
  recordProbe(server: UpstreamServer, pass: boolean, detail: string): void {
    const state = this.health[server.index]!;
    const count = state.record(pass);
    if (count === 0) return;
    this.setHealth(server, state.healthy, `${detail} after ${count} check${count === 1 ? '' : 's'}`);
  }

  /**
   * One connect outcome from real traffic (passive check). `passiveCheck.failures`
   * consecutive failures mark the server down before the next probe would. Without an
   * active health check, a server marked down this way is retried after `cooldown`; one more
   * failure then marks it down again (nginx's max_fails / fail_timeout).
   */
  recordConnect(server: UpstreamServer, ok: boolean, detail: string): void {
    if (ok) {
      server.consecutiveFailures = 0;
      return;
    }
    server.consecutiveFailures++;
    const { failures, cooldown } = this.config.passiveCheck;
    if (failures === 0 || server.consecutiveFailures < failures || !server.healthy) return;
    this.setHealth(server, false, `${detail} after ${server.consecutiveFailures} failed connect${server.consecutiveFailures === 1 ? '' : 's'} from traffic`);
    if (this.config.healthCheck === undefined) {
      this.cooldowns.get(server)?.cancel();
      this.cooldowns.set(
        server,
        this.setTimer(() => {
          this.cooldowns.delete(server);
          this.setHealth(server, true, 'passive cooldown elapsed, retrying with traffic');
          server.consecutiveFailures = failures - 1;
        }, cooldown),
      );
    }
  }

  /**
   * THE choke point for readiness. Flips `server.healthy`, logs the flip once with its
   * reason, and notifies subscribers. A call that changes nothing does nothing.
   */
  setHealth(server: UpstreamServer, healthy: boolean, reason: string): void {
    if (server.healthy === healthy) return;
    server.healthy = healthy;
    this.health[server.index]!.force(healthy);
    if (healthy) server.consecutiveFailures = 0;
    const line = { server: server.label, from: healthy ? 'down' : 'up', to: healthy ? 'up' : 'down', reason };
    const message = `server ${server.label} ${line.from} -> ${line.to}: ${reason}`;
    if (healthy) this.logger.info(line, message);
    else this.logger.warn(line, message);
    const anyReady = this.hasReadyServer();
    if (anyReady !== this.hadReadyServer) {
      this.hadReadyServer = anyReady;
      if (anyReady) this.logger.info({ event: 'pool-recovered' }, `pool ${this.name} has a ready server again`);
      else this.logger.error({ event: 'pool-down' }, `pool ${this.name} has no ready server: new connections will be refused`);
    }
    const change: ServerHealthChange = { pool: this, server, healthy, reason };
    for (const subscriber of this.subscribers) subscriber(change);
  }

  /** Subscribes to readiness flips (metrics, UDP session migration). Returns an unsubscribe. */
  onHealthChange(subscriber: (change: ServerHealthChange) => void): () => void {
    this.subscribers.push(subscriber);
    return () => {
      const at = this.subscribers.indexOf(subscriber);
      if (at >= 0) this.subscribers.splice(at, 1);
    };
  }

  /** Cancels pending timers; the pool is unusable afterwards. */
  close(): void {
    for (const timer of this.cooldowns.values()) timer.cancel();
    this.cooldowns.clear();
  }
}
