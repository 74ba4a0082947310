import { connect, type Socket } from 'node:net';
import type { UpstreamServer } from '../pool/server.ts';
import { buildProxyHeader } from '../proxy-protocol/build.ts';
import { normalizeIp } from '../core/address.ts';
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
  /**
   * The address the client connected to: the PROXY header's destination, or undefined for
   * "this socket's local address", read (a getsockname syscall) only when a PROXY header is sent.
   */
  localIp?: string;
  localPort?: number;
}

/**
 * Both sockets of a connection point back to it through this symbol, so the event handlers
 * can be shared functions (`this` is the socket) instead of a dozen closures allocated per
 * connection: fewer allocations per accept and less memory per idle connection.
 */
const kConnection = Symbol('switchyard.tcpConnection');
type BoundSocket = Socket & { [kConnection]: TcpConnection };

let nextSerial = 0;
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
 * - Every chunk either way (and every 'drain') sets `active`; the listener's idle sweep uses
 *   it to implement `timeouts.idle` without a timer refresh per chunk.
 * - `finish` runs exactly once, after both sockets closed: it releases the server, removes the
 *   connection from the listener and writes the one log line.
 */
export class TcpConnection {
  private readonly serial: number;
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
  private pending: Buffer[] | undefined;
  private connected = false;
  private endReason: TcpEndReason | undefined;
  private downstreamClosed = false;
  private upstreamClosed = true;
  private finished = false;
  /** Traffic seen since the last idle sweep. */
  active = true;
  /** When the idle sweep last saw this connection active (its clock, ms). */
  lastActiveAt = 0;

  constructor(ctx: TcpListenerContext, downstream: Socket, origin: DownstreamOrigin, early: Buffer | undefined) {
    this.serial = nextSerial++;
    this.ctx = ctx;
    this.downstream = downstream;
    this.origin = origin;
    this.startedAt = Date.now();
    if (early !== undefined && early.length > 0) this.pending = [early];

    (downstream as BoundSocket)[kConnection] = this;
    downstream.on('data', TcpConnection.onEarlyDownstreamData);
    downstream.on('end', TcpConnection.onDownstreamEnd);
    downstream.on('error', TcpConnection.onDownstreamError);
    downstream.on('close', TcpConnection.onDownstreamClose);
    if (downstream.isPaused()) downstream.resume();
    this.connectNext();
  }

  /** The connection's id: in its log line and, with PROXY v2, in the UNIQUE_ID TLV. */
  get id(): string {
    return idPrefix + this.serial.toString(16).padStart(6, '0');
  }

  /**
   * Called by the listener's idle sweep every few ms with its clock. Closes the connection when
   * it saw no traffic either way for `idleMs`.
   */
  sweepIdle(now: number, idleMs: number): void {
    if (this.active) {
      this.active = false;
      this.lastActiveAt = now;
    } else if (now - this.lastActiveAt >= idleMs) {
      this.endReason ??= 'idle-timeout';
      this.destroyBoth();
    }
  }

  /** Ends the connection now (drain deadline passed). */
  terminate(): void {
    this.endReason ??= 'shutdown';
    this.destroyBoth();
  }

  private destroyBoth(): void {
    this.downstream.destroy();
    this.upstream?.destroy();
  }

  // ---- connect phase -------------------------------------------------------------------------

  private connectNext(): void {
    const pick = this.ctx.pool.pick(this.origin.ip, this.tried);
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
    const upstream = connect({
      host: server.connectHost,
      port: server.port,
      noDelay: true,
      allowHalfOpen: true,
      onread: { buffer: upstreamReadBuffer, callback: TcpConnection.onUpstreamRead },
    });
    this.upstream = upstream;
    (upstream as BoundSocket)[kConnection] = this;
    upstream.setTimeout(this.ctx.config.timeouts.connect);
    upstream.once('connect', TcpConnection.onUpstreamConnect);
    upstream.on('timeout', TcpConnection.onUpstreamConnectTimeout);
    upstream.on('error', TcpConnection.onUpstreamError);
    upstream.on('close', TcpConnection.onUpstreamClose);
  }

  private static onUpstreamConnectTimeout(this: Socket): void {
    this.destroy(connectTimeoutError);
  }

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

  private static onUpstreamConnect(this: Socket): void {
    const c = (this as BoundSocket)[kConnection];
    const upstream = this;
    c.connected = true;
    c.ctx.pool.recordConnect(c.server!, true, 'ok');
    upstream.setTimeout(0);
    upstream.off('timeout', TcpConnection.onUpstreamConnectTimeout);
    if (c.downstreamClosed) {
      upstream.destroy();
      return;
    }
    upstream.on('end', TcpConnection.onUpstreamEnd);
    upstream.on('drain', TcpConnection.onUpstreamDrain);
    c.downstream.on('drain', TcpConnection.onDownstreamDrain);

    // The PROXY header and any bytes the client already sent leave in one write.
    const version = c.ctx.pool.config.sendProxyProtocol;
    const pending = c.pending;
    if (version !== undefined || pending !== undefined) {
      upstream.cork();
      if (version !== undefined) {
        upstream.write(
          buildProxyHeader(version, {
            transport: 'tcp',
            source: { address: c.origin.ip, port: c.origin.port },
            destination: {
              address: c.origin.localIp ?? normalizeIp(c.downstream.localAddress ?? ''),
              port: c.origin.localPort ?? c.downstream.localPort ?? 0,
            },
            uniqueId: Buffer.from(c.id, 'latin1'),
          }),
        );
      }
      if (pending !== undefined) for (const chunk of pending) upstream.write(chunk);
      upstream.uncork();
      c.pending = undefined;
    }

    const downstream = c.downstream;
    downstream.off('data', TcpConnection.onEarlyDownstreamData);
    downstream.on('data', TcpConnection.onDownstreamData);
    if (downstream.readableEnded) upstream.end();
    else downstream.resume();
  }

  // ---- data phase: manual pumps with backpressure (cheaper than pipe(), same semantics) ------

  private static onEarlyDownstreamData(this: Socket, chunk: Buffer): void {
    const c = (this as BoundSocket)[kConnection];
    (c.pending ??= []).push(chunk);
    // Hold one chunk (to send with the PROXY header) and let TCP flow control do the rest.
    this.pause();
  }

  private static onDownstreamData(this: Socket, chunk: Buffer): void {
    const c = (this as BoundSocket)[kConnection];
    c.active = true;
    if (!c.upstream!.write(chunk)) this.pause();
  }

  /**
   * Upstream → downstream without a buffer allocation per read: reads land in a shared buffer
   * (`onread`), and a view of it is written to the downstream. When that write completed
   * synchronously (the common case: the kernel took it all) the buffer is free again; when it
   * was queued, the queue still references it, so the next read gets a fresh buffer. While a
   * backlog exists, reads are copied at their exact size instead, so a slow reader pins at
   * most one shared buffer, never one per small chunk.
   * Returning false pauses the upstream (backpressure) until the downstream drains.
   * Measured (iperf3 -R through the balancer): 4.7-5.3 → 9.1-11.7 Gbit/s.
   */
  private static onUpstreamRead(this: Socket, bytes: number, buffer: Buffer): boolean {
    const c = (this as BoundSocket)[kConnection];
    c.active = true;
    const downstream = c.downstream;
    if (downstream.writableLength > 0) {
      const copy = Buffer.allocUnsafe(bytes);
      buffer.copy(copy, 0, 0, bytes);
      return downstream.write(copy);
    }
    const flowing = downstream.write(buffer.subarray(0, bytes));
    if (downstream.writableLength > 0) sharedReadBuffer = Buffer.allocUnsafe(READ_BUFFER_SIZE);
    return flowing;
  }

  private static onUpstreamDrain(this: Socket): void {
    const c = (this as BoundSocket)[kConnection];
    c.active = true;
    c.downstream.resume();
  }

  private static onDownstreamDrain(this: Socket): void {
    const c = (this as BoundSocket)[kConnection];
    c.active = true;
    c.upstream?.resume();
  }

  private static onDownstreamEnd(this: Socket): void {
    const c = (this as BoundSocket)[kConnection];
    // Before connect, end() is passed on in onUpstreamConnect (readableEnded).
    if (c.connected) c.upstream!.end();
  }

  private static onUpstreamEnd(this: Socket): void {
    const downstream = (this as BoundSocket)[kConnection].downstream;
    if (!downstream.writableEnded) downstream.end();
  }

  // ---- errors and close ----------------------------------------------------------------------

  private static onDownstreamError(this: Socket, err: Error): void {
    const c = (this as BoundSocket)[kConnection];
    const reset = isReset(err);
    c.endReason ??= reset ? 'downstream-reset' : 'downstream-error';
    const upstream = c.upstream;
    if (upstream !== undefined && !upstream.destroyed) {
      if (reset && c.connected) upstream.resetAndDestroy();
      else upstream.destroy();
    }
  }

  private static onUpstreamError(this: Socket, err: Error): void {
    const c = (this as BoundSocket)[kConnection];
    if (!c.connected) {
      c.failAttempt(err);
      return;
    }
    const reset = isReset(err);
    c.endReason ??= reset ? 'upstream-reset' : 'upstream-error';
    if (!c.downstream.destroyed) {
      if (reset) c.downstream.resetAndDestroy();
      else c.downstream.destroy();
    }
  }

  private static onUpstreamClose(this: Socket): void {
    const c = (this as BoundSocket)[kConnection];
    c.upstreamClosed = true;
    if (!c.connected) {
      // The attempt was abandoned because the client left (failures go through failAttempt).
      if (c.server !== undefined) {
        c.ctx.pool.release(c.server);
        c.server = undefined;
      }
    } else if (!c.downstream.writableEnded) {
      // Nothing more can come from upstream: flush what is queued to the client, then FIN.
      c.downstream.end();
    }
    c.maybeFinish();
  }

  /**
   * A clean close of the downstream (both directions finished) leaves the upstream to flush
   * the client's last bytes and close by itself; only an abnormal close tears it down.
   */
  private static onDownstreamClose(this: Socket, hadError: boolean): void {
    const c = (this as BoundSocket)[kConnection];
    c.downstreamClosed = true;
    const upstream = c.upstream;
    if (!c.connected) c.endReason ??= 'downstream-closed-early';
    if (upstream !== undefined && !upstream.destroyed && (hadError || !c.connected)) upstream.destroy();
    c.maybeFinish();
  }

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

const ignoreError = (): void => {};

/** Size of the shared upstream read buffer: as large as Node's own per-read allocation. */
const READ_BUFFER_SIZE = 64 * 1024;
let sharedReadBuffer = Buffer.allocUnsafe(READ_BUFFER_SIZE);
function upstreamReadBuffer(): Buffer {
  return sharedReadBuffer;
}

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
