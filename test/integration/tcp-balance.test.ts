import t from 'tap';
import type { Socket } from 'node:net';
import { startBalancer } from '../helpers/balancer.ts';
import { readTag, tagServer, waitFor, type RunningServer } from '../helpers/net.ts';
import { tcpDocument } from '../helpers/tcp-balancer.ts';
import type { Switchyard } from '../../src/server.ts';

// Balancing through real loopback sockets: each upstream is a tag server (it writes its
// letter on connect), so the client learns which server the balancer picked. Connections are
// opened one after another, so the order of picks is the order of connections.

interface Setup {
  sy: Switchyard;
  port: number;
  servers: RunningServer[];
  /** Client sockets still open; destroyed at teardown. */
  clients: Set<Socket>;
}

async function setup(
  t: { teardown(fn: () => unknown): void },
  tags: readonly string[],
  pool: Record<string, unknown>,
  weights?: readonly number[],
): Promise<Setup> {
  const servers = await Promise.all(tags.map((tag) => tagServer(tag)));
  const { sy } = await startBalancer(
    tcpDocument(
      servers.map((server, i) => (weights ? { port: server.port, weight: weights[i]! } : server.port)),
      { pool },
    ),
  );
  const clients = new Set<Socket>();
  t.teardown(async () => {
    for (const socket of clients) socket.destroy();
    await sy.shutdown(1000);
    await Promise.all(servers.map((server) => server.close()));
  });
  return { sy, port: sy.address('t').port, servers, clients };
}

/** Opens a connection, returns the picked server's tag and closes it cleanly. */
async function fetchTag(port: number, localAddress?: string): Promise<string> {
  const { tag, socket } = await readTag(port, localAddress === undefined ? {} : { localAddress });
  socket.end();
  return tag;
}

/** Opens a connection and keeps it open (tracked for teardown); returns its tag and socket. */
async function holdTag(s: Setup): Promise<{ tag: string; socket: Socket }> {
  const held = await readTag(s.port);
  s.clients.add(held.socket);
  return held;
}

function tally(tags: readonly string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const tag of tags) counts[tag] = (counts[tag] ?? 0) + 1;
  return counts;
}

async function sequence(port: number, count: number): Promise<string[]> {
  const tags: string[] = [];
  for (let i = 0; i < count; i++) tags.push(await fetchTag(port));
  return tags;
}

t.test('round-robin: 30 connections over 3 equal servers go 10/10/10, in order', { timeout: 20_000 }, async (t) => {
  const s = await setup(t, ['a', 'b', 'c'], { algorithm: 'round-robin' });
  const tags = await sequence(s.port, 30);
  t.same(tally(tags), { a: 10, b: 10, c: 10 });
  t.equal(tags.join(''), 'abc'.repeat(10), 'equal weights rotate a b c');
});

t.test('round-robin: weights 1:2 give 10/20 over 30 connections, interleaved', { timeout: 20_000 }, async (t) => {
  const s = await setup(t, ['a', 'b'], { algorithm: 'round-robin' }, [1, 2]);
  const tags = await sequence(s.port, 30);
  t.same(tally(tags), { a: 10, b: 20 });
  t.equal(tags.join(''), 'bab'.repeat(10), 'smooth: never a burst of b longer than the weights ask');
});

t.test('round-robin: smooth weighted order for weights 5,1,1 is a a b a c a a', { timeout: 20_000 }, async (t) => {
  const s = await setup(t, ['a', 'b', 'c'], { algorithm: 'round-robin' }, [5, 1, 1]);
  const tags = await sequence(s.port, 21);
  t.equal(tags.join(''), 'aabacaa'.repeat(3));
});

t.test('least-connections: held connections steer new ones to the idle servers; ties rotate', { timeout: 20_000 }, async (t) => {
  const s = await setup(t, ['a', 'b', 'c'], { algorithm: 'least-connections' });
  const pool = s.sy.pools.get('p')!;
  const [a, b, c] = pool.servers;
  const held: Array<{ tag: string; socket: Socket }> = [];

  // Four connections held on a: b and c are out of the pool while they are opened.
  pool.setHealth(b!, false, 'test');
  pool.setHealth(c!, false, 'test');
  for (let i = 0; i < 4; i++) held.push(await holdTag(s));
  t.same(tally(held.map((h) => h.tag)), { a: 4 }, 'only a was ready');
  pool.setHealth(b!, true, 'test');
  pool.setHealth(c!, true, 'test');

  // a has 4 open, b and c none: the next 8 go to b and c only, alternating.
  const next8: string[] = [];
  for (let i = 0; i < 8; i++) {
    const h = await holdTag(s);
    held.push(h);
    next8.push(h.tag);
  }
  t.same(tally(next8), { b: 4, c: 4 }, 'nothing new went to a, the busy server');
  t.notMatch(next8.join(''), /bb|cc/, 'b and c alternate while they are tied');

  // All three at 4: a tie; three more land one on each.
  const next3: string[] = [];
  for (let i = 0; i < 3; i++) {
    const h = await holdTag(s);
    held.push(h);
    next3.push(h.tag);
  }
  t.same([...next3].sort(), ['a', 'b', 'c'], 'a three-way tie rotates over all servers');
  t.same([a!.active, b!.active, c!.active], [5, 5, 5], 'the pool counts 5 active connections on each');

  // Close two of b's connections: b is now the least loaded and takes the next two.
  const ofB = held.filter((h) => h.tag === 'b').slice(0, 2);
  for (const h of ofB) {
    h.socket.end();
    s.clients.delete(h.socket);
  }
  await waitFor(() => b!.active === 3, 3000, 'b to release two connections');
  const after: string[] = [];
  for (let i = 0; i < 2; i++) {
    const h = await holdTag(s);
    held.push(h);
    after.push(h.tag);
  }
  t.same(after, ['b', 'b'], 'the server with fewest connections wins');

  // Every release is counted exactly once: closing all brings every server back to 0.
  for (const h of held) h.socket.end();
  s.clients.clear();
  await waitFor(() => a!.active === 0 && b!.active === 0 && c!.active === 0, 3000, 'all connections released');
  t.same([a!.active, b!.active, c!.active], [0, 0, 0]);
});

// 48 source addresses: with 3 servers the chance that one gets no source at all is
// 3 * (2/3)^48 ≈ 1e-8, so "every server gets some" cannot flake in practice.
const sources = Array.from({ length: 48 }, (_, i) => `127.0.0.${i + 2}`);

async function mapSources(port: number): Promise<Map<string, string>> {
  const mapping = new Map<string, string>();
  for (const source of sources) mapping.set(source, await fetchTag(port, source));
  return mapping;
}

t.test('ip-hash: the same source address always reaches the same server; sources spread', { timeout: 30_000 }, async (t) => {
  const s = await setup(t, ['a', 'b', 'c'], { algorithm: 'ip-hash' });
  const first = await mapSources(s.port);
  for (let round = 2; round <= 3; round++) {
    const again = await mapSources(s.port);
    const changed = sources.filter((source) => again.get(source) !== first.get(source));
    t.same(changed, [], `round ${round}: every source kept its server`);
  }
  const perServer = tally([...first.values()]);
  t.same(Object.keys(perServer).sort(), ['a', 'b', 'c'], `every server has clients (${JSON.stringify(perServer)})`);
});

t.test('ip-hash: a server going down moves only its own clients, and they come back', { timeout: 30_000 }, async (t) => {
  const s = await setup(t, ['a', 'b', 'c'], { algorithm: 'ip-hash' });
  const pool = s.sy.pools.get('p')!;
  const before = await mapSources(s.port);
  const perServer = tally([...before.values()]);
  // Take down the server with the most clients, so the test always moves someone.
  const downTag = Object.entries(perServer).sort((x, y) => y[1] - x[1])[0]![0];
  const downServer = pool.servers['abc'.indexOf(downTag)]!;
  pool.setHealth(downServer, false, 'test');

  const during = await mapSources(s.port);
  const moved = sources.filter((source) => before.get(source) === downTag);
  const stayedWrongly = sources.filter((source) => before.get(source) !== downTag && during.get(source) !== before.get(source));
  t.same(stayedWrongly, [], 'clients of the other servers kept their server');
  t.ok(moved.length > 0, `${moved.length} clients were on ${downTag}`);
  t.same(
    moved.filter((source) => during.get(source) === downTag),
    [],
    `no client reached ${downTag} while it was down`,
  );
  const movedTo = tally(moved.map((source) => during.get(source)!));
  t.ok(Object.keys(movedTo).every((tag) => tag !== downTag), `moved clients spread over the others: ${JSON.stringify(movedTo)}`);

  pool.setHealth(downServer, true, 'test');
  const after = await mapSources(s.port);
  t.same(
    sources.filter((source) => after.get(source) !== before.get(source)),
    [],
    'once it is back, every client is on its original server again',
  );
});
