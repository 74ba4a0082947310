import t from 'tap';
import { UpstreamServer } from '../../src/pool/server.ts';
import { createRoundRobin } from '../../src/balance/round-robin.ts';
import type { Selector } from '../../src/balance/types.ts';

// Servers are pure objects here (no sockets); server i is 10.0.0.(i+1):5432 and is named
// by a letter in expectations: a, b, c, ...
interface Spec {
  w: number;
  healthy?: boolean;
  enabled?: boolean;
  max?: number;
  active?: number;
}

function buildServers(specs: readonly Spec[]): UpstreamServer[] {
  return specs.map((spec, index) => {
    const server = new UpstreamServer(
      { address: { host: `10.0.0.${index + 1}`, port: 5432, family: 4 }, weight: spec.w, backup: false, maxConnections: spec.max },
      index,
    );
    server.healthy = spec.healthy ?? true;
    server.enabled = spec.enabled ?? true;
    server.active = spec.active ?? 0;
    return server;
  });
}

const letter = (server: UpstreamServer | undefined): string => (server === undefined ? '-' : String.fromCharCode(97 + server.index));
const build = (servers: readonly UpstreamServer[]): Selector => createRoundRobin(servers, { random: () => 0.999 });

/** Picks `count` times and returns the picks as letters, e.g. "aabacaa". */
function sequence(selector: Selector, count: number, exclude?: ReadonlySet<UpstreamServer>): string {
  let out = '';
  for (let i = 0; i < count; i++) out += letter(selector.pick('192.0.2.1', exclude));
  return out;
}

function counts(selector: Selector, servers: readonly UpstreamServer[], picks: number): number[] {
  const tally = servers.map(() => 0);
  for (let i = 0; i < picks; i++) {
    const server = selector.pick('192.0.2.1', undefined);
    if (server !== undefined) tally[server.index]!++;
  }
  return tally;
}

t.test('order is smooth, as nginx: interleaved, never bursts', async (t) => {
  const cases = [
    { weights: [5, 1, 1], picks: 14, expect: 'aabacaaaabacaa' },
    { weights: [1, 1, 1], picks: 6, expect: 'abcabc' },
    { weights: [2, 1], picks: 6, expect: 'abaaba' },
    { weights: [1, 2], picks: 6, expect: 'babbab' },
    { weights: [3, 2], picks: 5, expect: 'ababa' },
    // Traced by hand: [4,3,2,1]→a [-2,6,4,2]→b [2,-1,6,3]→c [6,2,-2,4]→a [0,5,0,5]→b (tie: first)
    // [4,-2,2,6]→d [8,1,4,-3]→a [2,4,6,-2]→c [6,7,-2,-1]→b [10,0,0,0]→a, back to all zero.
    { weights: [4, 3, 2, 1], picks: 10, expect: 'abcabdacba' },
  ];
  for (const c of cases) {
    t.equal(sequence(build(buildServers(c.weights.map((w) => ({ w })))), c.picks), c.expect, `weights ${c.weights.join(',')}`);
  }
});

t.test('exact shares over whole cycles', async (t) => {
  const cases = [
    { servers: [{ w: 1 }, { w: 2 }], picks: 30, expect: [10, 20] },
    { servers: [{ w: 1 }, { w: 1 }, { w: 1 }], picks: 30, expect: [10, 10, 10] },
    { servers: [{ w: 5 }, { w: 1 }, { w: 1 }], picks: 70, expect: [50, 10, 10] },
    { servers: [{ w: 4 }, { w: 3 }, { w: 2 }, { w: 1 }], picks: 100, expect: [40, 30, 20, 10] },
    { servers: [{ w: 100 }, { w: 1 }], picks: 303, expect: [300, 3] },
    { servers: [{ w: 7 }, { w: 11 }, { w: 13 }], picks: 31 * 4, expect: [28, 44, 52] },
    { servers: [{ w: 1_000_000 }, { w: 1 }], picks: 1_000_001, expect: [1_000_000, 1] },
  ];
  for (const c of cases) {
    const servers = buildServers(c.servers);
    t.same(counts(build(servers), servers, c.picks), c.expect, `weights ${c.servers.map((s) => s.w).join(',')}`);
  }
});

t.test('every window of one cycle holds exact shares, not just the first', async (t) => {
  const weights = [5, 3, 2];
  const selector = build(buildServers(weights.map((w) => ({ w }))));
  const picks = sequence(selector, 10 * 20);
  for (let start = 0; start < picks.length; start += 10) {
    const window = picks.slice(start, start + 10);
    const tally = ['a', 'b', 'c'].map((name) => window.split(name).length - 1);
    if (tally.join() !== weights.join()) t.fail(`cycle at ${start}: ${window} has shares ${tally.join()}`);
  }
  t.pass('20 consecutive cycles each hold shares 5,3,2');
});

t.test('weight 0 is never picked', async (t) => {
  const cases = [
    { servers: [{ w: 0 }, { w: 1 }, { w: 2 }], picks: 30, expect: [0, 10, 20] },
    { servers: [{ w: 3 }, { w: 0 }], picks: 9, expect: [9, 0] },
  ];
  for (const c of cases) {
    const servers = buildServers(c.servers);
    t.same(counts(build(servers), servers, c.picks), c.expect);
  }
  t.equal(build(buildServers([{ w: 0 }, { w: 0 }])).pick('192.0.2.1', undefined), undefined, 'all weight 0: none');
});

t.test('a weight changed at run time applies from the next pick, without a rebuild', async (t) => {
  const servers = buildServers([{ w: 1 }, { w: 1 }]);
  const selector = build(servers);
  t.same(counts(selector, servers, 10), [5, 5]);
  servers[1]!.weight = 4;
  t.same(counts(selector, servers, 50), [10, 40]);
});

t.test('servers that are not candidates are skipped', async (t) => {
  const cases = [
    { name: 'unhealthy', servers: [{ w: 1 }, { w: 1, healthy: false }, { w: 1 }], picks: 10, expect: [5, 0, 5] },
    { name: 'disabled (drained)', servers: [{ w: 1, enabled: false }, { w: 2 }, { w: 1 }], picks: 30, expect: [0, 20, 10] },
    { name: 'full at maxConnections', servers: [{ w: 1 }, { w: 5, max: 3, active: 3 }], picks: 4, expect: [4, 0] },
    { name: 'heavy server down', servers: [{ w: 5, healthy: false }, { w: 1 }, { w: 1 }], picks: 10, expect: [0, 5, 5] },
  ];
  for (const c of cases) {
    const servers = buildServers(c.servers);
    t.same(counts(build(servers), servers, c.picks), c.expect, c.name);
  }
});

t.test('a skipped server keeps the cycle state: nothing is rebuilt (nginx semantics)', async (t) => {
  // Weights 1,1,1. Running weights start at 0,0,0.
  // Pick excluding a: b,c get +1 → [0,1,1], b wins (first of equal) → [0,-1,1].
  // Then a normal pick: [1,0,2] → c → [1,0,-1]; [2,1,0] → a → [-1,1,0]; [0,2,1] → b.
  // A selector that reset its state on exclusion would give a, b, c instead.
  const servers = buildServers([{ w: 1 }, { w: 1 }, { w: 1 }]);
  const selector = build(servers);
  t.equal(letter(selector.pick('192.0.2.1', new Set([servers[0]!]))), 'b');
  t.equal(sequence(selector, 3), 'cab');

  // Health works the same way. b flaps down for two picks and back:
  // a: [1,1,1] → a → [-2,1,1]; b down: [-1,_,2] → c → [-1,1,0]; [0,_,1] → c → [0,1,-1];
  // b back: [1,2,0] → b → [1,-1,0]; [2,0,1] → a → [-1,0,1]; [0,1,2] → c → [0,1,-1]; ...
  const flapping = buildServers([{ w: 1 }, { w: 1 }, { w: 1 }]);
  const flapSelector = build(flapping);
  t.equal(sequence(flapSelector, 1), 'a');
  flapping[1]!.healthy = false;
  t.equal(sequence(flapSelector, 2), 'cc', 'b skipped while down; its running weight is frozen');
  flapping[1]!.healthy = true;
  t.equal(sequence(flapSelector, 6), 'bacbac', 'b rejoins the cycle where it left it');
});

t.test('exclusion sets (failover within one connection)', async (t) => {
  const servers = buildServers([{ w: 1 }, { w: 1 }, { w: 1 }]);
  const selector = build(servers);
  const tried = new Set<UpstreamServer>();
  const order: string[] = [];
  for (let attempt = 0; attempt < 3; attempt++) {
    const server = selector.pick('192.0.2.1', tried);
    t.ok(server, `attempt ${attempt} finds an untried server`);
    t.notOk(tried.has(server!), 'never an already tried server');
    tried.add(server!);
    order.push(letter(server));
  }
  t.same([...order].sort(), ['a', 'b', 'c'], 'each server tried once');
  t.equal(selector.pick('192.0.2.1', tried), undefined, 'all tried: none left');
  const fresh = buildServers([{ w: 1 }, { w: 1 }, { w: 1 }]);
  t.equal(sequence(build(fresh), 6, new Set([fresh[2]!])), 'ababab', 'excluding c alternates a and b');
});

t.test('returns undefined when no server is eligible', async (t) => {
  t.equal(build([]).pick('192.0.2.1', undefined), undefined, 'empty pool');
  const down = buildServers([{ w: 1, healthy: false }, { w: 2, enabled: false }, { w: 0 }]);
  t.equal(build(down).pick('192.0.2.1', undefined), undefined, 'all down, disabled or weight 0');
  const servers = buildServers([{ w: 1 }]);
  const selector = build(servers);
  t.equal(selector.pick('192.0.2.1', new Set(servers)), undefined, 'the only server excluded');
  t.equal(letter(selector.pick('192.0.2.1', undefined)), 'a', 'and picked again without the exclusion');
});
