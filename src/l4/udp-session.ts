import { formatEndpoint } from '../core/address.ts';
import type { UpstreamServer } from '../pool/server.ts';
import type { UdpListenerContext } from './udp-context.ts';
import { repliesComplete, type TableEntry } from './udp-sessions.ts';
import { UpstreamLink, type LinkOwner } from './udp-upstream.ts';

/** Why a session (or its part on one server) ended; the `end` field of its log line. */
export type UdpSessionEnd =
  | 'idle' // no datagram either way for sessionTimeout
  | 'responses' // every datagram had its `responses` replies
  | 'server-down' // its server stopped being ready; the next datagram moved it (or found none ready)
  | 'shutdown'
  | 'error'; // the server refused (ICMP unreachable) or the upstream socket failed

/**
 * How long datagrams from the downstream are kept for replay in case the server refuses
 * them. ICMP port unreachable comes back within a round trip, so a second is plenty; the
 * sweep drops older buffers, so retained memory follows recent traffic, not the number of
 * sessions.
 */
export const REPLAY_WINDOW_MS = 1_000;

/**
 * Datagrams sent since the server's last reply that are kept for replay. A client that
 * pipelines (dnsperf: many queries in flight on one source port) has this many in flight
 * when its server dies; all of them are replayed, not just the last.
 */
const MAX_REPLAY = 32;

/**
 * Datagrams held while the upstream socket is connecting (Node cannot send on a socket
 * before its connect completes, one or two event-loop turns). Beyond this they are dropped.
 */
const MAX_QUEUED = 64;

/** Errors that say the server (not this host) cannot be reached: a passive-health failure. */
const UNREACHABLE = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN']);

/**
 * One UDP session: one downstream address:port tied to one connected upstream socket, so
 * the kernel matches replies to the session (no parsing) and reports ICMP port unreachable
 * from the server as ECONNREFUSED on that socket.
 *
 * Contract:
 * - The listener calls `forward` for every datagram from the downstream, after touching the
 *   session in the table (so `lastActivity` is the datagram's arrival time). The session
 *   sends it as is (prefixed with the PROXY v2 header when the pool sends one, in the same
 *   datagram) or queues it until the socket is connected.
 * - Each reply goes back to the downstream through the listener's socket, unchanged. With
 *   `responses`, the session ends once every datagram has had its replies.
 * - Server refused (ECONNREFUSED and friends): a passive-health failure is recorded and the
 *   session moves to another server (excluding the ones that refused, at most `pool.retries`
 *   times until a reply arrives), replaying the datagrams sent since the server's last reply
 *   (recent ones, at most MAX_REPLAY), so a dead server costs the client no lost query.
 * - `migrate` (server no longer ready) moves the session to a freshly picked server.
 * - Moving ends the session's part on the old server: one log line, socket closed, server
 *   released; counters restart for the new server. `end` does the same for the whole
 *   session and removes it from the table. Each successful pick is released exactly once.
 */
export class UdpSession implements TableEntry, LinkOwner {
  readonly key: string;
  /** The downstream as the listener socket reports it (replies are sent here). */
  readonly address: string;
  readonly port: number;
  /** Normalised downstream IP: the ip-hash key and the address in logs and PROXY headers. */
  readonly clientIp: string;
  lastActivity = 0;
  server: UpstreamServer;

  /** Datagrams and bytes from the downstream sent to the current server, and replies back. */
  datagramsIn = 0;
  bytesIn = 0;
  datagramsOut = 0;
  bytesOut = 0;

  private readonly ctx: UdpListenerContext;
  /** PROXY v2 header, built once per session; undefined when the pool sends none. */
  private readonly parts: [Buffer, Buffer] | undefined;
  /** The session's upstream socket (see UpstreamLinks: it may be reused by a later session). */
  private link: UpstreamLink | undefined;
  private queued: Buffer[] | undefined;
  private startedAt: number;
  private ended = false;
  /** Servers that refused since the last reply; allocated on the first refusal only. */
  private tried: Set<UpstreamServer> | undefined;
  private failovers = 0;
  /**
   * Datagrams sent since the server's last reply, oldest first; emptied by a reply and by
   * the sweep once the newest is REPLAY_WINDOW_MS old. Allocated on the first datagram and
   * reused for the session's life.
   */
  private replay: Buffer[] | undefined;
  private replayAt = 0;

  constructor(ctx: UdpListenerContext, key: string, address: string, port: number, clientIp: string, server: UpstreamServer, proxyHeader: Buffer | undefined) {
    this.ctx = ctx;
    this.key = key;
    this.address = address;
    this.port = port;
    this.clientIp = clientIp;
    this.server = server;
    this.parts = proxyHeader === undefined ? undefined : [proxyHeader, proxyHeader];
    this.startedAt = ctx.now();
  }

  /**
   * Opens the upstream socket. Called by the listener once the session is in the table: a
   * local failure (EMFILE) can end the session inside this call, which removes it again.
   */
  start(): void {
    this.open();
  }

  /** One datagram from the downstream (see the class contract). */
  forward(datagram: Buffer): void {
    if (this.ended) {
      // Its socket could not be opened inside start() (the listener still held the reference).
      this.ctx.drops.count('socket-failed');
      return;
    }
    this.datagramsIn++;
    this.bytesIn += datagram.length;
    this.retain(datagram);
    if (this.link!.connected) {
      this.send(datagram);
      return;
    }
    const queued = (this.queued ??= []);
    if (queued.length >= MAX_QUEUED) {
      this.ctx.drops.count('queue-full');
      return;
    }
    queued.push(datagram);
  }

  /**
   * Moves the session to a newly picked server because its own is no longer ready. Returns
   * false when no server could be picked: the session has then ended ('server-down') and the
   * caller's datagram is dropped and counted here.
   */
  migrate(): boolean {
    const ctx = this.ctx;
    const picked = ctx.pool.pick(this.clientIp);
    if (picked.server === undefined) {
      ctx.drops.count(picked.failure);
      this.end('server-down');
      return false;
    }
    ctx.counters.migrations++;
    this.tried = undefined;
    this.failovers = 0;
    // The old server may still answer what it has; replaying to the new one would duplicate.
    this.clearReplay();
    this.moveTo(picked.server, 'server-down', undefined);
    return true;
  }

  /**
   * Ends the session: logs it, closes its socket, releases its server, leaves the table.
   * Idempotent. `quiet` skips the log line, for a session that never got a socket: under a
   * flood those are counted by the rate-limited drop line instead of one line each.
   */
  end(reason: UdpSessionEnd, detail?: string, quiet = false): void {
    if (this.ended) return;
    this.ended = true;
    const ctx = this.ctx;
    ctx.table.delete(this);
    const queued = this.queued;
    if (queued !== undefined) {
      for (let i = 0; i < queued.length; i++) ctx.drops.count(quiet ? 'socket-failed' : 'upstream-failed');
      this.queued = undefined;
    }
    this.clearReplay();
    this.closeSocket(reason === 'responses');
    ctx.pool.release(this.server);
    if (ctx.logSessions && !quiet) this.log(reason, detail, 'session ended');
  }

  /** Called by the sweep for every live session: forgets replay buffers older than the window. */
  forgetStaleReplay(now: number): void {
    if (now - this.replayAt >= REPLAY_WINDOW_MS) this.clearReplay();
  }

  // ---- upstream socket ---------------------------------------------------------------------

  private open(): void {
    const acquired = this.ctx.links.acquire(this.server, this);
    if (acquired instanceof UpstreamLink) this.link = acquired;
    else this.onLinkError(acquired);
  }

  /**
   * Hands the link back: parked for the next session when this one ended with every reply
   * in (`responses`), closed otherwise.
   */
  private closeSocket(reusable = false): void {
    const link = this.link;
    if (link === undefined) return;
    this.link = undefined;
    this.ctx.links.release(link, reusable);
  }

  private send(datagram: Buffer): void {
    const link = this.link!;
    const parts = this.parts;
    if (parts === undefined) {
      // A refusal reported on the NEXT sendmsg (back-to-back datagrams to a dead port, as with
      // pipelined DNS queries) reaches only the send failure callback; that datagram was not
      // sent either.
      this.ctx.sender.send(link.socket, datagram, link.onSendFailed);
    } else {
      // The sender is done with the list when it returns: one array per session serves all.
      parts[1] = datagram;
      this.ctx.sender.send(link.socket, parts, link.onSendFailed);
    }
  }

  /** LinkOwner: the connect completed later (Node without connectSync); sends what waited. */
  onLinkConnected(): void {
    const queued = this.queued;
    if (queued === undefined) return;
    this.queued = undefined;
    for (const datagram of queued) this.send(datagram);
  }

  /** LinkOwner: a reply from the server goes back to the downstream. */
  onLinkReply(reply: Buffer): void {
    if (this.ended) return;
    const ctx = this.ctx;
    ctx.table.touch(this);
    this.datagramsOut++;
    this.bytesOut += reply.length;
    ctx.counters.datagramsOut++;
    this.clearReplay();
    if (this.datagramsOut === 1) {
      // The server answered: passive health resets, and a later refusal is a new incident.
      ctx.pool.recordConnect(this.server, true, 'reply');
      this.tried = undefined;
      this.failovers = 0;
    }
    ctx.sender.sendTo(ctx.downstream, reply, this.port, this.address, ctx.onReplyFailed);
    if (ctx.responses !== undefined && repliesComplete(ctx.responses, this.datagramsIn, this.datagramsOut)) this.end('responses');
  }

  /** LinkOwner: the upstream socket failed (refused, send failed, bind/connect failed). */
  onLinkError(err: NodeJS.ErrnoException): void {
    if (this.ended) return;
    const code = err.code ?? err.message;
    if (UNREACHABLE.has(code)) {
      // Reported on a recvmsg or on a later send, depending on timing: the same event.
      this.failover(code === 'ECONNREFUSED' ? 'ECONNREFUSED (port unreachable)' : code);
    } else if (err.syscall === 'send') {
      // EMSGSIZE, ENOBUFS...: this datagram is lost, the session is fine.
      this.ctx.drops.count('send-failed');
    } else if (err.syscall === 'bind') {
      // No socket (EMFILE/ENFILE: out of file descriptors): not the server's fault, and not a
      // session worth a line of its own; its datagrams count as 'socket-failed' drops.
      this.end('error', `bind ${code}`, true);
    } else {
      this.end('error', `${err.syscall ?? 'udp'} ${code}`);
    }
  }

  /** The server refused: record it, then move to another server and replay (see contract). */
  private failover(detail: string): void {
    const ctx = this.ctx;
    const failed = this.server;
    ctx.pool.recordConnect(failed, false, detail);
    const tried = (this.tried ??= new Set());
    tried.add(failed);
    const picked = this.failovers < ctx.retries ? ctx.pool.pick(this.clientIp, tried) : undefined;
    if (picked?.server === undefined) {
      const lost = this.replay?.length ?? 0;
      for (let i = 0; i < lost; i++) ctx.drops.count('upstream-failed');
      this.end('error', detail);
      return;
    }
    this.failovers++;
    ctx.counters.failovers++;
    // Datagrams still queued were never sent: they go to the new server instead of a replay.
    const replay = this.queued === undefined ? this.takeReplay() : undefined;
    this.moveTo(picked.server, 'error', detail);
    if (replay !== undefined) for (const datagram of replay) this.forward(datagram);
  }

  // ---- replay buffer -------------------------------------------------------------------------

  /**
   * Keeps a datagram for replay: at most MAX_REPLAY per session, and only while the
   * listener's byte budget allows, so a hundred thousand one-way sessions (syslog, statsd:
   * never a reply to clear the buffer) cannot hold gigabytes. Past the budget a datagram is
   * simply not kept: it cannot be replayed, nothing else changes.
   */
  private retain(datagram: Buffer): void {
    const budget = this.ctx.replay;
    const replay = (this.replay ??= []);
    if (replay.length === MAX_REPLAY) budget.bytes -= replay.shift()!.length;
    if (budget.bytes + datagram.length > budget.limit) return;
    budget.bytes += datagram.length;
    replay.push(datagram);
    this.replayAt = this.lastActivity;
  }

  private clearReplay(): void {
    const replay = this.replay;
    if (replay === undefined || replay.length === 0) return;
    const budget = this.ctx.replay;
    for (let i = 0; i < replay.length; i++) budget.bytes -= replay[i]!.length;
    replay.length = 0;
  }

  /** Empties the buffer and returns what it held (undefined when empty). */
  private takeReplay(): Buffer[] | undefined {
    const replay = this.replay;
    if (replay === undefined || replay.length === 0) return undefined;
    const taken = replay.slice();
    this.clearReplay();
    return taken;
  }

  /** Ends the part on the current server (log, close, release) and opens a socket to `server`. */
  private moveTo(server: UpstreamServer, reason: UdpSessionEnd, detail: string | undefined): void {
    const ctx = this.ctx;
    this.closeSocket();
    ctx.pool.release(this.server);
    if (ctx.logSessions) this.log(reason, detail, `session moved to ${server.label}`);
    this.server = server;
    this.datagramsIn = 0;
    this.bytesIn = 0;
    this.datagramsOut = 0;
    this.bytesOut = 0;
    this.startedAt = ctx.now();
    this.open();
  }

  private log(reason: UdpSessionEnd, detail: string | undefined, message: string): void {
    const line: Record<string, unknown> = {
      downstream: formatEndpoint(this.clientIp, this.port),
      server: this.server.label,
      datagramsIn: this.datagramsIn,
      bytesIn: this.bytesIn,
      datagramsOut: this.datagramsOut,
      bytesOut: this.bytesOut,
      durationMs: Math.round(this.ctx.now() - this.startedAt),
      end: reason,
    };
    if (detail !== undefined) line.detail = detail;
    this.ctx.logger.info(line, message);
  }
}
