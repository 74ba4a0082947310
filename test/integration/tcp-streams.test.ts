import t from 'tap';
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { startBalancer } from '../helpers/balancer.ts';
import { listenTcp, waitFor, type RunningServer } from '../helpers/net.ts';
import { closeOutcome, connectClient, digestUntilEnd, newDigest, readBytes, readUntilEnd, sleep, writeRandom } from '../helpers/tcp-client.ts';
import { connectionLines, tcpDocument } from '../helpers/tcp-balancer.ts';
import type { Switchyard } from '../../src/server.ts';

// The data path through real loopback sockets: volume, ordering, half-close, resets and
// backpressure. The balancer runs in this process, so its memory is this process's memory.

const MiB = 1024 * 1024;
type Lines = () => Array<Record<string, unknown>>;

/** Starts one upstream with `onConnection` and a balancer in front of it. */
async function through(t: { teardown(fn: () => unknown): void }, onConnection: (socket: Socket) => void): Promise<{ sy: Switchyard; port: number; lines: Lines; upstream: RunningServer }> {
  const upstream = await listenTcp(onConnection);
  const { sy, lines } = await startBalancer(tcpDocument([upstream.port]));
  t.teardown(async () => {
    await sy.shutdown(1000);
    await upstream.close();
  });
  return { sy, port: sy.address('t').port, lines, upstream };
}

async function onlyConnectionLine(lines: Lines): Promise<Record<string, unknown>> {
  await waitFor(() => connectionLines(lines()).length === 1, 5000, 'the connection log line');
  return connectionLines(lines())[0]!;
}

// First in the file: the memory check compares this process's memory before and during the
// stall, and is sharpest before other tests have grown the heap.
t.test('a slow reader: backpressure bounds what the upstream can write and what the balancer holds', { timeout: 90_000 }, async (t) => {
  const target = 256 * MiB;
  const upstreamSent = newDigest();
  let upstreamSocket: Socket | undefined;
  let writing: Promise<void> | undefined;
  const { port, lines } = await through(t, (socket) => {
    upstreamSocket = socket;
    writing = writeRandom(socket, target, upstreamSent);
  });

  const before = process.memoryUsage();
  const client = await connectClient(port);
  // The client reads nothing for 2 s (no 'data' listener: Node buffers one highWaterMark).
  await waitFor(() => upstreamSocket !== undefined, 3000, 'the upstream connection');
  await sleep(1500);
  const at1500 = upstreamSent.bytes;
  await sleep(500);
  const handed = upstreamSent.bytes;
  const queued = upstreamSocket!.writableLength;
  const during = process.memoryUsage();
  const rssGrowth = during.rss - before.rss;
  // Buffers live outside the JS heap: a balancer that queued instead of pausing would show here.
  const bufferGrowth = during.arrayBuffers - before.arrayBuffers;
  t.comment(
    `after 2 s without reading: upstream handed ${(handed / MiB).toFixed(1)} MiB to its socket (${(queued / MiB).toFixed(2)} MiB still in Node), ` +
      `rss +${(rssGrowth / MiB).toFixed(1)} MiB, buffers +${(bufferGrowth / MiB).toFixed(1)} MiB`,
  );
  t.ok(handed < 32 * MiB, `the upstream could write only ${(handed / MiB).toFixed(1)} MiB (< 32 MiB of kernel and Node buffers on both legs)`);
  t.equal(handed, at1500, 'writing had stalled: no progress between 1.5 s and 2 s');
  t.ok(rssGrowth < 64 * MiB, `process memory grew ${(rssGrowth / MiB).toFixed(1)} MiB (< 64 MiB)`);
  t.ok(bufferGrowth < 64 * MiB, `buffer memory grew ${(bufferGrowth / MiB).toFixed(1)} MiB (< 64 MiB; includes written chunks not yet collected)`);

  const received = await digestUntilEnd(client, 80_000);
  await writing;
  t.equal(received.bytes, target, 'once reading, the client received all 256 MiB');
  t.equal(received.sha256, upstreamSent.hash.digest('hex'), 'exactly the bytes written, in order');
  client.destroy();
  t.match(await onlyConnectionLine(lines), { bytesOut: target });
});

t.test('a slow upstream: backpressure bounds what the client can write, and nothing is lost', { timeout: 90_000 }, async (t) => {
  const target = 128 * MiB;
  let upstreamSocket: Socket | undefined;
  const { port, lines } = await through(t, (socket) => {
    upstreamSocket = socket;
    socket.pause(); // reads nothing until the test resumes it
  });

  const before = process.memoryUsage();
  const client = await connectClient(port);
  const clientSent = newDigest();
  const writing = writeRandom(client, target, clientSent);
  await waitFor(() => upstreamSocket !== undefined, 3000, 'the upstream connection');
  await sleep(1500);
  const at1500 = clientSent.bytes;
  await sleep(500);
  const handed = clientSent.bytes;
  const during = process.memoryUsage();
  const rssGrowth = during.rss - before.rss;
  const bufferGrowth = during.arrayBuffers - before.arrayBuffers;
  t.comment(`after 2 s without reading upstream: the client handed ${(handed / MiB).toFixed(1)} MiB to its socket, rss +${(rssGrowth / MiB).toFixed(1)} MiB, buffers +${(bufferGrowth / MiB).toFixed(1)} MiB`);
  t.ok(handed < 32 * MiB, `the client could write only ${(handed / MiB).toFixed(1)} MiB (< 32 MiB)`);
  t.equal(handed, at1500, 'writing had stalled: no progress between 1.5 s and 2 s');
  t.ok(rssGrowth < 64 * MiB, `process memory grew ${(rssGrowth / MiB).toFixed(1)} MiB (< 64 MiB)`);
  t.ok(bufferGrowth < 64 * MiB, `buffer memory grew ${(bufferGrowth / MiB).toFixed(1)} MiB (< 64 MiB)`);

  const received = digestUntilEnd(upstreamSocket!, 80_000);
  upstreamSocket!.resume();
  const [got] = await Promise.all([received, writing]);
  t.equal(got.bytes, target, 'once reading, the upstream received all 128 MiB, then the FIN');
  t.equal(got.sha256, clientSent.hash.digest('hex'), 'exactly the bytes written, in order');
  upstreamSocket!.end();
  t.match(await onlyConnectionLine(lines), { bytesIn: target, end: 'closed' });
});

t.test('64 MiB each way at once: both sides receive exactly what the other sent (sha256)', { timeout: 90_000 }, async (t) => {
  const size = 64 * MiB;
  let upstreamDone!: (result: { received: { sha256: string; bytes: number }; sent: { sha256: string; bytes: number } }) => void;
  const upstreamResult = new Promise<Parameters<typeof upstreamDone>[0]>((resolve) => (upstreamDone = resolve));
  const { port, lines } = await through(t, (socket) => {
    const sent = newDigest();
    const received = digestUntilEnd(socket, 80_000);
    void Promise.all([received, writeRandom(socket, size, sent)]).then(([r]) => upstreamDone({ received: r, sent: { sha256: sent.hash.digest('hex'), bytes: sent.bytes } }));
  });

  const client = await connectClient(port, { allowHalfOpen: true });
  const sent = newDigest();
  const started = Date.now();
  const [clientReceived] = await Promise.all([digestUntilEnd(client, 80_000), writeRandom(client, size, sent)]);
  const upstream = await upstreamResult;
  const seconds = (Date.now() - started) / 1000;
  t.comment(`128 MiB through the balancer in ${seconds.toFixed(2)}s`);

  t.equal(upstream.received.bytes, size, 'the upstream received 64 MiB');
  t.equal(upstream.received.sha256, sent.hash.digest('hex'), 'the upstream received exactly the client’s bytes, in order');
  t.equal(clientReceived.bytes, size, 'the client received 64 MiB');
  t.equal(clientReceived.sha256, upstream.sent.sha256, 'the client received exactly the upstream’s bytes, in order');
  client.destroy();

  t.match(await onlyConnectionLine(lines), { end: 'closed', bytesIn: size, bytesOut: size });
});

t.test('200 concurrent connections: each client gets back exactly its own bytes', { timeout: 30_000 }, async (t) => {
  const clients = 200;
  const size = 64 * 1024;
  const { sy, port, lines } = await through(t, (socket) => socket.pipe(socket));
  const results = await Promise.all(
    Array.from({ length: clients }, async () => {
      const client = await connectClient(port);
      const data = randomBytes(size);
      const echoed = readUntilEnd(client, 20_000);
      client.end(data);
      return (await echoed).equals(data);
    }),
  );
  t.equal(results.filter(Boolean).length, clients, `all ${clients} echoes matched their own client's bytes`);
  await waitFor(() => connectionLines(lines()).length === clients, 10_000, 'every connection line');
  t.same(
    connectionLines(lines()).filter((line) => line.end !== 'closed' || line.bytesIn !== size || line.bytesOut !== size),
    [],
    'every connection closed normally with its byte counts',
  );
  t.equal(sy.pools.get('p')!.servers[0]!.active, 0, 'every pick was released');
  t.equal(sy.openCount(), 0);
});

t.test('half-close from the client: the request ends with FIN, the whole reply still arrives', { timeout: 15_000 }, async (t) => {
  const request = randomBytes(100 * 1024);
  const reply = randomBytes(MiB);
  let upstreamGot: Buffer | undefined;
  const { port, lines } = await through(t, (socket) => {
    void readUntilEnd(socket).then((data) => {
      upstreamGot = data;
      socket.end(reply);
    });
  });
  const client = await connectClient(port, { allowHalfOpen: true });
  const replyRead = readUntilEnd(client);
  client.end(request);
  const got = await replyRead;
  t.ok(upstreamGot?.equals(request), 'the upstream read the whole request, then saw its end');
  t.equal(got.length, reply.length, 'the client received the whole reply');
  t.ok(got.equals(reply), 'byte for byte');
  t.match(await onlyConnectionLine(lines), { end: 'closed', bytesIn: request.length, bytesOut: reply.length });
});

t.test('half-close with no data: a client that only sends FIN still gets the reply', { timeout: 15_000 }, async (t) => {
  const { port, lines } = await through(t, (socket) => {
    void readUntilEnd(socket).then((data) => socket.end(`got ${data.length} bytes, then your FIN\n`));
  });
  const client = await connectClient(port, { allowHalfOpen: true });
  const reply = readUntilEnd(client);
  client.end(); // possibly before the balancer has even connected upstream
  t.equal((await reply).toString(), 'got 0 bytes, then your FIN\n');
  t.match(await onlyConnectionLine(lines), { end: 'closed', bytesIn: 0 });
});

t.test('half-close from the upstream: the client keeps sending after the upstream’s FIN', { timeout: 15_000 }, async (t) => {
  let upstreamGot!: Promise<Buffer>;
  const { port, lines } = await through(t, (socket) => {
    upstreamGot = readUntilEnd(socket);
    socket.end('hello, I am done talking\n');
  });
  const client = await connectClient(port, { allowHalfOpen: true });
  const closed = closeOutcome(client);
  await waitFor(() => client.readableEnded, 3000, 'the client to see the upstream’s FIN');
  const parts = ['after ', 'the ', 'FIN\n'];
  for (const part of parts) {
    t.ok(client.write(part), 'the client can still write');
    await sleep(50);
  }
  client.end();
  t.equal((await upstreamGot).toString(), parts.join(''), 'the upstream received everything sent after its FIN');
  const outcome = await closed;
  t.equal(outcome.data.toString(), 'hello, I am done talking\n');
  t.equal(outcome.errorCode, undefined, 'no error on either side');
  t.match(await onlyConnectionLine(lines), { end: 'closed', bytesIn: parts.join('').length });
});

t.test('an upstream reset reaches the client as a reset, promptly', { timeout: 15_000 }, async (t) => {
  const { port, lines } = await through(t, (socket) => {
    socket.write('x');
    socket.once('data', () => socket.resetAndDestroy());
  });
  const client = await connectClient(port);
  await readBytes(client, 1);
  const closed = closeOutcome(client, 3000);
  client.write('reset me');
  const outcome = await closed;
  t.equal(outcome.errorCode, 'ECONNRESET', 'the client saw ECONNRESET');
  t.ok(outcome.ms < 1000, `promptly (${outcome.ms}ms)`);
  t.match(await onlyConnectionLine(lines), { end: 'upstream-reset' });
});

t.test('a client reset closes the upstream connection, promptly', { timeout: 15_000 }, async (t) => {
  let upstreamClosed!: Promise<{ errorCode: string | undefined; ms: number }>;
  const { port, lines } = await through(t, (socket) => {
    upstreamClosed = closeOutcome(socket, 3000);
    socket.write('x');
  });
  const client = await connectClient(port);
  await readBytes(client, 1);
  client.resetAndDestroy();
  const outcome = await upstreamClosed;
  t.ok(outcome.ms < 1000, `the upstream socket closed promptly (${outcome.ms}ms)`);
  t.equal(outcome.errorCode, 'ECONNRESET', 'as a reset, not as a clean end');
  t.match(await onlyConnectionLine(lines), { end: 'downstream-reset' });
});
