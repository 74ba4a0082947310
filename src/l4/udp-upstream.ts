import { createSocket, type Socket } from 'node:dgram';
import { isIP } from 'node:net';
import type { UpstreamServer } from '../pool/server.ts';
import type { DropLog } from './udp-drops.ts';
import { literalLookup } from './udp-lookup.ts';
import type { SendFailure } from './udp-send.ts';

/** What a link reports to the session that holds it. */
export interface LinkOwner {
  /** A datagram from the server. */
  onLinkReply(reply: Buffer): void;
  /** The socket failed: a refusal (ECONNREFUSED...), a send failure, or bind/connect. */
  onLinkError(err: NodeJS.ErrnoException): void;
  /** The connect completed after acquire() returned (only on Node without connectSync). */
  onLinkConnected(): void;
}

/**
 * One connected upstream socket: a UDP session's path to its server. Connected, so the
 * kernel matches replies to it without parsing and reports ICMP port unreachable from the
 * server as ECONNREFUSED on it. Its listeners are installed once and forward to whichever
 * session holds it (`owner`), so handing a parked link to a new session costs nothing.
 */
export class UpstreamLink {
  readonly server: UpstreamServer;
  readonly socket: Socket;
  owner: LinkOwner | undefined;
  /** Datagrams can be sent (always at once with connectSync; else after 'connect'). */
  connected = false;
  /** Clock time it was parked; meaningful while parked only. */
  parkedAt = 0;
  private readonly links: UpstreamLinks;
  private closed = false;
  /** Inside connect(): errors emitted meanwhile are connect()'s result, not the owner's. */
  private connecting = false;
  private inlineError: NodeJS.ErrnoException | undefined;

  constructor(links: UpstreamLinks, server: UpstreamServer, owner: LinkOwner) {
    this.links = links;
    this.server = server;
    this.owner = owner;
    this.socket = createSocket({ type: isIP(server.connectHost) === 6 ? 'udp6' : 'udp4', lookup: literalLookup });
    this.socket.on('message', this.onMessage);
    this.socket.on('error', this.onError);
  }

  /** Send failures of this socket (reported on a later tick by the sender). */
  readonly onSendFailed: SendFailure = (err) => {
    this.owner?.onLinkError(err);
  };

  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * Binds to an ephemeral port and connects. Returns what failed inline (bind EMFILE, with
   * syscall 'bind'; connect), the socket then being of no use. Without connectSync a connect
   * failure comes later, to the owner's onLinkError.
   */
  connect(connectSync: boolean): NodeJS.ErrnoException | undefined {
    const server = this.server;
    const socket = this.socket;
    this.connecting = true;
    try {
      if (!connectSync) {
        socket.once('connect', this.onConnect);
        // No callback: a connect failure arrives as 'error' with syscall 'connect'.
        socket.connect(server.port, server.connectHost);
        // With an IP literal, bind and connect completed inside connect() ('connect' is only
        // emitted on the next tick), so the first datagram can go out at once, unqueued.
        if (this.inlineError === undefined && isConnected(socket)) this.connected = true;
        return this.inlineError;
      }
      // Bound first through bind(), which literalLookup completes inline: connectSync would
      // bind with bindSync, which also asks the kernel for the address it returns
      // (getsockname, ~10% of a DNS-style session's instructions). A bind failure is
      // emitted as 'error' inside bind().
      socket.bind({ port: 0, exclusive: true });
      if (this.inlineError !== undefined) return this.inlineError;
      // connect(2) on UDP only records the peer: done inline, the first datagram goes out at once.
      socket.connectSync(server.port, server.connectHost);
      this.connected = true;
      return undefined;
    } catch (err) {
      const failure = err as NodeJS.ErrnoException;
      return failure.syscall === undefined ? Object.assign(failure, { syscall: 'connect' }) : failure;
    } finally {
      this.connecting = false;
    }
  }

  /** Closes the socket. Idempotent; whatever Node still reports for it is ignored. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.owner = undefined;
    const socket = this.socket;
    socket.off('message', this.onMessage);
    socket.off('error', this.onError);
    socket.off('connect', this.onConnect);
    socket.on('error', ignore);
    try {
      socket.close();
    } catch {
      // Already closed: nothing left to release.
    }
  }

  private readonly onMessage = (reply: Buffer): void => {
    const owner = this.owner;
    if (owner !== undefined) owner.onLinkReply(reply);
    else this.links.strayReply(this);
  };

  private readonly onError = (err: NodeJS.ErrnoException): void => {
    if (this.connecting) {
      this.inlineError ??= err;
      return;
    }
    const owner = this.owner;
    if (owner !== undefined) owner.onLinkError(err);
    else this.links.discard(this);
  };

  private readonly onConnect = (): void => {
    if (this.connected || this.closed) return;
    this.connected = true;
    this.owner?.onLinkConnected();
  };
}

export interface UpstreamLinksOptions {
  drops: DropLog;
  /** Monotonic milliseconds. */
  now: () => number;
  /** A parked link unused for this long is closed by the sweep (config udp.sessionTimeout). */
  maxParkedMs: number;
  /** Links parked at once, all servers together; more are closed instead of parked. */
  maxParked: number;
  /** Use Socket.connectSync (Node 24.19+); false falls back to connect(). */
  connectSync: boolean;
}

/**
 * The upstream sockets of one UDP listener, and the park where sessions that ended with
 * every reply in (`responses`) leave theirs for the next session to the same server.
 *
 * Why: with `responses: 1` (DNS) every query is a session of its own, and a new socket per
 * session is most of its cost — socket, bind, connect, close, two epoll changes and Node's
 * handle objects. A link whose session got all its replies has nothing more to receive from
 * a well-behaved server, so it can carry the next session. Reuse is FIFO (the link parked
 * longest goes first), so a stray extra reply has the most time to show up while parked: a
 * datagram arriving on a parked link is dropped ('late-reply') and the link closed, never
 * handed to another session. The server sees fewer distinct source ports, as with pooled
 * upstream connections in TCP proxies.
 *
 * Bounds: at most `maxParked` links parked (each one socket and descriptor), each for at
 * most `maxParkedMs` without use. Sessions that end any other way (idle, error, moved)
 * close their socket: a server that stops answering may still send later.
 */
export class UpstreamLinks {
  private readonly options: UpstreamLinksOptions;
  /** Parked links per server, oldest first. */
  private readonly parked = new Map<UpstreamServer, UpstreamLink[]>();
  private parkedCount = 0;
  /** Links handed out from the park (a counter for tests and the bench notes). */
  reused = 0;

  constructor(options: UpstreamLinksOptions) {
    this.options = options;
  }

  /** Links parked now. */
  get parkedSize(): number {
    return this.parkedCount;
  }

  /**
   * A link to `server` for `owner`: the longest-parked one, else a new connected socket.
   * Returns the error instead when a new socket cannot be made (EMFILE: out of descriptors).
   */
  acquire(server: UpstreamServer, owner: LinkOwner): UpstreamLink | NodeJS.ErrnoException {
    const queue = this.parked.get(server);
    if (queue !== undefined && queue.length > 0) {
      const link = queue.shift()!;
      this.parkedCount--;
      link.owner = owner;
      this.reused++;
      return link;
    }
    const link = new UpstreamLink(this, server, owner);
    const failure = link.connect(this.options.connectSync);
    if (failure === undefined) return link;
    link.close();
    return failure;
  }

  /**
   * Gives a link back. `reusable` (its session ended with every reply in) parks it while
   * there is room; anything else closes it.
   */
  release(link: UpstreamLink, reusable: boolean): void {
    link.owner = undefined;
    if (!reusable || !link.connected || link.isClosed || this.parkedCount >= this.options.maxParked) {
      link.close();
      return;
    }
    link.parkedAt = this.options.now();
    let queue = this.parked.get(link.server);
    if (queue === undefined) {
      queue = [];
      this.parked.set(link.server, queue);
    }
    queue.push(link);
    this.parkedCount++;
  }

  /** Closes links parked for maxParkedMs or longer. Called by the listener's sweep. */
  sweep(now: number): void {
    for (const queue of this.parked.values()) {
      let expired = 0;
      while (expired < queue.length && now - queue[expired]!.parkedAt >= this.options.maxParkedMs) expired++;
      if (expired === 0) continue;
      for (const link of queue.splice(0, expired)) link.close();
      this.parkedCount -= expired;
    }
  }

  /** A datagram on a parked link: the server sends more than `responses` replies. */
  strayReply(link: UpstreamLink): void {
    this.options.drops.count('late-reply');
    this.discard(link);
  }

  /** Takes a parked link out of the park and closes it. */
  discard(link: UpstreamLink): void {
    const queue = this.parked.get(link.server);
    const index = queue === undefined ? -1 : queue.indexOf(link);
    if (index >= 0) {
      queue!.splice(index, 1);
      this.parkedCount--;
    }
    link.close();
  }

  /** Closes every parked link (listener shutdown). */
  closeParked(): void {
    for (const queue of this.parked.values()) for (const link of queue) link.close();
    this.parked.clear();
    this.parkedCount = 0;
  }
}

const ignore = (): void => {};

/** Whether a dgram socket's connect has completed (Node exposes it only through remoteAddress). */
function isConnected(socket: Socket): boolean {
  try {
    socket.remoteAddress();
    return true;
  } catch {
    return false;
  }
}
