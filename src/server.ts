import { lookup } from 'node:dns/promises';
import type { Config, ListenerConfig } from './config/schema.ts';
import { formatEndpoint } from './core/address.ts';
import { SwitchyardError, describeError } from './core/errors.ts';
import type { Logger } from './core/log.ts';
import { HealthChecker } from './health/checker.ts';
import { TcpListener } from './l4/tcp-listener.ts';
import { UdpListener } from './l4/udp-listener.ts';
import type { Listener } from './listener.ts';
import { Pool } from './pool/pool.ts';

type ListenerFactory = (config: ListenerConfig, pool: Pool, deps: { logger: Logger }) => Listener;

/**
 * Listener implementations by protocol. A new protocol (http) is one class plus one line
 * here; nothing else in the server switches on the protocol.
 */
const listenerFactories: Record<ListenerConfig['protocol'], ListenerFactory> = {
  tcp: (config, pool, deps) => new TcpListener(config as Extract<ListenerConfig, { protocol: 'tcp' }>, pool, deps),
  udp: (config, pool, deps) => new UdpListener(config as Extract<ListenerConfig, { protocol: 'udp' }>, pool, deps),
};

export interface SwitchyardOptions {
  logger: Logger;
}

/**
 * A running balancer: owns the pools, their health checkers and the listeners.
 *
 * Lifecycle: `Switchyard.start(config)` resolves server host names, builds pools and health
 * checkers, binds every listener (all or nothing: a bind failure closes what was bound and
 * rejects naming the listener and address), and logs one line per listener. `shutdown`
 * stops accepting, lets open connections finish up to the drain timeout, then closes the rest.
 */
export class Switchyard {
  readonly config: Config;
  readonly pools: ReadonlyMap<string, Pool>;
  readonly listeners: readonly Listener[];
  private readonly checkers: readonly HealthChecker[];
  private readonly logger: Logger;
  private shutdownPromise: Promise<void> | undefined;

  private constructor(config: Config, pools: Map<string, Pool>, listeners: Listener[], checkers: HealthChecker[], logger: Logger) {
    this.config = config;
    this.pools = pools;
    this.listeners = listeners;
    this.checkers = checkers;
    this.logger = logger;
  }

  static async start(config: Config, options: SwitchyardOptions): Promise<Switchyard> {
    const logger = options.logger;
    const pools = new Map<string, Pool>();
    for (const [name, poolConfig] of Object.entries(config.pools)) {
      pools.set(name, new Pool(name, poolConfig, { logger }));
    }
    await resolveServerNames(pools);

    // Built before anything binds, so an error here leaves nothing to clean up.
    const checkers: HealthChecker[] = [];
    for (const pool of pools.values()) {
      if (pool.config.healthCheck !== undefined) checkers.push(new HealthChecker(pool, { logger }));
    }
    const listeners = config.listeners.map((listenerConfig) =>
      listenerFactories[listenerConfig.protocol](listenerConfig, pools.get(listenerConfig.pool)!, { logger }),
    );
    try {
      for (const listener of listeners) await listener.listen();
    } catch (err) {
      for (const listener of listeners) listener.close();
      for (const pool of pools.values()) pool.close();
      throw err;
    }
    for (const checker of checkers) checker.start();

    for (const [index, listener] of listeners.entries()) {
      const listenerConfig = config.listeners[index]!;
      const bound = listener.address();
      logger.info(
        { module: 'server', listener: listener.name, protocol: listener.protocol, address: formatEndpoint(bound.address, bound.port), pool: listenerConfig.pool },
        `listener ${listener.name} (${listener.protocol}) bound to ${formatEndpoint(bound.address, bound.port)} → pool ${listenerConfig.pool}`,
      );
    }
    return new Switchyard(config, pools, listeners, checkers, logger);
  }

  /** The bound address of a listener by name (its port resolved when the config said 0). */
  address(listenerName: string): { address: string; port: number } {
    const listener = this.listeners.find((candidate) => candidate.name === listenerName);
    if (!listener) throw new Error(`no listener named "${listenerName}"`);
    return listener.address();
  }

  /** Open connections (tcp) and sessions (udp) across all listeners. */
  openCount(): number {
    let open = 0;
    for (const listener of this.listeners) open += listener.openCount();
    return open;
  }

  /**
   * Graceful stop: stop accepting at once, wait until every connection/session has ended or
   * `drainTimeoutMs` (default: config `shutdown.drainTimeout`) has passed, then close what is
   * left and stop health checks. Idempotent: a second call returns the same promise.
   */
  shutdown(drainTimeoutMs = this.config.shutdown.drainTimeout): Promise<void> {
    this.shutdownPromise ??= this.drainAndClose(drainTimeoutMs);
    return this.shutdownPromise;
  }

  private async drainAndClose(drainTimeoutMs: number): Promise<void> {
    for (const listener of this.listeners) listener.stopAccepting();
    const open = this.openCount();
    this.logger.info({ module: 'server', open, drainTimeoutMs }, `draining: ${open} open, waiting up to ${drainTimeoutMs}ms`);
    await this.waitUntilClosed(drainTimeoutMs);
    const left = this.openCount();
    for (const listener of this.listeners) listener.close();
    // Destroyed sockets report 'close' on a later tick; wait (briefly) so every connection
    // is released and has written its log line before we report done.
    await this.waitUntilClosed(1_000);
    for (const checker of this.checkers) checker.stop();
    for (const pool of this.pools.values()) pool.close();
    this.logger.info({ module: 'server', closed: left }, left > 0 ? `drain timeout: closed ${left} still open` : 'drained: all connections finished');
  }

  /** Polls (every ≤50 ms) until no connection or session is open, or `timeoutMs` passed. */
  private async waitUntilClosed(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.openCount() > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, Math.min(50, Math.max(1, deadline - Date.now()))));
    }
  }
}

/**
 * Resolves servers written as host names once, at start (like HAProxy's default
 * `init-addr last,libc`). A name that does not resolve stops the start with an error naming
 * the pool and server.
 */
async function resolveServerNames(pools: Map<string, Pool>): Promise<void> {
  const lookups: Promise<void>[] = [];
  for (const pool of pools.values()) {
    for (const server of pool.servers) {
      if (server.endpoint.family !== 0) continue;
      lookups.push(
        lookup(server.endpoint.host).then(
          (result) => {
            server.connectHost = result.address;
          },
          (err: unknown) => {
            throw new SwitchyardError('SWY_RESOLVE_FAILED', `pools.${pool.name}.servers[${server.index}]: cannot resolve "${server.endpoint.host}": ${describeError(err)}`, {
              source: 'config',
              cause: err,
            });
          },
        ),
      );
    }
  }
  await Promise.all(lookups);
}
