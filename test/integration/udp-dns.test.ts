import t from 'tap';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { promisify } from 'node:util';
import { validateConfig } from '../../src/config/load.ts';
import type { UdpListenerConfig } from '../../src/config/schema.ts';
import { UdpListener } from '../../src/l4/udp-listener.ts';
import { Pool } from '../../src/pool/pool.ts';
import { captureLogger } from '../helpers/log.ts';
import { waitFor } from '../helpers/net.ts';

// Interop with real DNS servers: two dnsmasq instances on 127.0.0.1, each answering
// who.test with its own address, behind a UdpListener with `responses: 1`; queried with dig
// and with a pipelining client (as dnsperf does). dnsmasq runs with --no-resolv and answers
// only the local name: nothing here ever leaves loopback.

const run = promisify(execFile);

function findBinary(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/usr/bin', '/sbin'])) {
    if (dir && existsSync(`${dir}/${name}`)) return `${dir}/${name}`;
  }
  return undefined;
}

const dnsmasqPath = findBinary('dnsmasq');
const digPath = findBinary('dig');
const missing = !dnsmasqPath ? 'dnsmasq not found' : !digPath ? 'dig not found' : undefined;

interface Dnsmasq {
  port: number;
  answer: string;
  child: ChildProcess;
  kill(): Promise<void>;
}

/** A port free for both UDP and TCP on 127.0.0.1 (dnsmasq binds both). */
async function freePort(): Promise<number> {
  const udp = createSocket('udp4');
  await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', resolve));
  const port = udp.address().port;
  const tcp = createServer();
  const tcpFree = await new Promise<boolean>((resolve) => {
    tcp.once('error', () => resolve(false));
    tcp.listen(port, '127.0.0.1', () => resolve(true));
  });
  await new Promise<void>((resolve) => (tcpFree ? tcp.close(() => resolve()) : resolve()));
  await new Promise<void>((resolve) => udp.close(() => resolve()));
  return tcpFree ? port : freePort();
}

/** Starts dnsmasq answering who.test with `answer`; resolves once it answers a query. */
async function startDnsmasq(t: { teardown(fn: () => unknown): void }, answer: string): Promise<Dnsmasq> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const child = spawn(
      dnsmasqPath!,
      [
        '--no-daemon',
        `--port=${port}`,
        '--listen-address=127.0.0.1',
        '--bind-interfaces',
        '--no-resolv',
        '--no-hosts',
        '--no-poll',
        '--cache-size=0',
        `--address=/who.test/${answer}`,
        '--conf-file=/dev/null',
        '--pid-file=',
        ...(process.getuid?.() === 0 ? ['--user=root'] : []),
      ],
      { stdio: 'ignore' },
    );
    let exited = false;
    const exit = new Promise<void>((resolve) => child.once('exit', () => ((exited = true), resolve())));
    const kill = async () => {
      if (!exited) child.kill('SIGKILL');
      await exit;
    };
    t.teardown(kill);
    const deadline = Date.now() + 3_000;
    while (!exited && Date.now() < deadline) {
      if ((await dig(port)) === answer) return { port, answer, child, kill };
    }
    await kill();
  }
  throw new Error('dnsmasq did not start');
}

/** One dig query for who.test; resolves with the answer, or '' when dig failed or timed out. */
async function dig(port: number): Promise<string> {
  try {
    const { stdout } = await run(digPath!, ['@127.0.0.1', '-p', String(port), 'who.test', 'A', '+short', '+tries=1', '+time=1'], { timeout: 3_000 });
    return stdout.trim();
  } catch {
    return '';
  }
}

async function startBalancer(t: { teardown(fn: () => unknown): void }, servers: readonly Dnsmasq[]) {
  const config = validateConfig({
    listeners: [{ name: 'dns', protocol: 'udp', bind: '127.0.0.1:0', pool: 'dns', udp: { responses: 1, sessionTimeout: '5s' } }],
    pools: { dns: { algorithm: 'round-robin', servers: servers.map((server) => ({ address: `127.0.0.1:${server.port}` })) } },
  });
  const { logger, lines } = captureLogger('info');
  const pool = new Pool('dns', config.pools.dns!, { logger });
  const listener = new UdpListener(config.listeners[0] as UdpListenerConfig, pool, { logger });
  await listener.listen();
  t.teardown(() => {
    listener.close();
    pool.close();
  });
  return { listener, pool, port: listener.address().port, lines };
}

function tally(answers: readonly string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const answer of answers) counts[answer || '(failed)'] = (counts[answer || '(failed)'] ?? 0) + 1;
  return counts;
}

/** A DNS query for who.test A with the given id. */
function dnsQuery(id: number): Buffer {
  const name = Buffer.from([3, ...Buffer.from('who'), 4, ...Buffer.from('test'), 0]);
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE(0x0100, 2); // RD
  header.writeUInt16BE(1, 4); // QDCOUNT
  return Buffer.concat([header, name, Buffer.from([0, 1, 0, 1])]);
}

/** id and A address of a one-answer response (the address is its last four bytes). */
function dnsAnswer(response: Buffer): { id: number; address: string } {
  const ancount = response.readUInt16BE(6);
  const address = ancount === 1 ? [...response.subarray(response.length - 4)].join('.') : '';
  return { id: response.readUInt16BE(0), address };
}

/**
 * Sends `count` queries from one socket without waiting (as dnsperf does), `window` at a
 * time outstanding; resolves with each answer by query id once all came back or 3 s passed.
 */
async function pipelined(socket: Socket, port: number, count: number, window: number): Promise<Map<number, string>> {
  const answers = new Map<number, string>();
  let sent = 0;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 3_000);
    const sendMore = () => {
      while (sent < count && sent - answers.size < window) socket.send(dnsQuery(sent++), port, '127.0.0.1');
    };
    socket.on('message', (response) => {
      const { id, address } = dnsAnswer(response);
      answers.set(id, address);
      if (answers.size === count) {
        clearTimeout(timer);
        resolve();
      } else sendMore();
    });
    sendMore();
  });
  return answers;
}

t.test('dig through Switchyard with responses: 1 — answers correct and spread over both servers', { skip: missing, timeout: 25_000 }, async (t) => {
  const servers = [await startDnsmasq(t, '127.0.0.11'), await startDnsmasq(t, '127.0.0.12')];
  const s = await startBalancer(t, servers);
  const answers: string[] = [];
  for (let i = 0; i < 20; i++) answers.push(await dig(s.port));
  t.same(tally(answers), { '127.0.0.11': 10, '127.0.0.12': 10 }, 'round-robin per query, every query answered');
  await waitFor(() => s.listener.openCount() === 0, 2_000, 'sessions to end with their reply');
  const ends = s.lines().filter((line) => line.msg === 'session ended');
  t.equal(ends.length, 20);
  t.ok(
    ends.every((line) => line.end === 'responses' && line.datagramsIn === 1 && line.datagramsOut === 1),
    'each query its own session, ended by its answer',
  );
});

t.test('a dnsmasq killed mid-run: queries keep succeeding (ECONNREFUSED failover)', { skip: missing, timeout: 25_000 }, async (t) => {
  const servers = [await startDnsmasq(t, '127.0.0.11'), await startDnsmasq(t, '127.0.0.12')];
  const s = await startBalancer(t, servers);
  const before: string[] = [];
  for (let i = 0; i < 6; i++) before.push(await dig(s.port));
  t.same(tally(before), { '127.0.0.11': 3, '127.0.0.12': 3 });
  await servers[1]!.kill();
  const after: string[] = [];
  for (let i = 0; i < 12; i++) after.push(await dig(s.port));
  t.same(tally(after), { '127.0.0.11': 12 }, 'no query lost after the kill');
  const [, killed] = s.pool.servers;
  t.equal(killed!.healthy, false, 'marked down by passive checks (3 refusals)');
  t.equal(s.listener.counters.failovers, 3, 'three queries were replayed to the live server');
  t.equal(
    s.lines().filter((line) => line.end === 'error' && line.detail === 'ECONNREFUSED (port unreachable)').length,
    3,
  );
});

t.test('pipelined load from few sockets (dnsperf-like) with a server killed mid-run', { skip: missing, timeout: 25_000 }, async (t) => {
  const servers = [await startDnsmasq(t, '127.0.0.11'), await startDnsmasq(t, '127.0.0.12')];
  const s = await startBalancer(t, servers);
  const sockets = await Promise.all(
    Array.from({ length: 8 }, async () => {
      const socket = createSocket('udp4');
      socket.on('error', () => {});
      await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
      t.teardown(() => socket.close());
      return socket;
    }),
  );
  const firstRun = await Promise.all(sockets.map((socket) => pipelined(socket, s.port, 200, 20)));
  const all = firstRun.flatMap((answers) => [...answers.values()]);
  t.equal(all.length, 1_600, 'every pipelined query answered');
  t.ok(
    all.every((answer) => answer === '127.0.0.11' || answer === '127.0.0.12'),
    'every answer correct',
  );
  const counts = tally(all);
  t.ok((counts['127.0.0.11'] ?? 0) > 0 && (counts['127.0.0.12'] ?? 0) > 0, `both servers answered (${JSON.stringify(counts)})`);

  await servers[1]!.kill();
  for (const socket of sockets) socket.removeAllListeners('message');
  const secondRun = await Promise.all(sockets.map((socket) => pipelined(socket, s.port, 100, 10)));
  const answered = secondRun.reduce((sum, answers) => sum + answers.size, 0);
  t.equal(answered, 800, 'every query answered after the kill');
  t.ok(
    secondRun.every((answers) => [...answers.values()].every((answer) => answer === '127.0.0.11')),
    'by the live server',
  );
  await waitFor(() => s.listener.openCount() === 0, 3_000, 'sessions to end');
  t.same(
    s.pool.servers.map((server) => server.active),
    [0, 0],
    'every pick released',
  );
});
