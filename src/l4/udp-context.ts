import type { Socket } from 'node:dgram';
import type { Logger } from '../core/log.ts';
import type { Pool } from '../pool/pool.ts';
import type { DropLog } from './udp-drops.ts';
import type { DatagramSender, SendFailure } from './udp-send.ts';
import type { UpstreamLinks } from './udp-upstream.ts';
import type { UdpSession } from './udp-session.ts';
import type { SessionTable } from './udp-sessions.ts';

/** Counters of one UDP listener: plain numbers, bumped on the data path. */
export interface UdpListenerCounters {
  /** Datagrams received from downstreams (including dropped ones). */
  datagramsIn: number;
  /** Replies sent back to downstreams. */
  datagramsOut: number;
  /** Sessions ever opened. */
  sessions: number;
  /** Sessions moved because their server stopped being ready. */
  migrations: number;
  /** Sessions moved because their server refused (ICMP unreachable). */
  failovers: number;
}

/**
 * What every UdpSession of one listener shares. Built once per listener so a session holds
 * one reference instead of copying fields.
 */
export interface UdpListenerContext {
  readonly pool: Pool;
  readonly logger: Logger;
  /** logger.isLevelEnabled('info'), cached: the per-session log line costs nothing at warn. */
  readonly logSessions: boolean;
  /** Config `udp.responses`. */
  readonly responses: number | undefined;
  /** Other servers a session may move to after its server refused (config pool.retries). */
  readonly retries: number;
  readonly table: SessionTable<UdpSession>;
  readonly drops: DropLog;
  readonly counters: UdpListenerCounters;
  /** Monotonic milliseconds. */
  readonly now: () => number;
  /** The listener's socket: replies go back to downstreams through it. */
  readonly downstream: Socket;
  /** The sessions' upstream sockets, and the park of reusable ones. */
  readonly links: UpstreamLinks;
  /** Sends every datagram, both ways. */
  readonly sender: DatagramSender;
  /** A reply the listener socket could not send: counted as a 'send-failed' drop. */
  readonly onReplyFailed: SendFailure;
  /** Bytes held in all sessions' replay buffers, and the cap on them (see UdpSession). */
  readonly replay: { bytes: number; readonly limit: number };
}
