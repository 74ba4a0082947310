import t from 'tap';
import { UpstreamServer } from '../../src/pool/server.ts';
import { createLeastConnections } from '../../src/balance/least-connections.ts';
import type { Selector } from '../../src/balance/types.ts';

// Servers are pure objects here (no sockets); server i is 10.0.0.(i+1):5432 and is named
// by a letter in expectations: a, b, c, ...
interface Spec {
  w: number;
  active?: number;
  max?: number;
  healthy?: boolean;
  enabled?: boolean;
}

function buildServers(specs: readonly Spec[]): UpstreamServer[] {
  return specs.map((spec, index) => {
    const server = new UpstreamServer(
      { address: { host: `10.0.0.${index + 1}`, port: 5432, family: 4 }, weight: spec.w, backup: false, maxConnections: spec.max },
      index,
    );
    server.active = spec.active ?? 0;
    server.healthy = spec.healthy ?? true;
    server.enabled = spec.enabled ?? true;
    return server;
  });
}

const letter = (server: UpstreamServer | undefined): string => (server === undefined ? '-' : String.fromCharCode(97 + server.index));
/** random() = 0 starts the first scan at server a, so expectations are exact. */
const build = (servers: readonly UpstreamServer[], random = 0): Selector => createLeastConnections(servers, { random: () => random });

/** Picks without changing `active` (as if each connection closed before the next). */
function sequence(selector: Selector, count: number, exclude?: ReadonlySet<UpstreamServer>): string {
  let out = '';
  for (let i = 0; i < count; i++) out += letter(selector.pick('192.0.2.1', exclude));
  return out;
}

/** Picks and keeps each connection open (active++), as Pool.pick does; returns active per server. */
function fill(selector: Selector, servers: readonly UpstreamServer[], picks: number): number[] {
  for (let i = 0; i < picks; i++) {
    const server = selector.pick('192.0.2.1', undefined);
    if (server !== undefined) server.active++;
  }
  return servers.map((server) => server.active);
}

t.test('picks the fewest active connections relative to weight', async (t) => {
  const cases = [
    { name: 'plain minimum', servers: [{ w: 1, active: 3 }, { w: 1, active: 1 }, { w: 1, active: 2 }], expect: 'b' },
    { name: 'minimum is last', servers: [{ w: 1, active: 3 }, { w: 1, active: 2 }, { w: 1, active: 0 }], expect: 'c' },
    { name: 'weight lowers the load: 3/2 < 2/1', servers: [{ w: 1, active: 2 }, { w: 2, active: 3 }], expect: 'b' },
    { name: 'weight 10 with 9 active beats weight 1 with 1', servers: [{ w: 1, active: 1 }, { w: 10, active: 9 }], expect: 'b' },
    { name: '5/4 > 1/1', servers: [{ w: 4, active: 5 }, { w: 1, active: 1 }], expect: 'b' },
    { name: 'idle heavy server first', servers: [{ w: 1, active: 1 }, { w: 100, active: 0 }], expect: 'b' },
    { name: 'large numbers stay exact', servers: [{ w: 1_000_000, active: 999_999 }, { w: 999_999, active: 999_999 }], expect: 'a' },
  ];
  for (const c of cases) {
    t.equal(letter(build(buildServers(c.servers)).pick('192.0.2.1', undefined)), c.expect, c.name);
  }
});

t.test('ties rotate instead of always taking the first server', async (t) => {
  const cases = [
    { name: 'idle pool', servers: [{ w: 1 }, { w: 1 }, { w: 1 }], picks: 7, expect: 'abcabca' },
    { name: 'equal load', servers: [{ w: 1, active: 4 }, { w: 1, active: 4 }], picks: 4, expect: 'abab' },
    { name: 'equal relative load 2/1 = 4/2', servers: [{ w: 1, active: 2 }, { w: 2, active: 4 }, { w: 1, active: 3 }], picks: 4, expect: 'abab' },
    { name: 'a loaded server stays out of the rotation', servers: [{ w: 1 }, { w: 1, active: 1 }, { w: 1 }], picks: 4, expect: 'acac' },
  ];
  for (const c of cases) t.equal(sequence(build(buildServers(c.servers)), c.picks), c.expect, c.name);

  // The first scan starts at a random position, so restarted balancers do not all begin at a.
  t.equal(sequence(build(buildServers([{ w: 1 }, { w: 1 }, { w: 1 }]), 0.5), 4), 'bcab', 'random 0.5 starts at b');
  t.equal(sequence(build(buildServers([{ w: 1 }, { w: 1 }, { w: 1 }]), 0.99), 4), 'cabc', 'random 0.99 starts at c');
  t.equal(sequence(build(buildServers([{ w: 1 }, { w: 1 }]), 1), 3), 'bab', 'random() = 1 (out of contract) is clamped');
});

t.test('weight is honoured while connections stay open', async (t) => {
  const cases = [
    { servers: [{ w: 1 }, { w: 2 }], picks: 30, expect: [10, 20] },
    { servers: [{ w: 1 }, { w: 2 }, { w: 3 }], picks: 60, expect: [10, 20, 30] },
    { servers: [{ w: 5 }, { w: 1 }, { w: 1 }], picks: 70, expect: [50, 10, 10] },
    { servers: [{ w: 1 }, { w: 1 }, { w: 1 }, { w: 1 }], picks: 41, expect: [11, 10, 10, 10] },
    // Existing load is taken into account: b starts with 6, so a and c catch up first.
    { servers: [{ w: 1 }, { w: 1, active: 6 }, { w: 1 }], picks: 12, expect: [6, 6, 6] },
  ];
  for (const c of cases) {
    const servers = buildServers(c.servers);
    t.same(fill(build(servers), servers, c.picks), c.expect, `weights ${c.servers.map((s) => s.w).join(',')}`);
  }
});

t.test('connections that close free their server for the next pick', async (t) => {
  const servers = buildServers([{ w: 1 }, { w: 1 }]);
  const selector = build(servers);
  t.same(fill(selector, servers, 10), [5, 5]);
  servers[1]!.active -= 3; // three connections to b close
  t.same(fill(selector, servers, 3), [5, 5], 'the next three all go to b');
});

t.test('servers that are not candidates are skipped', async (t) => {
  const cases = [
    { name: 'full at maxConnections', servers: [{ w: 1, max: 2, active: 2 }, { w: 1, active: 7 }], expect: 'bbbb' },
    { name: 'full servers among others', servers: [{ w: 1, max: 1, active: 1 }, { w: 1 }, { w: 1, max: 3, active: 3 }, { w: 1 }], expect: 'bdbd' },
    { name: 'weight 0', servers: [{ w: 0 }, { w: 1, active: 5 }], expect: 'bbbb' },
    { name: 'unhealthy', servers: [{ w: 1, healthy: false }, { w: 1, active: 5 }, { w: 1, active: 5 }], expect: 'bcbc' },
    { name: 'disabled', servers: [{ w: 1, active: 5 }, { w: 1, enabled: false }], expect: 'aaaa' },
  ];
  for (const c of cases) t.equal(sequence(build(buildServers(c.servers)), 4), c.expect, c.name);

  // A server that fills up during a burst drops out until a connection closes.
  const servers = buildServers([{ w: 1, max: 2 }, { w: 1 }]);
  const selector = build(servers);
  t.same(fill(selector, servers, 6), [2, 4], 'a stops at its maxConnections');
});

t.test('exclusion sets (failover within one connection)', async (t) => {
  const servers = buildServers([{ w: 1, active: 0 }, { w: 1, active: 1 }, { w: 1, active: 2 }]);
  const selector = build(servers);
  const tried = new Set<UpstreamServer>();
  let order = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    const server = selector.pick('192.0.2.1', tried)!;
    tried.add(server);
    order += letter(server);
  }
  t.equal(order, 'abc', 'each retry takes the least loaded untried server');
  t.equal(selector.pick('192.0.2.1', tried), undefined, 'all tried: none left');
  t.equal(letter(selector.pick('192.0.2.1', undefined)), 'a', 'exclusion applies to that pick only');
});

t.test('returns undefined when no server is eligible', async (t) => {
  t.equal(build([]).pick('192.0.2.1', undefined), undefined, 'empty pool');
  const servers = buildServers([{ w: 1, healthy: false }, { w: 0 }, { w: 1, max: 1, active: 1 }, { w: 1, enabled: false }]);
  t.equal(build(servers).pick('192.0.2.1', undefined), undefined, 'down, weight 0, full, disabled');
});
