import { createSocket, type Socket } from 'node:dgram';
import { getSystemErrorName } from 'node:util';

/** Told of a datagram that was not sent, always on a later tick (never inside the send call). */
export type SendFailure = (err: NodeJS.ErrnoException) => void;

/**
 * Sends datagrams on dgram sockets. Switchyard sends every datagram through one of these.
 *
 * Contract (both implementations):
 * - `send` is for a connected socket, `sendTo` for an unconnected one (the listener's).
 * - A list of buffers goes out as ONE datagram, concatenated (PROXY header + payload).
 *   The caller may reuse the list array after the call returns; the buffers themselves
 *   must not be modified while the datagram may still be queued.
 * - A datagram that cannot be sent is reported to `onFailure`, if given, on a later tick,
 *   with `code` (ECONNREFUSED, EMSGSIZE...) and `syscall: 'send'`. A send never throws.
 */
export interface DatagramSender {
  /** `native` calls the socket's handle (see NativeSender), `socket` is dgram's Socket.send. */
  readonly kind: 'native' | 'socket';
  send(socket: Socket, datagram: Buffer | readonly Buffer[], onFailure?: SendFailure): void;
  sendTo(socket: Socket, datagram: Buffer, port: number, address: string, onFailure?: SendFailure): void;
}

/**
 * Which sender to use: `native` when this Node's dgram internals have the expected shape
 * (see NativeSender), unless SWITCHYARD_UDP_SEND=socket asks for the public API (an escape
 * hatch should a future Node change those internals in a way the check below misses).
 */
export function createDatagramSender(prefer: 'native' | 'socket' = process.env.SWITCHYARD_UDP_SEND === 'socket' ? 'socket' : 'native'): DatagramSender {
  if (prefer === 'native') {
    const internals = dgramInternals();
    if (internals !== undefined) return new NativeSender(internals);
  }
  return new SocketSender();
}

/** dgram's public Socket.send; failures come through its callback. */
class SocketSender implements DatagramSender {
  readonly kind = 'socket';

  send(socket: Socket, datagram: Buffer | readonly Buffer[], onFailure?: SendFailure): void {
    try {
      socket.send(datagram as Buffer | Buffer[], onFailure === undefined ? undefined : failureCallback(onFailure));
    } catch (err) {
      // Closed or not connected: reported like any other failure.
      if (onFailure !== undefined) process.nextTick(onFailure, err as NodeJS.ErrnoException);
    }
  }

  sendTo(socket: Socket, datagram: Buffer, port: number, address: string, onFailure?: SendFailure): void {
    try {
      socket.send(datagram, port, address, onFailure === undefined ? undefined : failureCallback(onFailure));
    } catch (err) {
      if (onFailure !== undefined) process.nextTick(onFailure, err as NodeJS.ErrnoException);
    }
  }
}

function failureCallback(onFailure: SendFailure): (err: Error | null) => void {
  return (err) => {
    if (err !== null) onFailure(err as NodeJS.ErrnoException);
  };
}

/** The parts of Node's dgram internals NativeSender uses, found once per process. */
export interface DgramInternals {
  /** The request object the native send takes (node's udp_wrap SendWrap). */
  readonly SendWrap: new () => SendRequest;
  /** The key of a dgram Socket's internal state, which holds its native `handle`. */
  readonly stateSymbol: symbol;
}

export interface SendRequest {
  /** Keeps the buffers alive while libuv holds them (a send it had to queue). */
  list?: readonly Buffer[];
}

interface UdpHandle {
  send(req: SendRequest, list: readonly Buffer[], count: number, hasCallback: boolean): number;
  send(req: SendRequest, list: readonly Buffer[], count: number, port: number, address: string, hasCallback: boolean): number;
}

/**
 * Sends through the socket's native UDP handle, the call dgram's Socket.send ends in.
 *
 * Why: Socket.send normalises its arguments, allocates a closure and a request object,
 * enters an async-id scope, resolves the address through `lookup` and, with a callback,
 * queues a tick, for every datagram. On the udp-rr load that was 12% of the balancer's
 * user-space instructions (callgrind, 46.1k -> 40.3k per request).
 *
 * The handle's send tries the send at once (uv_udp_try_send) and returns the outcome:
 * > 0 sent; 0 queued by libuv (socket buffer full), to be sent later; < 0 a negative errno.
 * Node sets the address family of `handle.send` per socket (send / send6), and parses
 * `address` itself, so IP literals need no lookup.
 *
 * The request object: the handle wraps it in a native send request only when it queues
 * the datagram (return 0). So one request serves every send that completes at once, and
 * after a queued one it is handed over (holding a copy of the buffer list, which keeps the
 * buffers alive until libuv is done) and replaced. No completion callback is asked for: a
 * queued datagram that later fails is lost silently, as with Socket.send without callback.
 */
export class NativeSender implements DatagramSender {
  readonly kind = 'native';
  private readonly internals: DgramInternals;
  private request: SendRequest;
  /** The one-buffer list, reused: the handle reads it during the call only. */
  private readonly single: Buffer[] = [];

  constructor(internals: DgramInternals) {
    this.internals = internals;
    this.request = new internals.SendWrap();
  }

  send(socket: Socket, datagram: Buffer | readonly Buffer[], onFailure?: SendFailure): void {
    const handle = this.handleOf(socket);
    const list = this.listOf(datagram);
    const request = this.request;
    const result = handle === undefined ? CLOSED : handle.send(request, list, list.length, false);
    this.settle(result, request, list, onFailure);
  }

  sendTo(socket: Socket, datagram: Buffer, port: number, address: string, onFailure?: SendFailure): void {
    const handle = this.handleOf(socket);
    const list = this.listOf(datagram);
    const request = this.request;
    const result = handle === undefined ? CLOSED : handle.send(request, list, 1, port, address, false);
    this.settle(result, request, list, onFailure);
  }

  private listOf(datagram: Buffer | readonly Buffer[]): readonly Buffer[] {
    if (!Buffer.isBuffer(datagram)) return datagram.length === 0 ? EMPTY_LIST : datagram;
    this.single[0] = datagram;
    return this.single;
  }

  private settle(result: number, request: SendRequest, list: readonly Buffer[], onFailure: SendFailure | undefined): void {
    if (result > 0) return;
    if (result === 0) {
      // Queued: this request now belongs to libuv's pending send, with its own buffer list.
      request.list = list.slice();
      this.request = new this.internals.SendWrap();
      return;
    }
    if (onFailure !== undefined) process.nextTick(onFailure, sendError(result));
  }

  private handleOf(socket: Socket): UdpHandle | undefined {
    const state = (socket as unknown as Record<symbol, { handle: UdpHandle | null } | undefined>)[this.internals.stateSymbol];
    return state?.handle ?? undefined;
  }
}

/** What a send on a closed socket reports (dgram's handle is gone). */
const CLOSED = -9; // EBADF
/** A zero-length datagram: the handle needs one (empty) buffer, as dgram itself passes. */
const EMPTY_LIST: readonly Buffer[] = [Buffer.alloc(0)];

function sendError(errno: number): NodeJS.ErrnoException {
  const code = errnoName(errno);
  return Object.assign(new Error(`send ${code}`), { errno, code, syscall: 'send' });
}

function errnoName(errno: number): string {
  try {
    return getSystemErrorName(errno);
  } catch {
    return `E${-errno}`;
  }
}

let internalsLookedUp = false;
let internals: DgramInternals | undefined;

/**
 * Finds SendWrap (process.binding('udp_wrap'), deprecated but kept by Node for this kind of
 * use: DEP0111 is documentation-only) and the state symbol of dgram Sockets, and checks their
 * shape on a socket that is never bound. Undefined when anything is not as expected.
 */
function dgramInternals(): DgramInternals | undefined {
  if (internalsLookedUp) return internals;
  internalsLookedUp = true;
  try {
    const binding = (process as unknown as { binding?: (name: string) => unknown }).binding?.('udp_wrap') as { SendWrap?: unknown } | undefined;
    const SendWrap = binding?.SendWrap;
    if (typeof SendWrap !== 'function') return undefined;
    const probe = createSocket('udp4');
    try {
      const stateSymbol = Object.getOwnPropertySymbols(probe).find((symbol) => symbol.description === 'state symbol');
      if (stateSymbol === undefined) return undefined;
      const state = (probe as unknown as Record<symbol, { handle?: { send?: unknown; send6?: unknown } } | undefined>)[stateSymbol];
      if (typeof state?.handle?.send !== 'function' || typeof state.handle.send6 !== 'function') return undefined;
      internals = { SendWrap: SendWrap as new () => SendRequest, stateSymbol };
    } finally {
      probe.close();
    }
  } catch {
    internals = undefined;
  }
  return internals;
}
