import t from 'tap';
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { createDatagramSender, type DatagramSender } from '../../src/l4/udp-send.ts';
import { waitFor } from '../helpers/net.ts';

// Both DatagramSender kinds over real loopback sockets: what arrives, and how failures are
// reported. The native kind must exist on the Node that runs the tests (the pinned Node 24).

type Teardown = { teardown(fn: () => unknown): void };

interface Receiver {
  socket: Socket;
  port: number;
  host: string;
  received: { data: Buffer; from: RemoteInfo }[];
}

async function receiver(t: Teardown, host = '127.0.0.1'): Promise<Receiver> {
  const socket = createSocket(host.includes(':') ? 'udp6' : 'udp4');
  const received: Receiver['received'] = [];
  socket.on('message', (data, from) => received.push({ data, from }));
  await new Promise<void>((resolve) => socket.bind(0, host, resolve));
  t.teardown(() => socket.close());
  return { socket, port: socket.address().port, host, received };
}

async function connected(t: Teardown, port: number, host = '127.0.0.1'): Promise<Socket> {
  const socket = createSocket(host.includes(':') ? 'udp6' : 'udp4');
  socket.on('error', () => {});
  await new Promise<void>((resolve) => socket.connect(port, host, resolve));
  t.teardown(() => {
    try {
      socket.close();
    } catch {
      // closed by the test
    }
  });
  return socket;
}

/** A port nobody listens on: datagrams to it come back as ICMP port unreachable. */
async function deadPort(): Promise<number> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const port = socket.address().port;
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return port;
}

t.test('the native sender is available on this Node', async (t) => {
  t.equal(createDatagramSender().kind, 'native');
  t.equal(createDatagramSender('socket').kind, 'socket');
});

for (const kind of ['native', 'socket'] as const) {
  const sender: DatagramSender = createDatagramSender(kind);
  t.equal(sender.kind, kind);

  t.test(`${kind}: connected send delivers each datagram unchanged, 0 to 65,507 bytes`, async (t) => {
    const to = await receiver(t);
    const socket = await connected(t, to.port);
    const big = Buffer.alloc(65_507, 7);
    const sent = [Buffer.alloc(0), Buffer.from('hello'), big];
    for (const datagram of sent) sender.send(socket, datagram, () => t.fail('no failure expected'));
    await waitFor(() => to.received.length === 3);
    t.same(
      to.received.map((r) => r.data.length),
      [0, 5, 65_507],
    );
    t.equal(to.received[1]!.data.toString(), 'hello');
    t.ok(to.received[2]!.data.equals(big));
    t.equal(to.received[0]!.from.port, socket.address().port);
  });

  t.test(`${kind}: a list of buffers is one datagram, and the list may be reused at once`, async (t) => {
    const to = await receiver(t);
    const socket = await connected(t, to.port);
    const parts = [Buffer.from('HDR|'), Buffer.from('one')];
    sender.send(socket, parts);
    parts[1] = Buffer.from('two');
    sender.send(socket, parts);
    sender.send(socket, []);
    await waitFor(() => to.received.length === 3);
    t.same(
      to.received.map((r) => r.data.toString()),
      ['HDR|one', 'HDR|two', ''],
    );
  });

  t.test(`${kind}: sendTo reaches address:port from an unconnected socket, IPv4 and IPv6`, async (t) => {
    for (const host of ['127.0.0.1', '::1']) {
      const to = await receiver(t, host);
      const from = createSocket(host.includes(':') ? 'udp6' : 'udp4');
      await new Promise<void>((resolve) => from.bind(0, host, resolve));
      t.teardown(() => from.close());
      sender.sendTo(from, Buffer.from(`to ${host}`), to.port, host, () => t.fail('no failure expected'));
      await waitFor(() => to.received.length === 1);
      t.equal(to.received[0]!.data.toString(), `to ${host}`);
      t.equal(to.received[0]!.from.port, from.address().port);
    }
  });

  t.test(`${kind}: a refusal surfacing on the next send reaches onFailure, later, as ECONNREFUSED`, async (t) => {
    const socket = await connected(t, await deadPort());
    const failures: NodeJS.ErrnoException[] = [];
    let returned = false;
    // On loopback the ICMP error of the first datagram is queued on the socket before the
    // second sendmsg, which then fails with it.
    sender.send(socket, Buffer.from('first'), (err) => failures.push(err));
    sender.send(socket, Buffer.from('second'), (err) => {
      t.ok(returned, 'reported after the send returned');
      failures.push(err);
    });
    returned = true;
    await waitFor(() => failures.length === 1);
    t.equal(failures[0]!.code, 'ECONNREFUSED');
    t.equal(failures[0]!.syscall, 'send');
  });

  t.test(`${kind}: a send on a closed socket is reported, not thrown`, async (t) => {
    const to = await receiver(t);
    const socket = await connected(t, to.port);
    socket.close();
    const failures: NodeJS.ErrnoException[] = [];
    t.doesNotThrow(() => sender.send(socket, Buffer.from('x'), (err) => failures.push(err)));
    t.doesNotThrow(() => sender.sendTo(socket, Buffer.from('x'), to.port, to.host));
    await waitFor(() => failures.length === 1);
    t.ok(failures[0] instanceof Error);
  });
}
