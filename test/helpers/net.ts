import { createServer, connect, type Server, type Socket, type AddressInfo } from 'node:net';

export interface RunningServer {
  server: Server;
  port: number;
  /** Closes the listener and destroys every open connection. */
  close(): Promise<void>;
}

/**
 * Starts a TCP server on loopback (`port` 0 = any free port; a fixed port brings a server back
 * where it was). Tracks sockets so close() never hangs.
 */
export async function listenTcp(onConnection: (socket: Socket) => void, host = '127.0.0.1', port = 0): Promise<RunningServer> {
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    onConnection(socket);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return {
    server,
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A server that writes `tag\n` on every connection, then echoes whatever it receives. */
export function tagServer(tag: string, host = '127.0.0.1'): Promise<RunningServer> {
  return listenTcp((socket) => {
    socket.write(`${tag}\n`);
    socket.pipe(socket);
  }, host);
}

/** Connects, reads the first line (the tag), and returns it with the open socket. */
export function readTag(port: number, options: { host?: string; localAddress?: string } = {}): Promise<{ tag: string; socket: Socket }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: options.host ?? '127.0.0.1', localAddress: options.localAddress });
    let buffered = '';
    const onData = (chunk: Buffer) => {
      buffered += chunk.toString();
      const newline = buffered.indexOf('\n');
      if (newline >= 0) {
        socket.off('data', onData);
        resolve({ tag: buffered.slice(0, newline), socket });
      }
    };
    socket.on('data', onData);
    socket.once('error', reject);
    socket.once('close', () => reject(new Error(`closed before a tag arrived (got "${buffered}")`)));
  });
}

/** Resolves when `predicate` is true, polling every 10 ms; rejects after `timeoutMs`. */
export async function waitFor(predicate: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
