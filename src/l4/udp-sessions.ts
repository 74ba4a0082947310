/**
 * The UDP session table and the decisions made on it, as pure logic with an injected clock,
 * so expiry, the size cap, the `responses` rule and migration are unit-tested without
 * sockets or sleeping. UdpListener owns one table; UdpSession is what it stores.
 *
 * Expiry is ONE periodic sweep over the table (no timer per session): a session idle for
 * `sessionTimeout` or longer is removed by the first sweep after that, so a session lives at
 * most `sessionTimeout + sweepInterval` without traffic. Sweeping 100,000 sessions costs a
 * few milliseconds once a second; a timer per session would cost a timer-list insert and
 * removal on every datagram.
 */

/** What the table needs of a session: its key and when it last saw a datagram either way. */
export interface TableEntry {
  /** The downstream `address:port` as the listener socket reported it. */
  readonly key: string;
  /** Clock time of the last datagram in either direction (see SessionTable.touch). */
  lastActivity: number;
}

export interface SessionTableOptions {
  /** Idle time after which a session is swept, in ms (config `udp.sessionTimeout`). */
  sessionTimeout: number;
  /** Sessions allowed at once (config `udp.maxSessions`); `add` refuses beyond it. */
  maxSessions: number;
  /** Monotonic milliseconds. */
  now: () => number;
}

/** Longest pause between sweeps: expiry is at most this late. */
const MAX_SWEEP_INTERVAL_MS = 1_000;
/** Shortest pause between sweeps, so a tiny sessionTimeout cannot make the sweep spin. */
const MIN_SWEEP_INTERVAL_MS = 10;

/**
 * The sweep period for a session timeout: min(timeout / 2, 1 s), at least 10 ms.
 * Half the timeout keeps a session's life within 1.5 × timeout when the timeout is short.
 */
export function sweepIntervalFor(sessionTimeout: number): number {
  return Math.max(MIN_SWEEP_INTERVAL_MS, Math.min(Math.floor(sessionTimeout / 2), MAX_SWEEP_INTERVAL_MS));
}

/**
 * Sessions by downstream `address:port`, bounded by `maxSessions`.
 *
 * The table never closes anything itself: `sweep` hands each expired session to the caller,
 * which closes its socket and releases its server.
 */
export class SessionTable<S extends TableEntry> {
  readonly sessionTimeout: number;
  readonly maxSessions: number;
  readonly sweepInterval: number;
  private readonly now: () => number;
  private readonly sessions = new Map<string, S>();
  /** The paused sweep pass, if any, and the clock reading it started with. */
  private cursor: MapIterator<S> | undefined;
  private passNow = 0;

  constructor(options: SessionTableOptions) {
    this.sessionTimeout = options.sessionTimeout;
    this.maxSessions = options.maxSessions;
    this.now = options.now;
    this.sweepInterval = sweepIntervalFor(options.sessionTimeout);
  }

  get size(): number {
    return this.sessions.size;
  }

  /** True when `add` would refuse: datagrams from new downstreams are to be dropped. */
  get full(): boolean {
    return this.sessions.size >= this.maxSessions;
  }

  get(key: string): S | undefined {
    return this.sessions.get(key);
  }

  /**
   * Adds a session and stamps its activity now. Returns false (and adds nothing) when the
   * table is full or the key is taken; the caller drops the datagram and counts it.
   */
  add(session: S): boolean {
    if (this.sessions.size >= this.maxSessions || this.sessions.has(session.key)) return false;
    session.lastActivity = this.now();
    this.sessions.set(session.key, session);
    return true;
  }

  /** Records a datagram of the session (either direction): its idle time restarts. */
  touch(session: S): void {
    session.lastActivity = this.now();
  }

  /**
   * Removes a session (ended by `responses`, an error, migration failure or shutdown).
   * Only removes the entry if it is this very session, so a stale reference cannot remove a
   * newer session of the same downstream. Returns whether it was removed.
   */
  delete(session: S): boolean {
    if (this.sessions.get(session.key) !== session) return false;
    this.sessions.delete(session.key);
    return true;
  }

  /**
   * Sweeps: removes every session idle for `sessionTimeout` or longer and passes it to
   * `expired` (after removal, so `expired` may add a new session for the same key).
   * `live`, when given, sees every session that stays, with the pass's clock reading: the
   * listener uses it to drop buffers kept for a short replay window.
   *
   * `budget` caps the sessions expired by this call. Closing a session's socket costs tens
   * of microseconds, so a flood that stops would otherwise stall the event loop for seconds
   * when 100,000 sessions expire together. When the budget runs out the pass pauses
   * (`sweeping` is true) and the next call resumes where it stopped: a Map iterator stays
   * valid across deletions and insertions, so no session is scanned twice in one pass.
   * @returns how many sessions expired in this call
   */
  sweep(expired: (session: S) => void, live?: (session: S, now: number) => void, budget = Number.POSITIVE_INFINITY): number {
    if (this.cursor === undefined) {
      this.cursor = this.sessions.values();
      this.passNow = this.now();
    }
    const now = this.passNow;
    const deadline = now - this.sessionTimeout;
    const cursor = this.cursor;
    let count = 0;
    while (count < budget) {
      const next = cursor.next();
      if (next.done === true) {
        this.cursor = undefined;
        return count;
      }
      const session = next.value;
      if (session.lastActivity <= deadline) {
        this.sessions.delete(session.key);
        count++;
        expired(session);
      } else if (live !== undefined) {
        live(session, now);
      }
    }
    return count;
  }

  /** True while a sweep pass has paused on its budget; the next `sweep` call resumes it. */
  get sweeping(): boolean {
    return this.cursor !== undefined;
  }

  /** Removes and returns every session (shutdown). */
  drain(): S[] {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    this.cursor = undefined;
    return all;
  }
}

/**
 * The `responses: N` rule, as nginx's `proxy_responses`: N replies are expected for EACH
 * datagram from the downstream, and the session ends once every datagram sent so far has
 * had its N replies. For the common case (one query, N = 1) that is "ends after the first
 * reply", so each DNS query is balanced on its own; a client that pipelines queries on one
 * source port (dnsperf) keeps its session until the last outstanding reply has arrived,
 * so no reply is ever lost by closing the upstream socket too early.
 * @param responses config `udp.responses`; undefined = unlimited, the session never ends this way
 * @param datagramsIn datagrams the session sent upstream on its current server
 * @param replies replies received from that server
 */
export function repliesComplete(responses: number | undefined, datagramsIn: number, replies: number): boolean {
  return responses !== undefined && replies >= responses * datagramsIn;
}

/**
 * Whether a session must move to another server before forwarding its next datagram: its
 * server is no longer ready (health check or passive check marked it down, or an operator
 * disabled it). The session then picks again with no exclusions; a server that is merely
 * full or weighted 0 keeps its existing sessions, as a TCP connection would.
 */
export function mustMigrate(server: { readonly ready: boolean }): boolean {
  return !server.ready;
}
