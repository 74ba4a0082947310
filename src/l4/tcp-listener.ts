import { createServer, type Server, type Socket, type AddressInfo } from 'node:net';
import type { TcpListenerConfig } from '../config/schema.ts';
import { CidrSet, formatEndpoint, normalizeIp } from '../core/address.ts';
import { SwitchyardError, describeError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import type { Pool } from '../pool/pool.ts';
import type { Listener } from '../listener.ts';
import { ProxyHeaderParser } from '../proxy-protocol/parse.ts';
import { TcpConnection, type DownstreamOrigin } from './tcp-connection.ts';
import type { TcpListenerContext, TcpListenerCounters } from './tcp-context.ts';

/**
 * A TCP listener: accepts downstream connections and hands each to a TcpConnection.
 *
 * Accept path, in order: listener cap (`maxConnections`) → when `proxyProtocol` is set, the
 * source must be trusted and must send a valid PROXY header within `timeout` (read
 * incrementally; bytes after it are kept for the upstream) → TcpConnection (pick, connect,
 * pipe). A rejected connection is closed with one warn line and affects nobody else.
 */
export class TcpListener implements Listener {
  readonly name: string;
  readonly protocol = 'tcp';
  readonly counters: TcpListenerCounters = { accepted: 0, rejectedFull: 0, rejectedProxy: 0, refused: 0 };
  private readonly config: TcpListenerConfig;
  private readonly logger: Logger;
  private readonly server: Server;
  private readonly connections = new Set<TcpConnection>();
  /** Sockets still reading their PROXY header (not yet connections). */
  private readonly handshakes = new Set<Socket>();
  private readonly trusted: CidrSet | undefined;
  private readonly context: TcpListenerContext;
  private accepting = true;
  private idleSweep: NodeJS.Timeout | undefined;

  constructor(config: TcpListenerConfig, pool: Pool, deps: { logger: Logger }) {
    this.name = config.name;
    this.config = config;
    this.logger = deps.logger.child({ module: 'tcp', listener: config.name });
    this.trusted = config.proxyProtocol ? new CidrSet(config.proxyProtocol.trusted) : undefined;
    this.context = {
      config,
      pool,
      logger: this.logger,
      logConnections: this.logger.isLevelEnabled('info'),
      counters: this.counters,
      onFinish: (connection) => this.connections.delete(connection),
    };
    this.server = createServer({ allowHalfOpen: true, noDelay: true }, this.onConnection);
    this.server.on('error', (err) => this.logger.error({ err: describeError(err) }, 'listener error'));
  }

  listen(): Promise<void> {
    const { host, port } = this.config.bind;
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => {
        reject(
          new SwitchyardError('SWY_BIND_FAILED', `listener "${this.name}" cannot bind tcp ${formatEndpoint(host, port)}: ${describeError(err)}`, {
            source: 'config',
            cause: err,
          }),
        );
      };
      this.server.once('error', onError);
      this.server.listen({ host, port, backlog: 4096 }, () => {
        this.server.off('error', onError);
        this.startIdleSweep();
        resolve();
      });
    });
  }

  address(): { address: string; port: number } {
    const info = this.server.address() as AddressInfo;
    return { address: info.address, port: info.port };
  }

  stopAccepting(): void {
    if (!this.accepting) return;
    this.accepting = false;
    this.server.close();
    // A half-read PROXY header is not a connection anyone is waiting on: end them now.
    for (const socket of this.handshakes) socket.destroy();
  }

  openCount(): number {
    return this.connections.size + this.handshakes.size;
  }

  close(): void {
    this.stopAccepting();
    clearInterval(this.idleSweep);
    for (const connection of this.connections) connection.terminate();
    for (const socket of this.handshakes) socket.destroy();
  }

  /**
   * `timeouts.idle` for every connection of this listener, by one periodic sweep instead of a
   * timer per socket refreshed on every chunk. A connection closes between `idle` and about
   * `idle × 1.2` after its last byte (the sweep period is idle/10, between 10 ms and 1 s).
   */
  private startIdleSweep(): void {
    const idle = this.config.timeouts.idle;
    if (idle === 0) return;
    const period = Math.min(1000, Math.max(10, Math.floor(idle / 10)));
    this.idleSweep = setInterval(() => {
      const now = Date.now();
      for (const connection of this.connections) connection.sweepIdle(now, idle);
    }, period);
    this.idleSweep.unref();
  }

  private readonly onConnection = (socket: Socket): void => {
    if (socket.remoteAddress === undefined) {
      // Reset before we handled the accept (haproxy closes its checks this way): nobody to serve.
      socket.on('error', ignore);
      socket.destroy();
      return;
    }
    const max = this.config.maxConnections;
    if (!this.accepting || (max !== undefined && this.openCount() >= max)) {
      this.counters.rejectedFull++;
      socket.on('error', ignore);
      socket.destroy();
      this.logger.warn({ downstream: `${socket.remoteAddress}:${socket.remotePort}`, open: this.openCount() }, 'listener full: connection closed');
      return;
    }
    this.counters.accepted++;
    const ip = normalizeIp(socket.remoteAddress);
    const origin: DownstreamOrigin = {
      ip,
      port: socket.remotePort!,
    };
    if (this.trusted === undefined) {
      this.connections.add(new TcpConnection(this.context, socket, origin, undefined));
      return;
    }
    if (!this.trusted.has(ip)) {
      this.rejectProxy(socket, origin, 'source is not in proxyProtocol.trusted');
      return;
    }
    this.readProxyHeader(socket, origin);
  };

  /**
   * Reads the PROXY header of a trusted connection, bounded in time (`proxyProtocol.timeout`)
   * and size (the parser's limits). A LOCAL header (a health check from the balancer in
   * front) keeps the real peer address.
   */
  private readProxyHeader(socket: Socket, origin: DownstreamOrigin): void {
    const parser = new ProxyHeaderParser();
    this.handshakes.add(socket);
    const cleanup = () => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', onError);
      socket.off('close', onClose);
      this.handshakes.delete(socket);
    };
    const reject = (why: string) => {
      cleanup();
      this.rejectProxy(socket, origin, why);
    };
    const timer = setTimeout(() => reject(`no PROXY header within ${this.config.proxyProtocol!.timeout}ms`), this.config.proxyProtocol!.timeout);
    const onData = (chunk: Buffer) => {
      const result = parser.push(chunk);
      if (result.status === 'incomplete') return;
      if (result.status === 'invalid') {
        reject(`invalid PROXY header: ${result.error.message}`);
        return;
      }
      cleanup();
      socket.pause();
      const header = result.header;
      if (header.command === 'proxy' && header.source !== undefined && header.destination !== undefined) {
        origin.ip = normalizeIp(header.source.address);
        origin.port = header.source.port;
        origin.localIp = normalizeIp(header.destination.address);
        origin.localPort = header.destination.port;
      }
      this.connections.add(new TcpConnection(this.context, socket, origin, result.rest.length > 0 ? result.rest : undefined));
    };
    const onEnd = () => reject('connection ended before the PROXY header was complete');
    const onError = (err: Error) => reject(`socket error before the PROXY header: ${describeError(err)}`);
    const onClose = () => cleanup();
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('error', onError);
    socket.on('close', onClose);
  }

  private rejectProxy(socket: Socket, origin: DownstreamOrigin, why: string): void {
    this.counters.rejectedProxy++;
    socket.on('error', ignore);
    socket.destroy();
    this.logger.warn({ downstream: formatEndpoint(origin.ip, origin.port), reason: why }, `PROXY protocol: connection closed: ${why}`);
  }
}

const ignore = (): void => {};
