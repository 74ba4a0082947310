import t, { type Test } from 'tap';
import { UpstreamServer } from '../../src/pool/server.ts';
import { createIpHash } from '../../src/balance/ip-hash.ts';
import type { Selector } from '../../src/balance/types.ts';

// Servers are pure objects here (no sockets). Client IPs come from a seeded generator, so
// every run sees the same addresses and the statistical bounds below cannot flake.
interface Spec {
  w: number;
  host?: string;
  healthy?: boolean;
}

function buildServers(specs: readonly Spec[]): UpstreamServer[] {
  return specs.map((spec, index) => {
    const server = new UpstreamServer({ address: { host: spec.host ?? `10.0.0.${index + 1}`, port: 5432, family: 4 }, weight: spec.w, backup: false }, index);
    server.healthy = spec.healthy ?? true;
    return server;
  });
}

const equal = (n: number): Spec[] => Array.from({ length: n }, () => ({ w: 1 }));
const build = (servers: readonly UpstreamServer[]): Selector => createIpHash(servers, { random: () => 0.5 });

/** mulberry32: a small seeded PRNG, so the test's "random" clients are reproducible. */
function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 15), z | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    return ((z ^ (z >>> 14)) >>> 0) / 4_294_967_296;
  };
}

function randomIpv4s(count: number, seed: number): string[] {
  const random = seeded(seed);
  const octet = () => Math.floor(random() * 256);
  return Array.from({ length: count }, () => `${octet()}.${octet()}.${octet()}.${octet()}`);
}

function randomIpv6s(count: number, seed: number): string[] {
  const random = seeded(seed);
  const group = () => Math.floor(random() * 65536).toString(16);
  return Array.from({ length: count }, () => `2001:db8:${group()}:${group()}:${group()}:${group()}:${group()}:${group()}`);
}

/** Which server (by index, -1 for none) each client lands on. */
function mapping(selector: Selector, clients: readonly string[]): number[] {
  return clients.map((ip) => selector.pick(ip, undefined)?.index ?? -1);
}

function shares(map: readonly number[], servers: number): number[] {
  const tally = new Array<number>(servers).fill(0);
  for (const index of map) if (index >= 0) tally[index]!++;
  return tally;
}

/** Fails unless each share is within ±10% (relative) of its weight's share. */
function checkShares(t: Test, tally: readonly number[], weights: readonly number[], label: string): void {
  const clients = tally.reduce((a, b) => a + b, 0);
  const totalWeight = weights.reduce((a, b) => a + b, 0);
  weights.forEach((weight, index) => {
    const expected = (clients * weight) / totalWeight;
    t.ok(Math.abs(tally[index]! - expected) <= expected * 0.1, `${label}: server ${index} has ${tally[index]} of ${clients}, expected ${expected.toFixed(0)} ±10%`);
  });
}

t.test('the same IP always gets the same server', async (t) => {
  const servers = buildServers(equal(5));
  const selector = build(servers);
  const clients = randomIpv4s(1000, 1);
  const first = mapping(selector, clients);
  t.same(mapping(selector, clients), first, 'stable across repeated picks');
  t.same(mapping(build(servers), clients), first, 'stable across a selector rebuilt from the same servers');
  // Seeds come from each server's address, not its position: reordering the config file
  // (a reload) keeps every client on the same server address.
  const reversed = buildServers(equal(5)).reverse();
  const reversedSelector = build(reversed);
  const moved = clients.filter((ip) => selector.pick(ip, undefined)!.label !== reversedSelector.pick(ip, undefined)!.label);
  t.same(moved, [], 'stable across reordering the server list');
});

t.test('distribution over 10k clients is within ±10% of each weight share', async (t) => {
  const cases = [
    { name: '4 equal', servers: equal(4) },
    { name: '10 equal', servers: equal(10) },
    { name: 'weights 1,2,3', servers: [{ w: 1 }, { w: 2 }, { w: 3 }] },
    { name: 'weights 5,1,1', servers: [{ w: 5 }, { w: 1 }, { w: 1 }] },
    { name: 'weights 100,50,25,10', servers: [{ w: 100 }, { w: 50 }, { w: 25 }, { w: 10 }] },
  ];
  const random = randomIpv4s(10_000, 2);
  // Sequential addresses are the realistic worst case for a weak hash (one office NAT range).
  const sequential = Array.from({ length: 10_000 }, (_, i) => `192.168.${i >> 8}.${i & 255}`);
  for (const c of cases) {
    const weights = c.servers.map((s) => s.w);
    const selector = build(buildServers(c.servers));
    checkShares(t, shares(mapping(selector, random), weights.length), weights, `${c.name}, random IPs`);
    checkShares(t, shares(mapping(selector, sequential), weights.length), weights, `${c.name}, sequential IPs`);
  }
});

t.test('IPv6 clients hash and spread like IPv4 ones', async (t) => {
  const weights = [1, 1, 2];
  const selector = build(buildServers(weights.map((w) => ({ w }))));
  const clients = randomIpv6s(10_000, 3);
  const first = mapping(selector, clients);
  t.same(mapping(selector, clients), first, 'same IPv6 client, same server');
  checkShares(t, shares(first, weights.length), weights, 'IPv6');
  t.ok(selector.pick('::1', undefined), 'a short IPv6 literal works');
  t.ok(selector.pick('fe80::1%eth0', undefined), 'a scoped IPv6 literal works');
});

t.test('a server going down moves only its own clients, about 1/N of them', async (t) => {
  const clients = randomIpv4s(10_000, 4);
  for (const n of [2, 5, 8]) {
    const servers = buildServers(equal(n));
    const selector = build(servers);
    const before = mapping(selector, clients);
    for (let down = 0; down < n; down++) {
      servers[down]!.healthy = false;
      const after = mapping(selector, clients);
      let kept = true;
      let moved = 0;
      for (let i = 0; i < clients.length; i++) {
        if (before[i] === down) {
          moved++;
          if (after[i] === down || after[i] === -1) kept = false;
        } else if (after[i] !== before[i]) {
          kept = false;
        }
      }
      t.ok(kept, `N=${n}, server ${down} down: every other client keeps its server, its own move elsewhere`);
      const fraction = moved / clients.length;
      t.ok(Math.abs(fraction - 1 / n) <= 0.1 / n, `N=${n}, server ${down} down: ${(fraction * 100).toFixed(1)}% moved, about 1/${n}`);
      servers[down]!.healthy = true;
      t.same(mapping(selector, clients), before, `N=${n}, server ${down} back: every client is home again`);
    }
  }
});

t.test('the clients of a failed server spread over the others by weight', async (t) => {
  const weights = [1, 1, 1, 3];
  const servers = buildServers(weights.map((w) => ({ w })));
  const selector = build(servers);
  const clients = randomIpv4s(20_000, 5);
  const before = mapping(selector, clients);
  servers[0]!.healthy = false;
  const after = mapping(selector, clients);
  const movedTo = [0, 0, 0, 0];
  for (let i = 0; i < clients.length; i++) if (before[i] === 0) movedTo[after[i]!]!++;
  t.equal(movedTo[0], 0);
  checkShares(t, movedTo.slice(1), [1, 1, 3], 'the moved clients (servers b, c, d)');
});

t.test('adding a server takes clients only from the others, about 1/(N+1)', async (t) => {
  const clients = randomIpv4s(10_000, 6);
  const before = mapping(build(buildServers(equal(4))), clients);
  const after = mapping(build(buildServers(equal(5))), clients);
  let onlyToNew = true;
  let moved = 0;
  for (let i = 0; i < clients.length; i++) {
    if (after[i] === before[i]) continue;
    moved++;
    if (after[i] !== 4) onlyToNew = false;
  }
  t.ok(onlyToNew, 'every client that moved went to the new server');
  t.ok(Math.abs(moved / clients.length - 1 / 5) <= 0.02, `${((moved / clients.length) * 100).toFixed(1)}% moved, about 1/5`);
});

t.test('weights skew the shares, and a weight change moves only the clients it must', async (t) => {
  const servers = buildServers([{ w: 1 }, { w: 3 }]);
  const selector = build(servers);
  const clients = randomIpv4s(10_000, 7);
  const before = mapping(selector, clients);
  checkShares(t, shares(before, 2), [1, 3], 'weights 1,3');
  servers[0]!.weight = 3;
  const after = mapping(selector, clients);
  checkShares(t, shares(after, 2), [3, 3], 'after a becomes 3 (no rebuild)');
  const wrongWay = clients.filter((_, i) => before[i] === 0 && after[i] === 1).length;
  t.equal(wrongWay, 0, 'raising a weight only ever moves clients towards that server');
  servers[0]!.weight = 0;
  t.same(shares(mapping(selector, clients), 2), [0, 10_000], 'weight 0 is never picked');
});

t.test('exclusion gives a deterministic next choice: the runner-up score', async (t) => {
  const servers = buildServers(equal(5));
  const selector = build(servers);
  let consistent = true;
  let distinct = true;
  for (const ip of randomIpv4s(500, 8)) {
    const first = selector.pick(ip, undefined)!;
    const second = selector.pick(ip, new Set([first]))!;
    const third = selector.pick(ip, new Set([first, second]))!;
    if (second === first || third === first || third === second) distinct = false;
    // Same answer again, and the same answer as when `first` is down instead of excluded.
    if (selector.pick(ip, new Set([first])) !== second) consistent = false;
    first.healthy = false;
    if (selector.pick(ip, undefined) !== second) consistent = false;
    if (selector.pick(ip, new Set([second])) !== third) consistent = false;
    first.healthy = true;
  }
  t.ok(distinct, 'first, second and third choices are different servers');
  t.ok(consistent, 'the failover order is fixed per client and agrees with health');
  t.equal(selector.pick('192.0.2.1', new Set(servers)), undefined, 'all excluded: none');
});

t.test('the same address listed twice gets two shares', async (t) => {
  const servers = buildServers([{ w: 1, host: '10.0.0.1' }, { w: 1, host: '10.0.0.1' }, { w: 1, host: '10.0.0.2' }]);
  checkShares(t, shares(mapping(build(servers), randomIpv4s(10_000, 9)), 3), [1, 1, 1], 'duplicate address');
});

t.test('returns undefined when no server is eligible', async (t) => {
  t.equal(build([]).pick('192.0.2.1', undefined), undefined, 'empty pool');
  t.equal(build(buildServers([{ w: 1, healthy: false }, { w: 0 }])).pick('192.0.2.1', undefined), undefined, 'down or weight 0');
});
