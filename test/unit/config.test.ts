import t, { type Test } from 'tap';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, formatKeyPath, loadConfig, parseConfigText, validateConfig, type ConfigProblem } from '../../src/config/load.ts';
import { SwitchyardError } from '../../src/core/errors.ts';

/** A small valid document; each error case below breaks one thing in a fresh copy. */
function minimal(): any {
  return {
    listeners: [{ name: 'pg', protocol: 'tcp', bind: '127.0.0.1:6432', pool: 'pg' }],
    pools: {
      pg: { servers: [{ address: '10.0.0.1:5432' }, { address: '10.0.0.2:5432' }] },
    },
  };
}

/** Runs validateConfig and returns its problems; fails the test if it did not throw ConfigError. */
function problemsOf(t: Test, document: unknown): readonly ConfigProblem[] {
  try {
    validateConfig(document, 'test.yaml');
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  t.fail('expected a ConfigError');
  return [];
}

t.test('a full valid config gets its defaults applied', async (t) => {
  const config = validateConfig({
    listeners: [
      { name: 'pg', protocol: 'tcp', bind: '0.0.0.0:5432', pool: 'pg' },
      {
        name: 'pg-behind-lb',
        protocol: 'tcp',
        bind: '[::]:6432',
        pool: 'pg',
        maxConnections: 1000,
        timeouts: { connect: '500ms' },
        proxyProtocol: { trusted: ['10.0.0.0/8', '::1'] },
      },
      { name: 'dns', protocol: 'udp', bind: '127.0.0.1:5353', pool: 'dns' },
    ],
    pools: {
      pg: {
        algorithm: 'least-connections',
        healthCheck: { interval: '5s' },
        servers: [{ address: '10.0.0.1:5432', weight: 3, maxConnections: 100 }, { address: 'db2.internal:5432' }, { address: '[2001:db8::5]:5432', backup: true }],
      },
      dns: {
        algorithm: 'ip-hash',
        sendProxyProtocol: 'v2',
        healthCheck: { type: 'udp', send: 'ping', expect: '/^pong/' },
        servers: [{ address: '10.0.1.1:53' }],
      },
    },
  });

  t.same(config.log, { level: 'info' }, 'log default');
  t.same(config.shutdown, { drainTimeout: 10_000 }, 'shutdown default');
  t.same(config.listeners[0], {
    name: 'pg',
    protocol: 'tcp',
    bind: { host: '0.0.0.0', port: 5432, family: 4 },
    pool: 'pg',
    timeouts: { connect: 3_000, idle: 3_600_000 },
  });
  t.same(config.listeners[1], {
    name: 'pg-behind-lb',
    protocol: 'tcp',
    bind: { host: '::', port: 6432, family: 6 },
    pool: 'pg',
    maxConnections: 1000,
    timeouts: { connect: 500, idle: 3_600_000 },
    proxyProtocol: { trusted: ['10.0.0.0/8', '::1'], timeout: 3_000 },
  });
  t.same(config.listeners[2], {
    name: 'dns',
    protocol: 'udp',
    bind: { host: '127.0.0.1', port: 5353, family: 4 },
    pool: 'dns',
    udp: { sessionTimeout: 30_000, maxSessions: 100_000 },
  });
  t.same(config.pools.pg, {
    algorithm: 'least-connections',
    retries: 2,
    healthCheck: { type: 'tcp', interval: 5_000, timeout: 1_000, rise: 2, fall: 3 },
    passiveCheck: { failures: 3, cooldown: 10_000 },
    servers: [
      { address: { host: '10.0.0.1', port: 5432, family: 4 }, weight: 3, maxConnections: 100, backup: false },
      { address: { host: 'db2.internal', port: 5432, family: 0 }, weight: 1, backup: false },
      { address: { host: '2001:db8::5', port: 5432, family: 6 }, weight: 1, backup: true },
    ],
  });
  t.same(config.pools.dns, {
    algorithm: 'ip-hash',
    retries: 2,
    sendProxyProtocol: 'v2',
    healthCheck: { type: 'udp', interval: 2_000, timeout: 1_000, rise: 2, fall: 3, send: 'ping', expect: '/^pong/' },
    passiveCheck: { failures: 3, cooldown: 10_000 },
    servers: [{ address: { host: '10.0.1.1', port: 53, family: 4 }, weight: 1, backup: false }],
  });

  const small = validateConfig(minimal());
  t.equal(small.pools.pg!.algorithm, 'round-robin', 'algorithm default');
  t.equal(small.pools.pg!.healthCheck, undefined, 'no health check unless asked');
});

t.test('each kind of error is reported at its exact key path', async (t) => {
  const cases: Array<{ name: string; change: (doc: any) => void; path: string; message: RegExp }> = [
    { name: 'address without port', change: (d) => (d.pools.pg.servers[1].address = '10.0.0.2'), path: 'pools.pg.servers[1].address', message: /expected host:port \(got "10.0.0.2"\)/ },
    { name: 'unbracketed IPv6', change: (d) => (d.pools.pg.servers[0].address = '::1:5432'), path: 'pools.pg.servers[0].address', message: /brackets/ },
    { name: 'port out of range', change: (d) => (d.listeners[0].bind = '127.0.0.1:70000'), path: 'listeners[0].bind', message: /out of range/ },
    { name: 'address not a string', change: (d) => (d.pools.pg.servers[0].address = 5432), path: 'pools.pg.servers[0].address', message: /expected host:port/ },
    { name: 'unknown listener key', change: (d) => (d.listeners[0].maxConection = 10), path: 'listeners[0].maxConection', message: /^unknown key$/ },
    { name: 'unknown server key', change: (d) => (d.pools.pg.servers[1].wieght = 2), path: 'pools.pg.servers[1].wieght', message: /^unknown key$/ },
    { name: 'unknown top-level key', change: (d) => (d.listener = []), path: 'listener', message: /^unknown key$/ },
    { name: 'unknown nested key', change: (d) => (d.listeners[0].timeouts = { conect: '1s' }), path: 'listeners[0].timeouts.conect', message: /^unknown key$/ },
    { name: 'listener pointing at a missing pool', change: (d) => (d.listeners[0].pool = 'postgres'), path: 'listeners[0].pool', message: /no pool named "postgres" \(pools: pg\)/ },
    {
      name: 'duplicate listener names',
      change: (d) => d.listeners.push({ name: 'pg', protocol: 'tcp', bind: '127.0.0.1:6433', pool: 'pg' }),
      path: 'listeners[1].name',
      message: /duplicate listener name "pg" \(also listeners\[0\]\)/,
    },
    {
      name: 'two listeners on one address',
      change: (d) => d.listeners.push({ name: 'pg2', protocol: 'tcp', bind: '127.0.0.1:6432', pool: 'pg' }),
      path: 'listeners[1].bind',
      message: /already bound by listeners\[0\]/,
    },
    { name: 'pool with only backups', change: (d) => (d.pools.pg.servers = [{ address: '10.0.0.1:5432', backup: true }]), path: 'pools.pg.servers', message: /at least one server that is not a backup/ },
    { name: 'pool with no servers', change: (d) => (d.pools.pg.servers = []), path: 'pools.pg.servers', message: /at least one server/ },
    { name: 'healthCheck.timeout > interval', change: (d) => (d.pools.pg.healthCheck = { interval: '1s', timeout: '2s' }), path: 'pools.pg.healthCheck.timeout', message: /must not be longer than interval/ },
    { name: 'bad regex in expect', change: (d) => (d.pools.pg.healthCheck = { expect: '/a(/' }), path: 'pools.pg.healthCheck.expect', message: /invalid regex/ },
    {
      name: 'bad CIDR in proxyProtocol.trusted',
      change: (d) => (d.listeners[0].proxyProtocol = { trusted: ['10.0.0.0/8', '10.0.0.0/33'] }),
      path: 'listeners[0].proxyProtocol.trusted[1]',
      message: /prefix \/33 is longer than 32/,
    },
    { name: 'empty trusted list', change: (d) => (d.listeners[0].proxyProtocol = { trusted: [] }), path: 'listeners[0].proxyProtocol.trusted', message: /at least one trusted source/ },
    { name: 'bad duration', change: (d) => (d.pools.pg.healthCheck = { interval: 'soon' }), path: 'pools.pg.healthCheck.interval', message: /"soon" is not a duration/ },
    { name: 'duration without unit', change: (d) => (d.listeners[0].timeouts = { idle: 30 }), path: 'listeners[0].timeouts.idle', message: /expected a duration/ },
    { name: 'unknown protocol', change: (d) => (d.listeners[0].protocol = 'http'), path: 'listeners[0].protocol', message: /protocol must be "tcp" or "udp"/ },
    { name: 'unknown algorithm', change: (d) => (d.pools.pg.algorithm = 'random'), path: 'pools.pg.algorithm', message: /round-robin/ },
    { name: 'negative weight', change: (d) => (d.pools.pg.servers[0].weight = -1), path: 'pools.pg.servers[0].weight', message: />=0/ },
    { name: 'fractional weight', change: (d) => (d.pools.pg.servers[0].weight = 1.5), path: 'pools.pg.servers[0].weight', message: /integer|int/ },
    { name: 'bad listener name', change: (d) => (d.listeners[0].name = 'my listener'), path: 'listeners[0].name', message: /expected a name/ },
    { name: 'bad pool name', change: (d) => (d.pools['my pool'] = d.pools.pg), path: 'pools.my pool', message: /key/i },
    {
      name: 'PROXY v1 behind a udp listener',
      change: (d) => {
        d.listeners[0] = { name: 'dns', protocol: 'udp', bind: '127.0.0.1:5353', pool: 'pg' };
        d.pools.pg.sendProxyProtocol = 'v1';
      },
      path: 'pools.pg.sendProxyProtocol',
      message: /PROXY v1 has no datagram form/,
    },
    { name: 'no listeners', change: (d) => (d.listeners = []), path: 'listeners', message: /at least one listener/ },
    { name: 'missing pools', change: (d) => delete d.pools, path: 'pools', message: /expected record/ },
    { name: 'bad log level', change: (d) => (d.log = { level: 'verbose' }), path: 'log.level', message: /info/ },
  ];
  for (const c of cases) {
    const document = minimal();
    c.change(document);
    const problems = problemsOf(t, document);
    const found = problems.find((problem) => problem.path === c.path);
    if (found === undefined) {
      t.fail(`${c.name}: no problem at ${c.path}`, { found: problems });
      continue;
    }
    t.match(found.message, c.message, `${c.name}: ${found.path}: ${found.message}`);
  }
});

t.test('a document that is not an object is reported at the top level', async (t) => {
  for (const document of [null, [], 'listeners: []', 42]) {
    const problems = problemsOf(t, document);
    t.equal(problems[0]?.path, '(top level)', JSON.stringify(document));
  }
});

t.test('every problem is reported at once, not just the first', async (t) => {
  const document = minimal();
  document.listeners[0].maxConection = 10;
  document.pools.pg.servers[1].address = '10.0.0.2';
  document.pools.pg.servers[0].weight = -1;
  const problems = problemsOf(t, document);
  t.same(problems.map((problem) => problem.path).sort(), ['listeners[0].maxConection', 'pools.pg.servers[0].weight', 'pools.pg.servers[1].address']);
});

t.test('ConfigError names the file, the code and every problem', async (t) => {
  const document = minimal();
  document.listeners[0].pool = 'nope';
  try {
    validateConfig(document, 'switchyard.yaml');
    t.fail('expected a ConfigError');
  } catch (err) {
    t.type(err, ConfigError);
    t.type(err, SwitchyardError);
    const error = err as ConfigError;
    t.equal(error.code, 'SWY_CONFIG_INVALID');
    t.equal(error.source, 'config');
    t.equal(error.file, 'switchyard.yaml');
    t.equal(error.message, 'switchyard.yaml: 1 problem\n  listeners[0].pool: no pool named "nope" (pools: pg)');
  }
});

t.test('formatKeyPath writes paths as users write keys', async (t) => {
  t.equal(formatKeyPath(['pools', 'pg', 'servers', 1, 'address']), 'pools.pg.servers[1].address');
  t.equal(formatKeyPath(['listeners', 0]), 'listeners[0]');
  t.equal(formatKeyPath([]), '(top level)');
});

t.test('parseConfigText picks JSON or YAML by extension', async (t) => {
  t.same(parseConfigText('{"a": 1}', 'switchyard.json'), { a: 1 }, '.json is JSON');
  t.same(parseConfigText('{"a": 1}', 'SWITCHYARD.JSON'), { a: 1 }, 'extension case does not matter');
  t.same(parseConfigText('a: 1\nb: [x, y]\n', 'switchyard.yaml'), { a: 1, b: ['x', 'y'] }, '.yaml is YAML');
  t.same(parseConfigText('a: 1\n', 'switchyard.yml'), { a: 1 }, '.yml is YAML');
  t.same(parseConfigText('a: 1\n', 'switchyard.conf'), { a: 1 }, 'anything else is YAML');
  t.same(parseConfigText('{"a": 1}', 'switchyard.yaml'), { a: 1 }, 'JSON text in a YAML file parses (YAML is a superset)');
  t.same(parseConfigText('bind: 127.0.0.1:6432\ntimeout: 3s\n', 'x.yaml'), { bind: '127.0.0.1:6432', timeout: '3s' }, 'host:port and durations stay strings');
});

t.test('parseConfigText reports parse errors as ConfigError at (file)', async (t) => {
  const cases = [
    { name: 'broken JSON', text: '{"a": ', file: 'x.json', message: /^invalid JSON: / },
    { name: 'YAML in a .json file', text: 'a: 1\n', file: 'x.json', message: /^invalid JSON: / },
    { name: 'broken YAML', text: 'a: [1, 2\n', file: 'x.yaml', message: /^invalid YAML: / },
    { name: 'duplicate YAML key', text: 'a: 1\na: 2\n', file: 'x.yml', message: /^invalid YAML: Map keys must be unique/ },
    { name: 'bad YAML indentation', text: 'a:\n  b: 1\n c: 2\n', file: 'x.yaml', message: /^invalid YAML: / },
  ];
  for (const c of cases) {
    try {
      parseConfigText(c.text, c.file);
      t.fail(`${c.name}: expected a ConfigError`);
    } catch (err) {
      t.type(err, ConfigError, c.name);
      const problems = (err as ConfigError).problems;
      t.equal(problems.length, 1, c.name);
      t.equal(problems[0]!.path, '(file)', c.name);
      t.match(problems[0]!.message, c.message, `${c.name}: ${problems[0]!.message}`);
      // V8's JSON.parse message quotes the offending text, newlines included; load.ts folds
      // it so ConfigError keeps one problem per line.
      t.notMatch(problems[0]!.message, /\n/, `${c.name}: one line`);
    }
  }
});

t.test('loadConfig reads, parses and validates a file', async (t) => {
  const dir = t.testdir({
    'good.yaml': 'listeners:\n  - { name: pg, protocol: tcp, bind: "127.0.0.1:6432", pool: pg }\npools:\n  pg:\n    servers:\n      - address: 10.0.0.1:5432\n',
    'bad.json': JSON.stringify({ listeners: [{ name: 'pg', protocol: 'tcp', bind: '127.0.0.1:6432', pool: 'pg', typo: 1 }], pools: { pg: { servers: [{ address: '10.0.0.1:5432' }] } } }),
  });
  const config = await loadConfig(join(dir, 'good.yaml'));
  t.same(config.listeners[0]!.bind, { host: '127.0.0.1', port: 6432, family: 4 });
  await t.rejects(loadConfig(join(dir, 'bad.json')), { code: 'SWY_CONFIG_INVALID', problems: [{ path: 'listeners[0].typo', message: 'unknown key' }] });
  await t.rejects(loadConfig(join(dir, 'missing.yaml')), { code: 'SWY_CONFIG_READ', message: /cannot read config .*missing\.yaml/ });
});

// The example configs in config/ are documentation users copy: every one must validate.
t.test('every example in config/ is valid', async (t) => {
  const folder = fileURLToPath(new URL('../../config/', import.meta.url));
  const files = (await readdir(folder).catch(() => [] as string[])).filter((name) => /\.(ya?ml|json)$/i.test(name)).sort();
  if (files.length === 0) {
    t.fail(`no example configs (*.yaml, *.yml, *.json) found in ${folder}: the examples are part of the documentation and must be there`);
    return;
  }
  for (const name of files) {
    try {
      await loadConfig(join(folder, name));
      t.pass(`config/${name} is valid`);
    } catch (err) {
      t.fail(`config/${name} is invalid: ${(err as Error).message}`);
    }
  }
});
