import { connect, type Socket } from 'node:net';
import type { Pool } from '../pool/pool.ts';
import type { UpstreamServer } from '../pool/server.ts';
import { buildProxyHeader } from '../proxy-protocol/build.ts';
import type { TcpListenerContext } from './tcp-context.ts';

/** How a proxied TCP connection ended; the `end` field of its log line. */
export type TcpEndReason =
  | 'closed' // both sides finished normally (FIN/FIN)
  | 'downstream-reset'
  | 'upstream-reset'
  | 'downstream-error'
  | 'upstream-error'
  | 'idle-timeout'
  | 'no-server-ready'
  | 'no-server-available'
  | 'connect-failed' // every attempt (1 + retries) failed
  | 'downstream-closed-early' // the client left before an upstream was connected
  | 'shutdown';

/** Where the downstream really is: the peer, or the address a trusted PROXY header named. */
export interface DownstreamOrigin {
  ip: string;
  port: number;
  /** The address the client connected to (the listener's, or the PROXY header's destination). */
  localIp: string;
  localPort: number;
}

let nextConnectionId = 0;
const idPrefix = (process.pid & 0xffff).toString(16).padStart(4, '0') + Date.now().toString(16).slice(-6);

/**
 * One proxied TCP connection: pick → connect (bounded failover) → pipe both ways → release.
 *
 * Contract:
 * - Nothing is written to the downstream until an upstream is connected, so a failed attempt
 *   is invisible to the client; its early bytes are held (one chunk, then the socket is
 *   paused, so memory is bounded) and sent after the optional PROXY header, corked together.
 * - Bytes pass unchanged both ways with backpressure: a full writable pauses its source until
 *   'drain'. Half-close is passed on (FIN → end()), resets become resets (RST → resetAndDestroy).
 * - The downstream socket's inactivity timeout implements `timeouts.idle` for both directions:
 *   every byte in either direction is a read or a write on that socket.
 * - `finish` runs exactly once, after both sockets closed: it releases the server, removes the
 *   connection from the listener and writes the one log line.
 */
export class TcpConnection {
  readonly id: string;
  private readonly ctx: TcpListenerContext;
  private readonly downstream: Socket;
  private readonly origin: DownstreamOrigin;
  private readonly startedAt: number;
  private upstream: Socket | undefined;
  private server: UpstreamServer | undefined;
  /** Servers tried for this connection; allocated only on the first failure. */
  private tried: Set<UpstreamServer> | undefined;
  private attempts = 0;
  /** Bytes from the downstream received before the upstream was connected. */
  private pending: Buffer[] = [];
  private connected = false;
  private endReason: TcpEndReason | undefined;
  private downstreamClosed = false;
  private upstreamClosed = true;
  private finished = false;

  constructor(ctx: TcpListenerContext, downstream: Socket, origin: DownstreamOrigin, early: Buffer | undefined) {
    this.id = idPrefix + (nextConnectionId++).toString(16).padStart(6, '0');
    this.ctx = ctx;
    this.downstream = downstream;
    this.origin = origin;
    this.startedAt = Date.now();
    if (early !== undefined && early.length > 0) this.pending.push(early);

    downstream.on('data', this.onEarlyDownstreamData);
    downstream.on('end', this.onDownstreamEnd);
    downstream.on('error', this.onDownstreamError);
    downstream.on('close', this.onDownstreamClose);
    downstream.on('timeout', this.onIdleTimeout);
    if (ctx.config.timeouts.idle > 0) downstream.setTimeout(ctx.config.timeouts.idle);
    if (downstream.isPaused()) downstream.resume();
    this.connectNext();
  }

  /** Ends the connection now (drain deadline passed). */
  terminate(): void {
    this.endReason ??= 'shutdown';
    this.downstream.destroy();
    this.upstream?.destroy();
  }

  // ---- connect phase -------------------------------------------------------------------------

  private connectNext(): void {
    const pool: Pool = this.ctx.pool;
    const pick = pool.pick(this.origin.ip, this.tried);
    if (pick.server === undefined) {
      this.endReason = this.attempts > 0 ? 'connect-failed' : pick.failure;
      this.ctx.counters.refused++;
      this.downstream.destroy();
      return;
    }
    const server = pick.server;
    this.server = server;
    this.attempts++;
    this.upstreamClosed = false;
    const upstream = connect({ host: server.connectHost, port: server.port, noDelay: true, allowHalfOpen: true });
    this.upstream = upstream;
    upstream.setTimeout(this.ctx.config.timeouts.connect);
    upstream.once('connect', this.onUpstreamConnect);
    upstream.on('timeout', this.onUpstreamConnectTimeout);
    upstream.on('error', this.onUpstreamError);
    upstream.on('close', this.onUpstreamClose);
  }

  private readonly onUpstreamConnectTimeout = (): void => {
    this.upstream?.destroy(connectTimeoutError);
  };

  /**
   * A failed attempt: count it against the server (passive check) and try the next one. The
   * failed socket is detached first, so its late 'close' cannot be mistaken for the next
   * attempt's.
   */
  private failAttempt(err: Error): void {
    const failed = this.upstream!;
    failed.removeAllListeners();
    failed.on('error', ignoreError);
    failed.destroy();
    this.upstream = undefined;
    this.upstreamClosed = true;

    const server = this.server!;
    this.server = undefined;
    const detail = `connect ${errorCode(err)}`;
    this.ctx.pool.recordConnect(server, false, detail);
    this.ctx.pool.release(server);
    if (this.ctx.logger.isLevelEnabled('debug')) {
      this.ctx.logger.debug({ id: this.id, server: server.label, attempt: this.attempts, err: detail }, 'upstream connect failed');
    }
    if (this.downstreamClosed) {
      this.maybeFinish();
      return;
    }
    (this.tried ??= new Set()).add(server);
    if (this.attempts > this.ctx.pool.config.retries) {
      this.endReason = 'connect-failed';
      this.ctx.counters.refused++;
      this.downstream.destroy();
      return;
    }
    this.connectNext();
  }

  private readonly onUpstreamConnect = (): void => {
    const upstream = this.upstream!;
    const server = this.server!;
    this.connected = true;
    this.ctx.pool.recordConnect(server, true, 'ok');
    upstream.setTimeout(0);
    upstream.off('timeout', this.onUpstreamConnectTimeout);
    if (this.downstreamClosed) {
      upstream.destroy();
      return;
    }

    upstream.on('data', this.onUpstreamData);
    upstream.on('end', this.onUpstreamEnd);
    upstream.on('drain', this.onUpstreamDrain);
    this.downstream.on('drain', this.onDownstreamDrain);

    // The PROXY header and any bytes the client already sent leave in one write.
    const version = this.ctx.pool.config.sendProxyProtocol;
    const pending = this.pending;
    if (version !== undefined || pending.length > 0) {
      upstream.cork();
      if (version !== undefined) {
        upstream.write(
          buildProxyHeader(version, {
            transport: 'tcp',
            source: { address: this.origin.ip, port: this.origin.port },
            destination: { address: this.origin.localIp, port: this.origin.localPort },
            uniqueId: Buffer.from(this.id, 'latin1'),
          }),
        );
      }
      for (const chunk of pending) upstream.write(chunk);
      upstream.uncork();
    }
    this.pending = emptyPending;

    const downstream = this.downstream;
    downstream.off('data', this.onEarlyDownstreamData);
    downstream.on('data', this.onDownstreamData);
    if (downstream.readableEnded) upstream.end();
    else downstream.resume();
  };

  // ---- data phase: manual pumps with backpressure (cheaper than pipe(), same semantics) ------

  private readonly onEarlyDownstreamData = (chunk: Buffer): void => {
    this.pending.push(chunk);
    // Hold one chunk (to send with the PROXY header) and let TCP flow control do the rest.
    this.downstream.pause();
  };

  private readonly onDownstreamData = (chunk: Buffer): void => {
    if (!this.upstream!.write(chunk)) this.downstream.pause();
  };

  private readonly onUpstreamData = (chunk: Buffer): void => {
    if (!this.downstream.write(chunk)) this.upstream!.pause();
  };

  private readonly onUpstreamDrain = (): void => {
    this.downstream.resume();
  };

  private readonly onDownstreamDrain = (): void => {
    this.upstream?.resume();
  };

  private readonly onDownstreamEnd = (): void => {
    // Before connect, end() is passed on in onUpstreamConnect (readableEnded).
    if (this.connected) this.upstream!.end();
  };

  private readonly onUpstreamEnd = (): void => {
    this.downstream.end();
  };

  private readonly onIdleTimeout = (): void => {
    this.endReason ??= 'idle-timeout';
    this.downstream.destroy();
    this.upstream?.destroy();
  };

  // ---- errors and close ----------------------------------------------------------------------

  private readonly onDownstreamError = (err: Error): void => {
    const reset = isReset(err);
    this.endReason ??= reset ? 'downstream-reset' : 'downstream-error';
    const upstream = this.upstream;
    if (upstream !== undefined && !upstream.destroyed) {
      if (reset && this.connected) upstream.resetAndDestroy();
      else upstream.destroy();
    }
  };

  private readonly onUpstreamError = (err: Error): void => {
    if (!this.connected) {
      this.failAttempt(err);
      return;
    }
    const reset = isReset(err);
    this.endReason ??= reset ? 'upstream-reset' : 'upstream-error';
    if (!this.downstream.destroyed) {
      if (reset) this.downstream.resetAndDestroy();
      else this.downstream.destroy();
    }
  };

  private readonly onUpstreamClose = (): void => {
    this.upstreamClosed = true;
    if (!this.connected) {
      // The attempt was abandoned because the client left (failures go through failAttempt).
      if (this.server !== undefined) {
        this.ctx.pool.release(this.server);
        this.server = undefined;
      }
    } else if (!this.downstream.writableEnded) {
      // Nothing more can come from upstream: flush what is queued to the client, then FIN.
      this.downstream.end();
    }
    this.maybeFinish();
  };

  /**
   * A clean close of the downstream (both directions finished) leaves the upstream to flush
   * the client's last bytes and close by itself; only an abnormal close tears it down.
   */
  private readonly onDownstreamClose = (hadError: boolean): void => {
    this.downstreamClosed = true;
    const upstream = this.upstream;
    if (!this.connected) this.endReason ??= 'downstream-closed-early';
    if (upstream !== undefined && !upstream.destroyed && (hadError || !this.connected)) upstream.destroy();
    this.maybeFinish();
  };

  private maybeFinish(): void {
    if (this.finished || !this.downstreamClosed || !this.upstreamClosed) return;
    this.finished = true;
    if (this.server !== undefined) this.ctx.pool.release(this.server);
    this.ctx.onFinish(this);
    if (this.ctx.logConnections) this.log();
  }

  private log(): void {
    const downstream = this.downstream;
    this.ctx.logger.info(
      {
        id: this.id,
        downstream: formatAddress(this.origin.ip, this.origin.port),
        server: this.server?.label ?? null,
        attempts: this.attempts,
        bytesIn: downstream.bytesRead,
        bytesOut: downstream.bytesWritten,
        durationMs: Date.now() - this.startedAt,
        end: this.endReason ?? 'closed',
      },
      'connection closed',
    );
  }
}

const emptyPending: Buffer[] = [];
const ignoreError = (): void => {};

const connectTimeoutError = Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' });

function errorCode(err: Error): string {
  return (err as NodeJS.ErrnoException).code ?? err.message;
}

function isReset(err: Error): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ECONNRESET' || code === 'EPIPE';
}

function formatAddress(ip: string, port: number): string {
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}
