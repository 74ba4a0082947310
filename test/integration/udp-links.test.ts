import t from 'tap';
import { createSocket, type RemoteInfo } from 'node:dgram';
import { waitFor } from '../helpers/net.ts';
import { client, echoServer, openFds, startUdp, type Teardown } from '../helpers/udp.ts';

// Upstream socket reuse (UpstreamLinks): a session that ended with every reply in
// (`responses`) parks its connected upstream socket for the next session to the same server.

interface PortServer {
  host: string;
  port: number;
  /** The source port of every datagram received, in order. */
  sources: number[];
  /** Replies this many times to each datagram (a misbehaving server sends more than one). */
  repliesPerDatagram: number;
}

/** A dgram server that records source ports and replies `n:payload`, repliesPerDatagram times. */
async function portServer(t: Teardown): Promise<PortServer> {
  const socket = createSocket('udp4');
  const server: PortServer = { host: '127.0.0.1', port: 0, sources: [], repliesPerDatagram: 1 };
  socket.on('message', (message: Buffer, from: RemoteInfo) => {
    server.sources.push(from.port);
    for (let n = 1; n <= server.repliesPerDatagram; n++) socket.send(`${n}:${message}`, from.port, from.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  server.port = socket.address().port;
  t.teardown(() => socket.close());
  return server;
}

t.test('responses: 1: sessions from new downstreams reuse the parked upstream socket', async (t) => {
  const server = await portServer(t);
  const s = await startUdp(t, [server], { udp: { responses: 1 } });
  const answers: string[] = [];
  for (let i = 0; i < 5; i++) {
    const c = await client(t, s);
    answers.push(String(await c.ask(`q${i}`)));
    c.close();
  }
  t.same(answers, ['1:q0', '1:q1', '1:q2', '1:q3', '1:q4']);
  t.equal(new Set(server.sources).size, 1, 'the server saw one source port for five sessions');
  t.same(s.listener.links, { parked: 1, reused: 4 });
  t.equal(s.listener.openCount(), 0, 'every session ended at its reply');
});

t.test('concurrent sessions each get their own socket; all are parked afterwards', async (t) => {
  const server = await portServer(t);
  const s = await startUdp(t, [server], { udp: { responses: 1 } });
  const clients = await Promise.all(Array.from({ length: 8 }, () => client(t, s)));
  // Pipelined on each client socket: one session per client, ended when both replies are in.
  const replies = await Promise.all(clients.map(async (c, i) => [String(await c.ask(`a${i}`)), String(await c.ask(`b${i}`))]));
  t.same(replies[3], ['1:a3', '1:b3']);
  t.ok(new Set(server.sources).size >= 1);
  await waitFor(() => s.listener.openCount() === 0);
  const parkedAfterFirstWave = s.listener.links.parked;
  t.ok(parkedAfterFirstWave >= 1, `parked ${parkedAfterFirstWave}`);
  // A second wave reuses them: no new source ports beyond those of the first wave.
  const portsBefore = new Set(server.sources);
  for (const c of clients) c.close();
  const again = await Promise.all(Array.from({ length: parkedAfterFirstWave }, () => client(t, s)));
  for (const c of again) await c.ask('again');
  t.ok(
    server.sources.slice(-parkedAfterFirstWave).every((port) => portsBefore.has(port)),
    'second wave sent from parked sockets',
  );
});

t.test('a server that sends an extra reply: dropped on the parked socket, which is closed, never reused', async (t) => {
  const server = await portServer(t);
  const s = await startUdp(t, [server], { udp: { responses: 1 } });
  server.repliesPerDatagram = 2;
  const first = createSocket('udp4');
  const got: string[] = [];
  first.on('message', (message) => got.push(String(message)));
  t.teardown(() => first.close());
  first.send('one', s.port, s.host);
  await waitFor(() => s.listener.drops.totals['late-reply'] === 1, 2_000, 'the extra reply to be dropped');
  t.equal(s.listener.links.parked, 0, 'the socket that got it is closed');
  await new Promise((resolve) => setTimeout(resolve, 50));
  t.same(got, ['1:one'], 'the extra reply never reached the client');
  server.repliesPerDatagram = 1;
  const second = await client(t, s);
  t.equal(String(await second.ask('two')), '1:two');
  t.not(server.sources.at(-1), server.sources[0], 'the next session got a new socket');
  t.equal(s.listener.links.reused, 0);
});

t.test('sessions that end any other way close their socket (idle, no `responses`)', async (t) => {
  const server = await portServer(t);
  const s = await startUdp(t, [server], { udp: { sessionTimeout: '100ms' } });
  const before = openFds();
  const c = await client(t, s);
  t.equal(String(await c.ask('x')), '1:x');
  await waitFor(() => s.listener.openCount() === 0, 2_000, 'the idle session to expire');
  t.same(s.listener.links, { parked: 0, reused: 0 });
  await waitFor(() => openFds() <= before + 1, 2_000, 'the upstream socket to close');
});

t.test('parked sockets close after sessionTimeout unused, and at shutdown', async (t) => {
  const server = await portServer(t);
  const s = await startUdp(t, [server], { udp: { responses: 1, sessionTimeout: '150ms' } });
  const before = openFds();
  const clients = await Promise.all(Array.from({ length: 4 }, () => client(t, s)));
  await Promise.all(clients.map((c) => c.ask('x')));
  t.ok(s.listener.links.parked >= 1);
  await waitFor(() => s.listener.links.parked === 0, 3_000, 'parked sockets to expire');
  for (const c of clients) c.close();
  await waitFor(() => openFds() <= before, 2_000, 'their descriptors to be released');

  const again = await client(t, s);
  await again.ask('y');
  t.equal(s.listener.links.parked, 1);
  s.listener.close();
  t.equal(s.listener.links.parked, 0, 'shutdown closes parked sockets');
});

t.test('a parked socket whose server went away: the next session fails over, nothing lost', async (t) => {
  const a = await echoServer(t, 'a');
  const b = await echoServer(t, 'b');
  const s = await startUdp(t, [a, b], { udp: { responses: 1 } });
  // Two sessions park one socket to each server.
  const c1 = await client(t, s);
  const c2 = await client(t, s);
  const tags = [String(await c1.ask('x')), String(await c2.ask('x'))].map((reply) => reply.split(':')[0]).sort();
  t.same(tags, ['a', 'b']);
  await a.close();
  const answers: string[] = [];
  for (let i = 0; i < 4; i++) {
    const c = await client(t, s);
    answers.push(String(await c.ask(`q${i}`)).split(':')[0]!);
  }
  t.same(answers, ['b', 'b', 'b', 'b'], 'every query answered, by the server still up');
});

t.test('Node without connectSync: sessions connect with connect() and still reuse sockets', async (t) => {
  const server = await portServer(t);
  const s = await startUdp(t, [server], { udp: { responses: 1 }, connectSync: false });
  for (let i = 0; i < 3; i++) {
    const c = await client(t, s);
    t.equal(String(await c.ask(`q${i}`)), `1:q${i}`);
  }
  t.equal(new Set(server.sources).size, 1);
  t.equal(s.listener.links.reused, 2);
});
