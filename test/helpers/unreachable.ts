import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { Worker } from 'node:worker_threads';

/**
 * A loopback port with nothing listening: binds 127.0.0.1:0, notes the port, closes it.
 * A connect to it is refused at once (ECONNREFUSED). The kernel may hand the port to someone
 * else later, but not while the ephemeral range has others free, which is all a test needs.
 */
export async function deadPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A listener whose SYNs go unanswered, for connect-timeout tests. */
export interface Blackhole {
  port: number;
  /** Wakes the worker, closes its listener and the filler connections. */
  close(): Promise<void>;
}

// Runs in a worker thread: listens with backlog 1, then blocks its own event loop, so it
// never accepts. Once the kernel's accept queue is full, Linux drops further SYNs
// (tcp_abort_on_overflow = 0, the default): a connect then neither succeeds nor is refused.
const workerSource = `
const { parentPort, workerData } = require('node:worker_threads');
const net = require('node:net');
const server = net.createServer((socket) => socket.destroy());
// backlog 0 would be read as "unset" by Node (511); 1 lets the kernel queue two connections.
server.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => {
  parentPort.postMessage(server.address().port);
  Atomics.wait(workerData, 0, 0, 60000);
  server.close();
});
`;

/**
 * A loopback port that does not answer SYNs: a listener whose accept queue is full.
 * Fills the queue with client connections until one connect hangs (at most 8 tries, 300 ms
 * each). Resolves undefined when the kernel keeps accepting (a platform without accept-queue
 * overflow drops), so the caller can skip with a message.
 */
export async function blackholeListener(): Promise<Blackhole | undefined> {
  const flag = new Int32Array(new SharedArrayBuffer(4));
  const worker = new Worker(workerSource, { eval: true, workerData: flag });
  const port = await new Promise<number>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  const fillers: Socket[] = [];
  let full = false;
  for (let i = 0; i < 8 && !full; i++) {
    const socket = connect({ port, host: '127.0.0.1' });
    socket.on('error', () => {});
    fillers.push(socket);
    const connected = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 300);
      socket.once('connect', () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
    full = !connected;
  }
  const close = async () => {
    for (const socket of fillers) socket.destroy();
    Atomics.store(flag, 0, 1);
    Atomics.notify(flag, 0);
    await new Promise<void>((resolve) => {
      worker.once('exit', () => resolve());
    });
  };
  if (!full) {
    await close();
    return undefined;
  }
  return { port, close };
}
