import { connect, type Socket } from 'node:net';
import { createHash, randomBytes, type Hash } from 'node:crypto';

/** Resolves after `ms` milliseconds. */
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Connects a client to 127.0.0.1:`port` (from `localAddress` when given, e.g. 127.0.0.7 for
 * ip-hash tests). Resolves with the socket once connected; rejects on an error or when the
 * connect takes longer than `timeoutMs` (default 3000). A later socket error is swallowed
 * (tests read it from `closeOutcome`), so an expected reset never crashes the test process.
 */
export function connectClient(port: number, options: { localAddress?: string; allowHalfOpen?: boolean; timeoutMs?: number } = {}): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: '127.0.0.1', localAddress: options.localAddress, allowHalfOpen: options.allowHalfOpen ?? false });
    socket.on('error', () => {});
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`connect to 127.0.0.1:${port} timed out`));
    }, options.timeoutMs ?? 3000);
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve(socket);
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** How a socket ended, as seen by its owner. */
export interface CloseOutcome {
  /** Every byte received from the moment `closeOutcome` was called. */
  data: Buffer;
  /** Whether a FIN ('end') arrived before the close. */
  ended: boolean;
  /** The error code that closed the socket (ECONNRESET ...), if any. */
  errorCode: string | undefined;
  /** Milliseconds from the call to the 'close' event. */
  ms: number;
}

/**
 * Collects everything `socket` receives until it closes, and how it closed. Starts reading
 * at once (the socket flows). Rejects when no close came within `timeoutMs` (default 5000),
 * destroying the socket, so a hung connection fails the test instead of hanging it.
 */
export function closeOutcome(socket: Socket, timeoutMs = 5000): Promise<CloseOutcome> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let ended = false;
    let errorCode: string | undefined;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`socket still open after ${timeoutMs}ms (received ${Buffer.concat(chunks).length} bytes, ended=${ended})`));
    }, timeoutMs);
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('end', () => {
      ended = true;
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      errorCode ??= err.code ?? err.message;
    });
    socket.once('close', () => {
      clearTimeout(timer);
      resolve({ data: Buffer.concat(chunks), ended, errorCode, ms: Date.now() - started });
    });
    if (socket.destroyed) {
      clearTimeout(timer);
      resolve({ data: Buffer.alloc(0), ended, errorCode, ms: 0 });
    }
  });
}

/**
 * Reads until the socket's readable side ends (FIN), with a deadline (default 5000 ms).
 * Resolves with all bytes; rejects on an error or the deadline. The socket stays writable
 * when it was made with `allowHalfOpen`.
 */
export function readUntilEnd(socket: Socket, timeoutMs = 5000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => reject(new Error(`no end within ${timeoutMs}ms (received ${Buffer.concat(chunks).length} bytes)`)), timeoutMs);
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.once('end', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks));
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** Reads until `expected` bytes arrived (deadline `timeoutMs`, default 5000); resolves with them. */
export function readBytes(socket: Socket, expected: number, timeoutMs = 5000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let length = 0;
    const timer = setTimeout(() => {
      socket.off('data', onData);
      reject(new Error(`got ${length} of ${expected} bytes within ${timeoutMs}ms`));
    }, timeoutMs);
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      length += chunk.length;
      if (length >= expected) {
        clearTimeout(timer);
        socket.off('data', onData);
        resolve(Buffer.concat(chunks));
      }
    };
    socket.on('data', onData);
  });
}

/** A running count and sha256 of a byte stream. */
export interface StreamDigest {
  hash: Hash;
  bytes: number;
}

export const newDigest = (): StreamDigest => ({ hash: createHash('sha256'), bytes: 0 });

/** Hashes every chunk `socket` receives into a new digest; resolves at 'end' or 'close'. */
export function digestUntilEnd(socket: Socket, timeoutMs = 60_000): Promise<{ sha256: string; bytes: number }> {
  const digest = newDigest();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`stream not finished within ${timeoutMs}ms (${digest.bytes} bytes so far)`)), timeoutMs);
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve({ sha256: digest.hash.digest('hex'), bytes: digest.bytes });
    };
    socket.on('data', (chunk: Buffer) => {
      digest.hash.update(chunk);
      digest.bytes += chunk.length;
    });
    socket.once('end', finish);
    socket.once('close', finish);
  });
}

/**
 * Writes `total` bytes of random data to `socket` as fast as backpressure allows (a new
 * random chunk each time, so order and content are checked by the hash), counting in
 * `digest` every byte handed to `socket.write`. Ends the socket when `end` is true
 * (default). Resolves once everything was handed over; stops early, resolving, when
 * `stop()` returns true or the socket is destroyed.
 */
export async function writeRandom(
  socket: Socket,
  total: number,
  digest: StreamDigest,
  options: { chunkSize?: number; end?: boolean; stop?: () => boolean } = {},
): Promise<void> {
  const chunkSize = options.chunkSize ?? 64 * 1024;
  while (digest.bytes < total) {
    if (socket.destroyed || options.stop?.()) return;
    const chunk = randomBytes(Math.min(chunkSize, total - digest.bytes));
    digest.hash.update(chunk);
    digest.bytes += chunk.length;
    if (!socket.write(chunk)) {
      await new Promise<void>((resolve) => {
        const done = () => {
          socket.off('drain', done);
          socket.off('close', done);
          resolve();
        };
        socket.on('drain', done);
        socket.on('close', done);
      });
    }
  }
  if (options.end ?? true) socket.end();
}
