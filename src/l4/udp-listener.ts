import { Socket, createSocket, type RemoteInfo } from 'node:dgram';
import type { UdpListenerConfig } from '../config/schema.ts';
import { formatEndpoint, normalizeIp } from '../core/address.ts';
import { SwitchyardError, describeError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import type { Listener } from '../listener.ts';
import type { Pool } from '../pool/pool.ts';
import type { UpstreamServer } from '../pool/server.ts';
import { buildProxyHeader } from '../proxy-protocol/build.ts';
import type { ProxyAddress } from '../proxy-protocol/types.ts';
import type { UdpListenerContext, UdpListenerCounters } from './udp-context.ts';
import { DropLog } from './udp-drops.ts';
import { literalLookup } from './udp-lookup.ts';
import { createDatagramSender, type DatagramSender } from './udp-send.ts';
import { UdpSession } from './udp-session.ts';
import { SessionTable, mustMigrate } from './udp-sessions.ts';
import { UpstreamLinks } from './udp-upstream.ts';

/**
 * Kernel buffer for the listener socket, both ways. Every session's datagrams pass through
 * this one socket, so the default (~200 KB, three 64 KB datagrams) would drop bursts. The
 * kernel caps it at net.core.rmem_max / wmem_max without failing. Upstream sockets keep the
 * default: each carries one session, and 100,000 of them must stay cheap.
 */
const LISTENER_BUFFER_BYTES = 4 * 1024 * 1024;

/**
 * Sessions a sweep ends before yielding to the event loop (about 10-30 ms of socket closes
 * and log lines), so mass expiry after a flood never stalls traffic for long.
 */
const SWEEP_BUDGET = 500;

/**
 * Bytes of recent datagrams all sessions together keep for replay after a refusal (see
 * UdpSession). Replays only need the last round trip's worth of traffic; this caps memory
 * whatever the number of sessions.
 */
const REPLAY_BUDGET_BYTES = 16 * 1024 * 1024;

/**
 * Upstream sockets kept open for reuse at once (sessions that ended with every reply in,
 * see UpstreamLinks), all servers together, and never more than maxSessions: descriptors
 * stay bounded by maxSessions plus this.
 */
const MAX_PARKED_LINKS = 1024;

export interface UdpListenerDeps {
  logger: Logger;
  /** Monotonic milliseconds; defaults to performance.now. Injected by tests. */
  now?: () => number;
  /** Cap on bytes kept for replay across all sessions; default 16 MiB. Lowered by tests. */
  replayBudgetBytes?: number;
  /** How datagrams are sent; default createDatagramSender() (native when available). */
  sender?: DatagramSender;
  /** Connect upstream sockets with Socket.connectSync; default: when this Node has it (24.19+). */
  connectSync?: boolean;
}

/**
 * A UDP listener: receives datagrams, ties each downstream address:port to a session with
 * its own connected upstream socket, and sends replies back from the listener's address.
 *
 * Datagram path: look up the session by `address:port` → on a miss, refuse when draining or
 * when `maxSessions` sessions are open, else pick a server and open a session → when the
 * session's server is no longer ready, move it to a freshly picked one → forward. A datagram
 * that cannot be forwarded (table full, no server ready) is dropped and counted, never
 * queued; drops are logged at warn at most once a second (DropLog).
 *
 * One timer sweeps the table every min(sessionTimeout / 2, 1 s), ending idle sessions and
 * closing their sockets, so file descriptors and memory are bounded by `maxSessions` however
 * many distinct sources come and go.
 */
export class UdpListener implements Listener {
  readonly name: string;
  readonly protocol = 'udp';
  readonly counters: UdpListenerCounters = { datagramsIn: 0, datagramsOut: 0, sessions: 0, migrations: 0, failovers: 0 };
  /** Dropped datagrams by reason (`drops.totals`), with the rate-limited warn line. */
  readonly drops: DropLog;
  private readonly config: UdpListenerConfig;
  private readonly pool: Pool;
  private readonly logger: Logger;
  private readonly socket: Socket;
  private readonly table: SessionTable<UdpSession>;
  private readonly context: UdpListenerContext;
  private sweepTimer: NodeJS.Timeout | undefined;
  private sweepContinuation: NodeJS.Immediate | undefined;
  /** The listener's bound address as PROXY v2 destination; set by listen() when the pool sends PROXY. */
  private proxyDestination: ProxyAddress | undefined;
  private accepting = true;
  private closed = false;

  constructor(config: UdpListenerConfig, pool: Pool, deps: UdpListenerDeps) {
    this.name = config.name;
    this.config = config;
    this.pool = pool;
    this.logger = deps.logger.child({ module: 'udp', listener: config.name });
    const now = deps.now ?? (() => performance.now());
    this.table = new SessionTable<UdpSession>({ sessionTimeout: config.udp.sessionTimeout, maxSessions: config.udp.maxSessions, now });
    this.drops = new DropLog(this.logger, now);
    this.socket = createSocket({ type: config.bind.host.includes(':') ? 'udp6' : 'udp4', lookup: literalLookup });
    this.socket.on('message', this.onDatagram);
    this.context = {
      pool,
      logger: this.logger,
      logSessions: this.logger.isLevelEnabled('info'),
      responses: config.udp.responses,
      retries: pool.config.retries,
      table: this.table,
      drops: this.drops,
      counters: this.counters,
      now,
      downstream: this.socket,
      links: new UpstreamLinks({
        drops: this.drops,
        now,
        maxParkedMs: config.udp.sessionTimeout,
        maxParked: Math.min(MAX_PARKED_LINKS, config.udp.maxSessions),
        connectSync: deps.connectSync ?? typeof Socket.prototype.connectSync === 'function',
      }),
      sender: deps.sender ?? createDatagramSender(),
      onReplyFailed: () => this.drops.count('send-failed'),
      replay: { bytes: 0, limit: deps.replayBudgetBytes ?? REPLAY_BUDGET_BYTES },
    };
  }

  listen(): Promise<void> {
    const { host, port } = this.config.bind;
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => {
        this.socket.off('listening', onListening);
        reject(
          new SwitchyardError('SWY_BIND_FAILED', `listener "${this.name}" cannot bind udp ${formatEndpoint(host, port)}: ${describeError(err)}`, {
            source: 'config',
            cause: err,
          }),
        );
      };
      const onListening = () => {
        this.socket.off('error', onError);
        this.socket.on('error', this.onSocketError);
        this.tuneBuffers();
        if (this.pool.config.sendProxyProtocol === 'v2') {
          const bound = this.socket.address();
          this.proxyDestination = { address: normalizeIp(bound.address), port: bound.port };
        }
        this.sweepTimer = setInterval(this.sweep, this.table.sweepInterval);
        this.sweepTimer.unref();
        resolve();
      };
      this.socket.once('error', onError);
      this.socket.once('listening', onListening);
      this.socket.bind({ address: host, port, exclusive: true });
    });
  }

  address(): { address: string; port: number } {
    const info = this.socket.address();
    return { address: info.address, port: info.port };
  }

  /** Datagrams from new downstreams are dropped from now on; sessions continue until idle. */
  stopAccepting(): void {
    this.accepting = false;
  }

  /** Open sessions. */
  openCount(): number {
    return this.table.size;
  }

  /** Upstream sockets parked for reuse now, and how many sessions took a parked one. */
  get links(): { parked: number; reused: number } {
    return { parked: this.context.links.parkedSize, reused: this.context.links.reused };
  }

  /** Bytes of recent datagrams held for replay after a refusal, all sessions together. */
  get replayBytes(): number {
    return this.context.replay.bytes;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.accepting = false;
    if (this.sweepTimer !== undefined) clearInterval(this.sweepTimer);
    if (this.sweepContinuation !== undefined) clearImmediate(this.sweepContinuation);
    for (const session of this.table.drain()) session.end('shutdown');
    this.context.links.closeParked();
    this.drops.flush();
    this.socket.off('message', this.onDatagram);
    try {
      this.socket.close();
    } catch {
      // Never bound (listen failed or was not called): nothing to release.
    }
  }

  // ---- data path -----------------------------------------------------------------------------

  private readonly onDatagram = (datagram: Buffer, from: RemoteInfo): void => {
    this.counters.datagramsIn++;
    // The one allocation kept per datagram: the key. `address:port` is unambiguous even for
    // IPv6 because the port, after the last colon, never contains one.
    const key = from.address + ':' + from.port;
    let session = this.table.get(key);
    if (session === undefined) {
      session = this.openSession(key, from);
      if (session === undefined) return;
    } else {
      if (mustMigrate(session.server) && !session.migrate()) return;
      this.table.touch(session);
    }
    session.forward(datagram);
  };

  /** A datagram from a downstream without a session: admit it (bounded) or drop it. */
  private openSession(key: string, from: RemoteInfo): UdpSession | undefined {
    if (!this.accepting) {
      this.drops.count('not-accepting');
      return undefined;
    }
    if (this.table.full) {
      this.drops.count('sessions-full');
      return undefined;
    }
    const clientIp = normalizeIp(from.address);
    const picked = this.pool.pick(clientIp);
    if (picked.server === undefined) {
      this.drops.count(picked.failure);
      return undefined;
    }
    const header = this.proxyDestination === undefined ? undefined : this.proxyHeader(clientIp, from.port, picked.server);
    if (header === null) return undefined;
    const session = new UdpSession(this.context, key, from.address, from.port, clientIp, picked.server, header);
    this.table.add(session);
    this.counters.sessions++;
    session.start();
    return session;
  }

  /**
   * The PROXY v2 header of a new session, built once and reused for all its datagrams.
   * A wildcard listener (0.0.0.0 / ::) announces the wildcard of the source's family as
   * destination: Node does not report which local address a datagram was sent to.
   * Returns null (server released, datagram counted as dropped) if the header cannot be
   * built, which only a bug can cause.
   */
  private proxyHeader(clientIp: string, clientPort: number, server: UpstreamServer): Buffer | null | undefined {
    const bound = this.proxyDestination!;
    let destination = bound;
    if (bound.address === '0.0.0.0' || bound.address === '::') {
      destination = { address: clientIp.includes(':') ? '::' : '0.0.0.0', port: bound.port };
    }
    try {
      return buildProxyHeader('v2', { transport: 'udp', source: { address: clientIp, port: clientPort }, destination });
    } catch (err) {
      this.pool.release(server);
      this.drops.count('upstream-failed');
      this.logger.error({ err: describeError(err) }, 'cannot build PROXY header');
      return null;
    }
  }

  /**
   * The periodic sweep. A pass that expires more than SWEEP_BUDGET sessions continues on
   * setImmediate, letting datagrams through between chunks.
   */
  private readonly sweep = (): void => {
    // A pass still running in chunks is not started again by the timer.
    if (this.sweepContinuation === undefined) this.sweepChunk();
  };

  private readonly continueSweep = (): void => {
    this.sweepContinuation = undefined;
    this.sweepChunk();
  };

  private sweepChunk(): void {
    if (!this.table.sweeping) this.context.links.sweep(this.context.now());
    this.table.sweep(expire, forgetStaleReplay, SWEEP_BUDGET);
    if (this.table.sweeping) {
      this.sweepContinuation = setImmediate(this.continueSweep);
      return;
    }
    this.drops.flush();
  }

  /**
   * Errors of the listener socket after bind. Replies that fail to send are reported to
   * the sender's failure callback (context.onReplyFailed), not here; a 'send' error is
   * still counted as such should Node ever emit one. Unconnected sockets get no ICMP
   * errors, so a downstream that went away cannot surface here.
   */
  private readonly onSocketError = (err: NodeJS.ErrnoException): void => {
    if (err.syscall === 'send') {
      this.drops.count('send-failed');
      return;
    }
    this.logger.error({ err: describeError(err) }, 'udp listener socket error');
  };

  private tuneBuffers(): void {
    try {
      this.socket.setRecvBufferSize(LISTENER_BUFFER_BYTES);
      this.socket.setSendBufferSize(LISTENER_BUFFER_BYTES);
    } catch (err) {
      this.logger.warn({ err: describeError(err) }, 'cannot enlarge the udp socket buffers; bursts may be dropped by the kernel');
    }
  }
}

const expire = (session: UdpSession): void => session.end('idle');
const forgetStaleReplay = (session: UdpSession, now: number): void => session.forgetStaleReplay(now);
