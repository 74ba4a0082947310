import t from 'tap';
import type { Socket } from 'node:dgram';
import { NativeSender, type SendRequest } from '../../src/l4/udp-send.ts';

// NativeSender's bookkeeping with a fake handle: which request object each send gets, what
// a queued send keeps alive, and how errors are reported. (Real sockets: the integration test.)

interface Call {
  request: SendRequest;
  list: Buffer[];
  args: unknown[];
}

function fakeSocket(results: number[]) {
  const stateSymbol = Symbol('state symbol');
  const calls: Call[] = [];
  const send = (request: SendRequest, list: Buffer[], ...args: unknown[]) => {
    calls.push({ request, list: list.slice(), args });
    return results.shift() ?? 1;
  };
  const socket = { [stateSymbol]: { handle: { send } } } as unknown as Socket;
  class SendWrap {
    list?: readonly Buffer[];
  }
  const sender = new NativeSender({ SendWrap, stateSymbol });
  return { socket, sender, calls, closed: () => ((socket as unknown as Record<symbol, { handle: unknown }>)[stateSymbol]!.handle = null) };
}

t.test('sent at once: one request object serves every send', async (t) => {
  const { socket, sender, calls } = fakeSocket([6, 6, 4]);
  sender.send(socket, Buffer.from('hello'));
  sender.send(socket, [Buffer.from('he'), Buffer.from('llo')]);
  sender.sendTo(socket, Buffer.from('abc'), 53, '127.0.0.1');
  t.equal(calls.length, 3);
  t.equal(calls[0]!.request, calls[1]!.request);
  t.equal(calls[1]!.request, calls[2]!.request);
  t.same(calls[0]!.args, [1, false], 'connected: count, no callback');
  t.same(calls[1]!.args, [2, false]);
  t.same(calls[2]!.args, [1, 53, '127.0.0.1', false], 'sendTo: count, port, address, no callback');
  t.equal(calls[0]!.request.list, undefined, 'nothing kept alive for a completed send');
});

t.test('queued by libuv: the request keeps a copy of the list and is replaced', async (t) => {
  const { socket, sender, calls } = fakeSocket([0, 1]);
  const parts = [Buffer.from('hdr'), Buffer.from('one')];
  sender.send(socket, parts);
  parts[1] = Buffer.from('two');
  sender.send(socket, parts);
  const queued = calls[0]!.request;
  t.not(calls[1]!.request, queued, 'the next send gets a fresh request');
  t.same(
    queued.list?.map((b) => b.toString()),
    ['hdr', 'one'],
    'the queued datagram stays referenced as it was sent',
  );
});

t.test('an empty list sends one empty buffer (a zero-length datagram)', async (t) => {
  const { socket, sender, calls } = fakeSocket([1]);
  sender.send(socket, []);
  t.equal(calls[0]!.list.length, 1);
  t.equal(calls[0]!.list[0]!.length, 0);
  t.same(calls[0]!.args, [1, false]);
});

t.test('errors reach onFailure on a later tick, with the errno name', async (t) => {
  const { socket, sender } = fakeSocket([-111, -90]);
  const failures: NodeJS.ErrnoException[] = [];
  sender.send(socket, Buffer.from('x'), (err) => failures.push(err));
  sender.sendTo(socket, Buffer.from('y'), 53, '::1', (err) => failures.push(err));
  t.equal(failures.length, 0, 'not inside the send call');
  await new Promise((resolve) => process.nextTick(resolve));
  t.same(
    failures.map((e) => [e.code, e.errno, e.syscall]),
    [
      ['ECONNREFUSED', -111, 'send'],
      ['EMSGSIZE', -90, 'send'],
    ],
  );
});

t.test('a closed socket (no handle) is a failure, not a throw', async (t) => {
  const { socket, sender, calls, closed } = fakeSocket([]);
  closed();
  const failures: NodeJS.ErrnoException[] = [];
  sender.send(socket, Buffer.from('x'), (err) => failures.push(err));
  sender.send(socket, Buffer.from('x'));
  await new Promise((resolve) => process.nextTick(resolve));
  t.equal(calls.length, 0);
  t.equal(failures.length, 1);
  t.equal(failures[0]!.code, 'EBADF');
});
