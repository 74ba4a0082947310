import t from 'tap';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { listenTcp, readTag, tagServer } from '../helpers/net.ts';
import { findBinary, freePort, portIsFree, repoRoot, runCli, runToExit, spawnCli, spawnNode, startCli, tempDir, waitForListeners, waitForPort, type RunningProcess } from '../helpers/process.ts';

/**
 * The `switchyard` command as a user runs it: a real child process (`node src/cli.ts`), its
 * exit codes, its stdout/stderr, its start and drain log lines, and its signal handling.
 */

const dir = tempDir('switchyard-cli-');
t.teardown(() => dir.remove());

/** A one-listener, one-pool config document (listener on 127.0.0.1:0 unless told). */
function singleConfig(upstreamPort: number, extra: { drainTimeout?: string; bind?: string; name?: string } = {}): Record<string, unknown> {
  return {
    log: { level: 'info' },
    shutdown: { drainTimeout: extra.drainTimeout ?? '5s' },
    listeners: [{ name: extra.name ?? 'front', protocol: 'tcp', bind: extra.bind ?? '127.0.0.1:0', pool: 'app' }],
    pools: { app: { servers: [{ address: `127.0.0.1:${upstreamPort}` }] } },
  };
}

function writeJson(name: string, document: unknown): string {
  return dir.write(name, JSON.stringify(document, null, 2));
}

/** Connects to 127.0.0.1:port and resolves once connected. */
function open(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port }, () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Resolves when the socket has closed (for any reason). */
function closed(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    if (socket.destroyed) resolve();
    else socket.once('close', () => resolve());
  });
}

/** Starts the CLI and registers a kill for teardown. */
async function start(t: { teardown(fn: () => unknown): void }, configFile: string, listeners = 1): ReturnType<typeof startCli> {
  const started = await startCli(configFile, { listeners });
  t.teardown(() => started.proc.stop());
  return started;
}

// ---- usage ---------------------------------------------------------------------------------

t.test('--help documents every flag and exits 0; -h is the same', async (t) => {
  const flags = ['--help', '-h'];
  const runs = await Promise.all(flags.map((flag) => runCli([flag])));
  for (const [index, flag] of flags.entries()) {
    const run = runs[index]!;
    t.equal(run.code, 0, `${flag}: exit 0`);
    t.match(run.stdout, /Usage: switchyard/, `${flag}: usage line`);
    for (const documented of [/-c, --config FILE/, /--check/, /-l, --log-level LEVEL/, /-h, --help/, /-v, --version/]) {
      t.match(run.stdout, documented, `${flag}: documents ${documented.source}`);
    }
    t.match(run.stdout, /SIGTERM/, `${flag}: documents the signals`);
    t.equal(run.stderr, '', `${flag}: nothing on stderr`);
  }
});

t.test('--version and -v print the package version and exit 0', async (t) => {
  const flags = ['--version', '-v'];
  const runs = await Promise.all(flags.map((flag) => runCli([flag])));
  for (const [index, flag] of flags.entries()) {
    const run = runs[index]!;
    t.equal(run.code, 0, `${flag}: exit 0`);
    t.match(run.stdout, /^switchyard \d+\.\d+\.\d+ \(node v\d+/, `${flag}: prints the version`);
  }
});

t.test('bad usage exits 2 and says what was wrong', async (t) => {
  // Independent runs, started together: each child is a whole Node start-up.
  const [unknownFlag, noConfig, positional, badLevel, missingValue] = await Promise.all([
    runCli(['--bogus']),
    runCli([]),
    runCli(['config/demo.yaml']),
    runCli(['--config', 'config/demo.yaml', '--log-level', 'loud']),
    runCli(['--config']),
  ]);
  t.equal(unknownFlag.code, 2, 'unknown flag: exit 2');
  t.match(unknownFlag.stderr, /--bogus/, 'unknown flag: named');
  t.match(unknownFlag.stderr, /Usage: switchyard/, 'unknown flag: usage shown');

  t.equal(noConfig.code, 2, 'no --config: exit 2');
  t.match(noConfig.stderr, /--config FILE is required/);

  t.equal(positional.code, 2, 'a positional argument: exit 2');

  t.equal(badLevel.code, 2, 'bad --log-level: exit 2');
  t.match(badLevel.stderr, /--log-level must be one of .*"loud"/);

  t.equal(missingValue.code, 2, '--config without a value: exit 2');
});

t.test('bin/switchyard.js --help works when run with node', async (t) => {
  const bin = join(repoRoot, 'bin', 'switchyard.js');
  const [run, version] = await Promise.all([
    runToExit(process.execPath, [bin, '--help'], { cwd: repoRoot }),
    runToExit(process.execPath, [bin, '--version'], { cwd: repoRoot }),
  ]);
  t.equal(run.code, 0, 'exit 0');
  t.match(run.stdout, /Usage: switchyard --config FILE/);
  t.equal(version.code, 0, '--version: exit 0');
  t.match(version.stdout, /^switchyard \d/);
});

const systemNode = findBinary('node', { skipDir: (dir) => dir.includes('node_modules') });
const systemNodeVersion = systemNode === undefined ? undefined : (await runToExit(systemNode, ['--version'])).stdout.trim();
const systemNodeParts = /^v(\d+)\.(\d+)/.exec(systemNodeVersion ?? '');
const systemNodeIsOld = systemNodeParts !== null && (Number(systemNodeParts[1]) < 22 || (Number(systemNodeParts[1]) === 22 && Number(systemNodeParts[2]) < 12));

t.test(
  'bin/switchyard.js under a Node too old for type stripping says so and exits 1',
  { skip: systemNodeIsOld ? false : `no Node older than 22.12 on PATH (found ${systemNodeVersion ?? 'none'})` },
  async (t) => {
    const run = await runToExit(systemNode!, [join(repoRoot, 'bin', 'switchyard.js'), '--help'], { cwd: repoRoot });
    t.equal(run.code, 1, 'exit 1');
    t.ok(run.stderr.includes(`Node ${systemNodeVersion} is too old`), 'names the version found');
    t.match(run.stderr, /needs Node >= 22\.12/, 'names the version needed');
    t.match(run.stderr, /npx switchyard/, 'says what to run instead');
  },
);

// ---- --check -------------------------------------------------------------------------------

t.test('--check on a valid config exits 0 and binds nothing', async (t) => {
  // The test holds the listener's port: if --check tried to bind it, it would fail.
  const held = await listenTcp(() => {});
  t.teardown(() => held.close());
  const file = writeJson('check-valid.json', {
    ...singleConfig(1, { bind: `127.0.0.1:${held.port}` }),
    pools: {
      app: {
        algorithm: 'least-connections',
        servers: [{ address: '127.0.0.1:1', weight: 3 }, { address: '127.0.0.1:2', backup: true }],
        healthCheck: { interval: '1s', timeout: '500ms' },
      },
    },
  });
  const run = await runCli(['--check', '--config', file]);
  t.equal(run.code, 0, `exit 0 (stderr: ${run.stderr})`);
  t.match(run.stdout, /valid \(1 listener, 1 pool\)/);
  t.notMatch(run.stdout, /bound to/, 'no listener start line');
  t.equal(run.stderr, '');

  // And with nobody holding it, the port is still free afterwards.
  const free = await held.close().then(() => portIsFree(held.port));
  t.ok(free, 'the port stays free');
});

t.test('--check on an invalid config exits 1 listing every problem with its key path', async (t) => {
  const file = dir.write(
    'check-invalid.yaml',
    `
log:
  level: chatty
listeners:
  - name: front
    protocol: tcp
    bind: 127.0.0.1:6432
    pool: pg
    maxConection: 5
pools:
  pg:
    algorithm: fastest
    servers:
      - address: 127.0.0.1:5432
      - address: 127.0.0.1
      - address: 127.0.0.1:70000
        weight: -1
    healthCheck:
      interval: 2 sec
`,
  );
  const run = await runCli(['--check', '--config', file]);
  t.equal(run.code, 1, 'exit 1');
  t.equal(run.stdout, '', 'nothing on stdout');
  const expected = [
    /log\.level: /,
    /listeners\[0\]\.maxConection: unknown key/,
    /pools\.pg\.algorithm: /,
    /pools\.pg\.servers\[1\]\.address: .*127\.0\.0\.1/,
    /pools\.pg\.servers\[2\]\.address: /,
    /pools\.pg\.servers\[2\]\.weight: /,
    /pools\.pg\.healthCheck\.interval: .*2 sec/,
  ];
  for (const pattern of expected) t.match(run.stderr, pattern, `lists ${pattern.source}`);
  t.match(run.stderr, new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: 7 problems`), 'names the file and counts the problems');
});

t.test('--check reports cross-reference problems (unknown pool, duplicate names) together', async (t) => {
  const file = writeJson('check-refs.json', {
    listeners: [
      { name: 'front', protocol: 'tcp', bind: '127.0.0.1:7001', pool: 'nosuch' },
      { name: 'front', protocol: 'tcp', bind: '127.0.0.1:7002', pool: 'app' },
    ],
    pools: { app: { servers: [{ address: '127.0.0.1:1' }] } },
  });
  const run = await runCli(['--check', '--config', file]);
  t.equal(run.code, 1, 'exit 1');
  t.match(run.stderr, /listeners\[0\]\.pool: no pool named "nosuch" \(pools: app\)/);
  t.match(run.stderr, /listeners\[1\]\.name: duplicate listener name "front"/);
});

t.test('an unknown key is named where it stands', async (t) => {
  const file = writeJson('unknown-key.json', { ...singleConfig(1), shutdown: { drainTimout: '1s' } });
  // Not only with --check: running it refuses the same way, before binding anything.
  const [run, started] = await Promise.all([runCli(['--check', '--config', file]), runCli(['--config', file])]);
  t.equal(run.code, 1, 'exit 1');
  t.match(run.stderr, /shutdown\.drainTimout: unknown key/);
  t.equal(started.code, 1, 'running it: exit 1');
  t.match(started.stderr, /shutdown\.drainTimout: unknown key/);
});

t.test('a missing config file exits 1 with a clear message', async (t) => {
  const missing = join(dir.path, 'does-not-exist.yaml');
  const variants = [['--config', missing], ['--check', '-c', missing]];
  const runs = await Promise.all(variants.map((args) => runCli(args)));
  for (const [index, args] of variants.entries()) {
    const run = runs[index]!;
    t.equal(run.code, 1, `${args.join(' ')}: exit 1`);
    t.match(run.stderr, /cannot read config/);
    t.ok(run.stderr.includes(missing), 'names the file');
    t.match(run.stderr, /ENOENT|no such file/i, 'says why');
    t.ok(run.stderr.split('\n').filter(Boolean).length <= 2, 'a short message, not a stack trace');
  }
});

t.test('malformed YAML and JSON exit 1 naming the file', async (t) => {
  const yamlFile = dir.write('broken.yaml', 'listeners: [\n  - name: x\n');
  const jsonFile = dir.write('broken.json', '{"listeners": [}');
  const [yamlRun, jsonRun] = await Promise.all([runCli(['--check', '--config', yamlFile]), runCli(['--check', '--config', jsonFile])]);
  t.equal(yamlRun.code, 1);
  t.match(yamlRun.stderr, /invalid YAML/);
  t.equal(jsonRun.code, 1);
  t.match(jsonRun.stderr, /invalid JSON/);
});

// ---- running -------------------------------------------------------------------------------

t.test('--config JSON and YAML both run and proxy', async (t) => {
  const upstream = await tagServer('upstream-1');
  t.teardown(() => upstream.close());
  const jsonFile = writeJson('run.json', singleConfig(upstream.port));
  const yamlFile = dir.write(
    'run.yaml',
    `# the same config, as YAML
log:
  level: info
shutdown:
  drainTimeout: 1s
listeners:
  - name: front
    protocol: tcp
    bind: 127.0.0.1:0
    pool: app
pools:
  app:
    servers:
      - address: 127.0.0.1:${upstream.port}
`,
  );
  for (const file of [jsonFile, yamlFile]) {
    const { proc, bound } = await start(t, file);
    const front = bound.get('front')!;
    const { tag, socket } = await readTag(front.port);
    t.equal(tag, 'upstream-1', `${file}: proxied to the upstream`);
    socket.end();
    await closed(socket);
    proc.kill('SIGTERM');
    const exit = await proc.waitForExit(5_000);
    t.same(exit, { code: 0, signal: null }, `${file}: exit 0 after SIGTERM`);
  }
});

t.test('--log-level overrides log.level', async (t) => {
  const upstream = await tagServer('u');
  t.teardown(() => upstream.close());
  // A fixed port: at warn there is no start line to wait for, so wait for the port instead.
  const port = await freePort();
  const file = writeJson('log-level.json', singleConfig(upstream.port, { bind: `127.0.0.1:${port}` }));

  const verbose = spawnCli(['--config', file, '--log-level', 'debug']);
  t.teardown(() => verbose.stop());
  await waitForListeners(verbose);
  const { socket } = await readTag(port);
  socket.end();
  await closed(socket);
  await verbose.waitForLog((line) => line.msg === 'connection closed', 3_000, 'the connection line');
  verbose.kill('SIGTERM');
  t.equal((await verbose.waitForExit(5_000)).code, 0, 'debug: exit 0');
  t.ok(verbose.logs().some((line) => line.level === 'info'), 'debug: info lines are written');

  const quiet = spawnCli(['--config', file, '-l', 'warn']);
  t.teardown(() => quiet.stop());
  await waitForPort(port, '127.0.0.1', 10_000, () => quiet.exit === undefined);
  const second = await readTag(port);
  second.socket.end();
  await closed(second.socket);
  // The signal handlers are installed right after the listeners bind; give them a moment.
  await new Promise((resolve) => setTimeout(resolve, 200));
  quiet.kill('SIGTERM');
  const exit = await quiet.waitForExit(5_000);
  t.equal(exit.code, 0, 'warn: exit 0');
  t.same(quiet.logs().filter((line) => line.level === 'info' || line.level === 'debug'), [], 'warn: no info or debug lines at all');
});

t.test('the start log line names each listener with its bound address', async (t) => {
  const upstream = await tagServer('u');
  t.teardown(() => upstream.close());
  const file = writeJson('two-listeners.json', {
    listeners: [
      { name: 'alpha', protocol: 'tcp', bind: '127.0.0.1:0', pool: 'app' },
      { name: 'beta', protocol: 'tcp', bind: '127.0.0.1:0', pool: 'app' },
    ],
    pools: { app: { servers: [{ address: `127.0.0.1:${upstream.port}` }] } },
  });
  const { bound } = await start(t, file, 2);
  t.same([...bound.keys()].sort(), ['alpha', 'beta']);
  for (const listener of bound.values()) {
    t.equal(listener.host, '127.0.0.1', `${listener.name}: host`);
    t.ok(listener.port > 0, `${listener.name}: the real port, not 0`);
    t.equal(listener.line.level, 'info');
    t.equal(listener.line.protocol, 'tcp');
    t.equal(listener.line.pool, 'app');
    t.match(String(listener.line.msg), new RegExp(`listener ${listener.name} \\(tcp\\) bound to 127\\.0\\.0\\.1:${listener.port}\\b`));
    const { tag, socket } = await readTag(listener.port);
    t.equal(tag, 'u', `${listener.name}: the reported address really works`);
    socket.destroy();
  }
  t.not(bound.get('alpha')!.port, bound.get('beta')!.port);
});

t.test('a bind failure exits non-zero naming the listener and the address', async (t) => {
  const held: Server = createServer();
  await new Promise<void>((resolve) => held.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => held.close(() => resolve())));
  const port = (held.address() as { port: number }).port;
  const upstream = await tagServer('u');
  t.teardown(() => upstream.close());
  const file = writeJson('bind-fail.json', {
    listeners: [
      { name: 'fine', protocol: 'tcp', bind: '127.0.0.1:0', pool: 'app' },
      { name: 'taken', protocol: 'tcp', bind: `127.0.0.1:${port}`, pool: 'app' },
    ],
    pools: { app: { servers: [{ address: `127.0.0.1:${upstream.port}` }] } },
  });
  const run = await runCli(['--config', file], 10_000);
  t.not(run.code, 0, 'exit non-zero');
  t.equal(run.code, 1, 'exit 1 (start failure)');
  t.match(run.stderr, /taken/, 'names the listener');
  t.ok(run.stderr.includes(`127.0.0.1:${port}`), 'names the address');
  t.match(run.stderr, /EADDRINUSE|in use/i, 'says why');
  t.notMatch(run.stdout, /bound to/, 'no listener reported as started (all or nothing)');
});

// ---- signals and drain ---------------------------------------------------------------------

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  t.test(`${signal} with an open idle connection: waits drainTimeout (500ms), closes it, exits 0`, async (t) => {
    const upstream = await tagServer('idle');
    t.teardown(() => upstream.close());
    const file = writeJson(`drain-idle-${signal}.json`, singleConfig(upstream.port, { drainTimeout: '500ms' }));
    const { proc, bound } = await start(t, file);
    const { tag, socket } = await readTag(bound.get('front')!.port);
    t.equal(tag, 'idle', 'connection established end to end');
    socket.on('error', () => {});
    const clientClosed = closed(socket);

    const signalledAt = Date.now();
    proc.kill(signal);
    const exit = await proc.waitForExit(5_000);
    const elapsed = Date.now() - signalledAt;
    t.same(exit, { code: 0, signal: null }, 'exit 0');
    t.ok(elapsed >= 450, `waited for the drain (${elapsed}ms)`);
    t.ok(elapsed < 1_500, `exited within ~1s (${elapsed}ms)`);
    await clientClosed;
    t.pass('the idle client connection was closed');

    const logs = proc.logs();
    t.ok(logs.some((line) => line.signal === signal && /shutting down/.test(String(line.msg))), 'logs the signal');
    t.ok(logs.some((line) => line.open === 1 && line.drainTimeoutMs === 500 && /draining: 1 open/.test(String(line.msg))), 'logs the drain start');
    t.ok(logs.some((line) => line.closed === 1 && /drain timeout: closed 1 still open/.test(String(line.msg))), 'logs the drain timeout');
    // Written before exit: the drain waits for terminated sockets to report 'close'.
    const connectionLine = logs.find((line) => line.msg === 'connection closed');
    t.equal(connectionLine?.end, 'shutdown', 'the connection line is written, saying the shutdown ended it');
  });

  t.test(`${signal} while an exchange is in flight: it completes, then exit 0`, async (t) => {
    // The upstream answers "slow" after 300ms, then closes: well inside the 3s drain.
    const upstream = await listenTcp((socket) => {
      socket.once('data', () => {
        setTimeout(() => socket.end('done\n'), 300);
      });
    });
    t.teardown(() => upstream.close());
    let upstreamGotRequest = false;
    upstream.server.on('connection', (socket: Socket) => socket.once('data', () => (upstreamGotRequest = true)));
    const file = writeJson(`drain-exchange-${signal}.json`, singleConfig(upstream.port, { drainTimeout: '3s' }));
    const { proc, bound } = await start(t, file);
    const port = bound.get('front')!.port;
    const socket = await open(port);
    let reply = '';
    socket.setEncoding('utf8');
    socket.on('data', (text: string) => (reply += text));
    const ended = new Promise<void>((resolve) => socket.once('end', () => resolve()));
    socket.write('slow\n');
    const deadline = Date.now() + 3_000;
    while (!upstreamGotRequest && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    t.ok(upstreamGotRequest, 'the request reached the upstream');

    const signalledAt = Date.now();
    proc.kill(signal);
    await proc.waitForLog((line) => /^draining/.test(String(line.msg)), 3_000, 'the draining line');
    // A new connection is refused once draining started: the listener stopped accepting.
    const refused = await new Promise<string>((resolve) => {
      const late = connect({ host: '127.0.0.1', port });
      late.once('connect', () => {
        late.destroy();
        resolve('connected');
      });
      late.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    });
    t.equal(refused, 'ECONNREFUSED', 'new connections are refused while draining');

    await ended;
    t.equal(reply, 'done\n', 'the exchange completed');
    const exit = await proc.waitForExit(5_000);
    const elapsed = Date.now() - signalledAt;
    t.same(exit, { code: 0, signal: null }, 'exit 0');
    t.ok(elapsed < 2_500, `exited as soon as the connection finished, not at the drain deadline (${elapsed}ms)`);
    const logs = proc.logs();
    t.ok(logs.some((line) => line.msg === 'drained: all connections finished'), 'logs a clean drain');
    const connectionLine = logs.find((line) => line.msg === 'connection closed');
    t.equal(connectionLine?.end, 'closed', 'the connection ended normally');
    t.equal(connectionLine?.bytesOut, 5, 'and carried the reply');
  });
}

t.test('a second signal during the drain closes everything at once', async (t) => {
  const upstream = await tagServer('idle');
  t.teardown(() => upstream.close());
  const file = writeJson('drain-twice.json', singleConfig(upstream.port, { drainTimeout: '20s' }));
  const { proc, bound } = await start(t, file);
  const { socket } = await readTag(bound.get('front')!.port);
  socket.on('error', () => {});
  proc.kill('SIGTERM');
  await proc.waitForLog((line) => /^draining/.test(String(line.msg)), 3_000, 'the draining line');
  const secondAt = Date.now();
  proc.kill('SIGTERM');
  const exit = await proc.waitForExit(5_000);
  t.equal(exit.code, 0, 'exit 0');
  t.ok(Date.now() - secondAt < 1_500, 'did not wait for the 20s drain');
  t.ok(proc.logs().some((line) => /again: closing everything now/.test(String(line.msg))), 'logs the forced close');
  await closed(socket);
});

// ---- npm start ------------------------------------------------------------------------------

const demoPorts = [18080, 18081, 18082, 18083];
const busyDemoPort = (await Promise.all(demoPorts.map(async (port) => ((await portIsFree(port)) ? undefined : port)))).find((port) => port !== undefined);

t.test(
  'the demo (npm start): weights 2,1,1 give shares 4/2/2, SIGINT exits 0',
  { skip: busyDemoPort === undefined ? false : `port ${busyDemoPort} is busy: the demo needs 127.0.0.1:18080-18083` },
  async (t) => {
    const demo: RunningProcess = spawnNode([join(repoRoot, 'src', 'demo.ts')]);
    t.teardown(() => demo.stop());
    const bound = await waitForListeners(demo, 1, 15_000);
    const listener = bound.get('demo');
    t.ok(listener, 'the demo listener started');
    t.equal(listener?.port, 18080);

    const counts = new Map<string, number>();
    for (let i = 0; i < 8; i++) {
      // A new connection per request: an L4 balancer picks per connection.
      const response = await fetch('http://127.0.0.1:18080/', { headers: { connection: 'close' }, signal: AbortSignal.timeout(5_000) });
      t.equal(response.status, 200);
      const body = await response.text();
      const match = /hello from demo upstream (\d) \(127\.0\.0\.1:(\d+)\)/.exec(body);
      t.ok(match, `a demo upstream answered: ${JSON.stringify(body)}`);
      if (match) counts.set(match[2]!, (counts.get(match[2]!) ?? 0) + 1);
    }
    t.same(Object.fromEntries(counts), { 18081: 4, 18082: 2, 18083: 2 }, 'shares follow weights 2,1,1');

    demo.kill('SIGINT');
    const exit = await demo.waitForExit(10_000);
    t.same(exit, { code: 0, signal: null }, 'SIGINT: exit 0');
    t.match(demo.stderr, /Switchyard demo/, 'the demo explains itself on stderr');
  },
);
