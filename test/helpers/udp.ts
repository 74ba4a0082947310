import { createSocket, type Socket } from 'node:dgram';
import { readdirSync } from 'node:fs';
import { validateConfig } from '../../src/config/load.ts';
import type { UdpListenerConfig } from '../../src/config/schema.ts';
import { UdpListener } from '../../src/l4/udp-listener.ts';
import { Pool } from '../../src/pool/pool.ts';
import { captureLogger } from './log.ts';

// Helpers for UdpListener tests over real loopback sockets: a listener built directly on a
// Pool (no Server), dgram echo servers that tag their replies (so a client learns which
// server answered), clients, and descriptor counts.

export type Teardown = { teardown(fn: () => unknown): void };

export interface EchoServer {
  tag: string;
  port: number;
  host: string;
  /** Every datagram received, as received (PROXY header included). */
  received: Buffer[];
  /** Closes the socket: its port then answers with ICMP port unreachable. */
  close(): Promise<void>;
}

/**
 * A dgram server. Reply rule: an empty datagram gets an empty reply; one of 1024 bytes or
 * more is echoed unchanged; anything else gets `tag:payload`. `delayMs` delays each reply.
 */
export async function echoServer(t: Teardown, tag: string, options: { host?: string; delayMs?: number } = {}): Promise<EchoServer> {
  const host = options.host ?? '127.0.0.1';
  const socket = createSocket(host.includes(':') ? 'udp6' : 'udp4');
  const received: Buffer[] = [];
  let closed = false;
  socket.on('message', (message, from) => {
    received.push(message);
    const reply = message.length === 0 || message.length >= 1024 ? message : Buffer.concat([Buffer.from(`${tag}:`), message]);
    const send = () => {
      if (!closed) socket.send(reply, from.port, from.address);
    };
    if (options.delayMs) setTimeout(send, options.delayMs);
    else send();
  });
  socket.on('error', () => {});
  await new Promise<void>((resolve) => socket.bind(0, host, resolve));
  const close = () =>
    new Promise<void>((resolve) => {
      if (closed) return resolve();
      closed = true;
      socket.close(() => resolve());
    });
  t.teardown(close);
  return { tag, port: socket.address().port, host, received, close };
}

/** A port nobody listens on: datagrams to it come back as ICMP port unreachable. */
export async function deadPort(): Promise<number> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const port = socket.address().port;
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return port;
}

export interface Setup {
  listener: UdpListener;
  pool: Pool;
  port: number;
  host: string;
  lines: () => Array<Record<string, unknown>>;
}

/** Validates a one-listener udp config over `servers` and starts a UdpListener on its pool. */
export async function startUdp(
  t: Teardown,
  servers: ReadonlyArray<{ host: string; port: number }>,
  options: { pool?: Record<string, unknown>; udp?: Record<string, unknown>; bind?: string; level?: 'info' | 'warn'; replayBudgetBytes?: number; connectSync?: boolean } = {},
): Promise<Setup> {
  const config = validateConfig({
    listeners: [{ name: 'u', protocol: 'udp', bind: options.bind ?? '127.0.0.1:0', pool: 'p', ...(options.udp ? { udp: options.udp } : {}) }],
    pools: {
      p: {
        servers: servers.map((server) => ({ address: server.host.includes(':') ? `[${server.host}]:${server.port}` : `${server.host}:${server.port}` })),
        ...options.pool,
      },
    },
  });
  const { logger, lines } = captureLogger(options.level ?? 'info');
  const pool = new Pool('p', config.pools.p!, { logger });
  const listener = new UdpListener(config.listeners[0] as UdpListenerConfig, pool, { logger, replayBudgetBytes: options.replayBudgetBytes, connectSync: options.connectSync });
  await listener.listen();
  t.teardown(() => {
    listener.close();
    pool.close();
  });
  const bound = listener.address();
  return { listener, pool, port: bound.port, host: bound.address, lines };
}

export interface Client {
  socket: Socket;
  /** Sends one datagram and resolves with the next reply, or undefined after `timeoutMs`. */
  ask(payload: string | Buffer, timeoutMs?: number): Promise<Buffer | undefined>;
  send(payload: string | Buffer): void;
  close(): void;
}

export async function client(t: Teardown, target: { host: string; port: number }, localAddress?: string): Promise<Client> {
  const v6 = target.host.includes(':');
  const socket = createSocket(v6 ? 'udp6' : 'udp4');
  socket.on('error', () => {});
  await new Promise<void>((resolve) => socket.bind(0, localAddress ?? (v6 ? '::1' : '127.0.0.1'), resolve));
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    socket.close();
  };
  t.teardown(close);
  const replies: Buffer[] = [];
  let waiter: ((reply: Buffer) => void) | undefined;
  socket.on('message', (message) => {
    if (waiter) {
      const w = waiter;
      waiter = undefined;
      w(message);
    } else replies.push(message);
  });
  const send = (payload: string | Buffer) => socket.send(typeof payload === 'string' ? Buffer.from(payload) : payload, target.port, target.host);
  const ask = (payload: string | Buffer, timeoutMs = 2_000) =>
    new Promise<Buffer | undefined>((resolve) => {
      const early = replies.shift();
      if (early) return resolve(early);
      const timer = setTimeout(() => {
        waiter = undefined;
        resolve(undefined);
      }, timeoutMs);
      waiter = (reply) => {
        clearTimeout(timer);
        resolve(reply);
      };
      send(payload);
    });
  return { socket, ask, send, close };
}

/** The tag of a `tag:payload` reply. */
export function tagOf(reply: Buffer | undefined): string | undefined {
  if (reply === undefined) return undefined;
  const text = reply.toString();
  const colon = text.indexOf(':');
  return colon < 0 ? text : text.slice(0, colon);
}

export function tally(tags: ReadonlyArray<string | undefined>): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const tag of tags) counts[String(tag)] = (counts[String(tag)] ?? 0) + 1;
  return counts;
}

export function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

export const sessionEnds = (lines: () => Array<Record<string, unknown>>) => lines().filter((line) => line.msg === 'session ended' || String(line.msg).startsWith('session moved'));
