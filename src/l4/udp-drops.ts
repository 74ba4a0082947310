import type { Logger } from '../core/log.ts';

/** Why a datagram was dropped; the keys of the `dropped` counts in logs and counters. */
export type UdpDropReason =
  /** From a new downstream while the table holds `maxSessions` sessions. */
  | 'sessions-full'
  /** No server of the pool is ready (never queued: the datagram is gone). */
  | 'no-server-ready'
  /** Servers are ready but none can take a session (full, weight 0). */
  | 'no-server-available'
  /** From a new downstream after the listener stopped accepting (draining). */
  | 'not-accepting'
  /** More datagrams than the per-session queue holds arrived before the upstream socket connected. */
  | 'queue-full'
  /** The kernel refused a send (ENOBUFS, EMSGSIZE, ...), either direction. */
  | 'send-failed'
  /** The session's upstream socket failed and no other server could take the datagram. */
  | 'upstream-failed'
  /** No upstream socket could be opened (EMFILE/ENFILE: out of file descriptors). */
  | 'socket-failed'
  /** From a server on a parked upstream socket: more replies than `responses` (see UpstreamLinks). */
  | 'late-reply';

export type UdpDropCounts = Record<UdpDropReason, number>;

export function emptyDropCounts(): UdpDropCounts {
  return {
    'sessions-full': 0,
    'no-server-ready': 0,
    'no-server-available': 0,
    'not-accepting': 0,
    'queue-full': 0,
    'send-failed': 0,
    'upstream-failed': 0,
    'socket-failed': 0,
    'late-reply': 0,
  };
}

/** At most one drop line per this many ms, whatever the flood. */
export const DROP_LOG_INTERVAL_MS = 1_000;

/**
 * Counts dropped datagrams and logs them at warn, rate limited: the first drop after a quiet
 * second is logged at once, later ones are summed and logged at most once per second with the
 * counts by reason since the previous line. A flood therefore writes one line a second,
 * never one per datagram. `flush` (called by the listener's sweep) writes counts left over
 * when the flood stopped between two lines.
 */
export class DropLog {
  /** Drops since the listener started, by reason. Plain numbers, read by tests and metrics. */
  readonly totals: UdpDropCounts = emptyDropCounts();
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly intervalMs: number;
  private sinceLine: UdpDropCounts = emptyDropCounts();
  private pending = 0;
  private lastLineAt = Number.NEGATIVE_INFINITY;

  constructor(logger: Logger, now: () => number, intervalMs = DROP_LOG_INTERVAL_MS) {
    this.logger = logger;
    this.now = now;
    this.intervalMs = intervalMs;
  }

  /** Counts one dropped datagram; writes a line if the last one is old enough. */
  count(reason: UdpDropReason): void {
    this.totals[reason]++;
    this.sinceLine[reason]++;
    this.pending++;
    const now = this.now();
    if (now - this.lastLineAt >= this.intervalMs) this.write(now);
  }

  /** Writes the counts gathered since the last line, if any and if the interval has passed. */
  flush(): void {
    if (this.pending === 0) return;
    const now = this.now();
    if (now - this.lastLineAt >= this.intervalMs) this.write(now);
  }

  /** Total dropped datagrams, all reasons. */
  get total(): number {
    let sum = 0;
    for (const reason in this.totals) sum += this.totals[reason as UdpDropReason];
    return sum;
  }

  private write(now: number): void {
    const counts = this.sinceLine;
    const dropped = this.pending;
    this.sinceLine = emptyDropCounts();
    this.pending = 0;
    this.lastLineAt = now;
    if (!this.logger.isLevelEnabled('warn')) return;
    const byReason: Partial<UdpDropCounts> = {};
    const parts: string[] = [];
    for (const reason in counts) {
      const n = counts[reason as UdpDropReason];
      if (n > 0) {
        byReason[reason as UdpDropReason] = n;
        parts.push(`${reason} ${n}`);
      }
    }
    this.logger.warn({ event: 'udp-drop', dropped, reasons: byReason }, `dropped ${dropped} datagram${dropped === 1 ? '' : 's'}: ${parts.join(', ')}`);
  }
}
