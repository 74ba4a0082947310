import t from 'tap';
import { get } from 'node:http';
import { connect, createServer, type Socket } from 'node:net';
import { listenTcp, type RunningServer } from '../helpers/net.ts';
import { findBinary, freePort, runToExit, startCli, startDaemon, tempDir, waitForPort } from '../helpers/process.ts';

/**
 * The PROXY protocol against implementations nobody here wrote: Switchyard sending it to
 * nginx (`listen ... proxy_protocol`), Switchyard receiving it from haproxy (`send-proxy`,
 * `send-proxy-v2`), and malformed headers written by hand against a trusted listener.
 */

const nginx = findBinary('nginx');
const haproxy = findBinary('haproxy');
const curl = findBinary('curl');
const needNginx = nginx === undefined ? 'nginx not found' : false;
const needHaproxy = haproxy === undefined ? 'haproxy not found' : false;

/** Whether this machine has IPv6 loopback (some containers do not). */
const hasIPv6 = await new Promise<boolean>((resolve) => {
  const probe = createServer();
  probe.once('error', () => resolve(false));
  probe.listen(0, '::1', () => probe.close(() => resolve(true)));
});

const dir = tempDir('switchyard-pp-');
t.teardown(() => dir.remove());

type Teardown = { teardown(fn: () => unknown): void };

async function startSwitchyard(t: Teardown, name: string, document: Record<string, unknown>, listeners: number, extraArgs: string[] = []) {
  const file = dir.write(`${name}.json`, JSON.stringify({ shutdown: { drainTimeout: '1s' }, ...document }));
  const { proc, bound } = await startCli(file, { listeners, extraArgs });
  t.teardown(() => proc.stop());
  return { proc, bound };
}

/** GET http://host:port/ with node:http from `localAddress`; resolves with the body and the client's port. */
function httpGet(host: string, port: number, localAddress: string): Promise<{ status: number; body: string; localPort: number }> {
  return new Promise((resolve, reject) => {
    let localPort = 0;
    const request = get({ host, port, path: '/', localAddress, agent: false, timeout: 5_000 }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (text: string) => (body += text));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body, localPort }));
    });
    request.on('socket', (socket: Socket) => socket.once('connect', () => (localPort = socket.localPort ?? 0)));
    request.on('timeout', () => request.destroy(new Error('timeout')));
    request.on('error', reject);
  });
}

function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

// ---- (1) Switchyard sends PROXY to nginx ------------------------------------------------------

t.test('Switchyard → nginx: v1 and v2 headers carry the client address; probes with PROXY keep nginx up', { skip: needNginx }, async (t) => {
  const nginxPort = await freePort();
  const runningAsRoot = process.getuid?.() === 0;
  const conf = dir.write(
    'nginx.conf',
    `${runningAsRoot ? 'user root;\n' : ''}worker_processes 1;
events { worker_connections 256; }
http {
  access_log off;
  default_type text/plain;
  client_body_temp_path ${dir.path}/nginx-body;
  proxy_temp_path ${dir.path}/nginx-proxy;
  fastcgi_temp_path ${dir.path}/nginx-fastcgi;
  uwsgi_temp_path ${dir.path}/nginx-uwsgi;
  scgi_temp_path ${dir.path}/nginx-scgi;
  server {
    listen 127.0.0.1:${nginxPort} proxy_protocol;
    location / {
      return 200 "$proxy_protocol_addr:$proxy_protocol_port\\n";
    }
  }
}
`,
  );
  const server = await startDaemon(nginx!, ['-p', dir.path, '-c', conf, '-g', `daemon off; pid ${dir.path}/nginx.pid; error_log stderr;`], {
    port: nginxPort,
    stopSignal: 'SIGTERM',
  });
  t.teardown(() => server.stop());

  const nginxAddress = `127.0.0.1:${nginxPort}`;
  // v1 pool: a bare connect probe (header, then close). v2 pool: the probe asks nginx for a page.
  const listeners: Array<Record<string, unknown>> = [
    { name: 'to-v1', protocol: 'tcp', bind: '127.0.0.1:0', pool: 'nginx-v1' },
    { name: 'to-v2', protocol: 'tcp', bind: '127.0.0.1:0', pool: 'nginx-v2' },
  ];
  if (hasIPv6) {
    listeners.push({ name: 'to-v1-ipv6', protocol: 'tcp', bind: '[::1]:0', pool: 'nginx-v1' });
    listeners.push({ name: 'to-v2-ipv6', protocol: 'tcp', bind: '[::1]:0', pool: 'nginx-v2' });
  }
  const { proc, bound } = await startSwitchyard(
    t,
    'to-nginx',
    {
      listeners,
      pools: {
        'nginx-v1': {
          sendProxyProtocol: 'v1',
          servers: [{ address: nginxAddress }],
          healthCheck: { type: 'tcp', interval: '200ms', timeout: '200ms', rise: 1, fall: 1 },
        },
        'nginx-v2': {
          sendProxyProtocol: 'v2',
          servers: [{ address: nginxAddress }],
          healthCheck: { type: 'tcp', interval: '200ms', timeout: '200ms', rise: 1, fall: 1, send: 'GET / HTTP/1.0\\r\\n\\r\\n', expect: 'HTTP/1.1 200' },
        },
      },
    },
    listeners.length,
    ['--log-level', 'debug'],
  );

  for (const listener of bound.values()) {
    const clientIp = listener.host === '::1' ? '::1' : '127.0.0.7';
    const viaNode = await httpGet(listener.host, listener.port, clientIp);
    t.equal(viaNode.status, 200, `${listener.name}: node http → 200`);
    t.equal(viaNode.body, `${clientIp}:${viaNode.localPort}\n`, `${listener.name}: nginx saw the node client's address and port`);
    const logLine = await proc.waitForLog(
      (line) => line.msg === 'connection closed' && line.downstream === formatHostPort(clientIp, viaNode.localPort),
      3_000,
      `the connection line of ${clientIp}:${viaNode.localPort}`,
    );
    t.equal(logLine.server, nginxAddress, `${listener.name}: logged against nginx`);

    if (curl !== undefined) {
      const run = await runToExit(
        curl,
        ['-s', '--max-time', '5', '--interface', clientIp, '-w', '|%{local_ip}|%{local_port}', `http://${formatHostPort(listener.host, listener.port)}/`],
        { timeoutMs: 10_000 },
      );
      t.equal(run.code, 0, `${listener.name}: curl exits 0`);
      const [body, localIp, localPort] = run.stdout.split('|');
      t.equal(localIp, clientIp, `${listener.name}: curl used ${clientIp}`);
      t.equal(body, `${clientIp}:${localPort}\n`, `${listener.name}: nginx saw curl's address and port`);
    } else {
      t.comment('curl not found: the curl --interface half of this case is skipped');
    }
  }

  // Let the probes run a while: each pool gets several, none may fail.
  await new Promise((resolve) => setTimeout(resolve, 1_200));
  const probes = proc.logs().filter((line) => line.module === 'health' && typeof line.pass === 'boolean');
  for (const pool of ['nginx-v1', 'nginx-v2']) {
    const mine = probes.filter((line) => line.pool === pool);
    t.ok(mine.filter((line) => line.pass === true).length >= 3, `${pool}: probes pass (${mine.length} probes)`);
    t.same(
      mine.filter((line) => line.pass !== true).map((line) => line.detail),
      [],
      `${pool}: no probe failed`,
    );
  }
  t.notOk(
    proc.logs().some((line) => line.to === 'down'),
    'nginx never marked down',
  );
  t.notMatch(server.stderr, /broken header/, 'nginx logged no broken PROXY header');
  t.notMatch(server.stderr, /\[(error|crit|alert|emerg)\]/, `nginx logged no errors${server.stderr ? `:\n${server.stderr}` : ''}`);
});

// ---- (2) Switchyard accepts PROXY from haproxy ------------------------------------------------

/**
 * An upstream that reads the PROXY v1 line Switchyard sends, answers `saw: <line>\n`, then
 * echoes everything after it.
 */
function headerEchoServer(): Promise<RunningServer> {
  return listenTcp((socket) => {
    let buffered = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      const end = buffered.indexOf('\r\n');
      if (end < 0) {
        if (buffered.length > 200) socket.end('no header\n');
        return;
      }
      socket.off('data', onData);
      socket.write(`saw: ${buffered.toString('latin1', 0, end)}\n`);
      const rest = buffered.subarray(end + 2);
      if (rest.length > 0) socket.write(rest);
      socket.pipe(socket);
    };
    socket.on('data', onData);
  });
}

/** Connects (optionally from localAddress), sends `payload`, and reads until `lines` newline-terminated lines arrived. */
function exchange(port: number, payload: string | Buffer, lines: number, localAddress?: string, host = '127.0.0.1'): Promise<{ text: string; localPort: number; socket: Socket }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port, localAddress, noDelay: true });
    let text = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within 5s (got ${JSON.stringify(text)})`));
    }, 5_000);
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      text += chunk;
      if (text.split('\n').length - 1 >= lines) {
        clearTimeout(timer);
        resolve({ text, localPort: socket.localPort ?? 0, socket });
      }
    });
    socket.once('connect', () => socket.write(payload));
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.once('close', () => {
      clearTimeout(timer);
      reject(new Error(`closed (got ${JSON.stringify(text)})`));
    });
  });
}

t.test('haproxy → Switchyard: the address haproxy reports is the one Switchyard uses', { skip: needHaproxy }, async (t) => {
  const upstream = await headerEchoServer();
  t.teardown(() => upstream.close());
  const { proc, bound } = await startSwitchyard(
    t,
    'from-haproxy',
    {
      listeners: [{ name: 'from-haproxy', protocol: 'tcp', bind: '127.0.0.1:0', pool: 'app', proxyProtocol: { trusted: ['127.0.0.1/32'] } }],
      pools: { app: { sendProxyProtocol: 'v1', servers: [{ address: `127.0.0.1:${upstream.port}` }] } },
    },
    1,
  );
  const switchyardPort = bound.get('from-haproxy')!.port;
  const ports = { v1: await freePort(), v2: await freePort(), v2tlv: await freePort() };
  const cfg = dir.write(
    'haproxy.cfg',
    `global
  nbthread 1
defaults
  mode tcp
  timeout connect 2s
  timeout client 10s
  timeout server 10s
listen pp-v1
  bind 127.0.0.1:${ports.v1}
  server s 127.0.0.1:${switchyardPort} send-proxy check check-send-proxy inter 200ms
listen pp-v2
  bind 127.0.0.1:${ports.v2}
  server s 127.0.0.1:${switchyardPort} send-proxy-v2 check check-send-proxy inter 200ms
listen pp-v2-tlv
  bind 127.0.0.1:${ports.v2tlv}
  unique-id-format %ci-%cp-%Ts
  server s 127.0.0.1:${switchyardPort} send-proxy-v2 proxy-v2-options crc32c,unique-id,authority check check-send-proxy inter 200ms
`,
  );
  const server = await startDaemon(haproxy!, ['-f', cfg, '-db'], { port: ports.v1 });
  t.teardown(() => server.stop());
  for (const port of [ports.v2, ports.v2tlv]) await waitForPort(port, '127.0.0.1', 5_000);

  for (const [kind, port] of Object.entries(ports)) {
    const { text, localPort, socket } = await exchange(port, 'ping\n', 2, '127.0.0.9');
    socket.end();
    t.equal(text, `saw: PROXY TCP4 127.0.0.9 127.0.0.1 ${localPort} ${port}\nping\n`, `${kind}: the upstream saw haproxy's client (127.0.0.9:${localPort}) and the address it connected to`);
    const line = await proc.waitForLog(
      (entry) => entry.msg === 'connection closed' && entry.downstream === `127.0.0.9:${localPort}`,
      3_000,
      `${kind}: the connection line for 127.0.0.9:${localPort}`,
    );
    t.equal(line.end, 'closed', `${kind}: logged with downstream 127.0.0.9:${localPort}, ended cleanly`);
  }
  // haproxy's own health checks (check-send-proxy: a LOCAL header, then close) pass through too.
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  t.comment(server.stderr.trim());
  t.notMatch(server.stderr, /is DOWN/, 'haproxy never saw Switchyard down');
  const rejected = proc.logs().filter((line) => /PROXY protocol: connection closed/.test(String(line.msg)));
  // haproxy closes its check connections with a RST (SO_LINGER 0). When the RST is already in
  // by the time Switchyard handles the accept, socket.remoteAddress is undefined.
  const vanished = rejected.filter((line) => line.downstream === ':0');
  t.same(
    rejected.filter((line) => line.downstream !== ':0').map((line) => `${line.downstream} ${line.reason}`),
    [],
    'no header from haproxy (traffic or checks) was rejected',
  );
  t.same(vanished.map((line) => line.reason), [], 'a connection reset before its accept is not reported as an untrusted source');
});

// ---- (3) malformed headers by hand ------------------------------------------------------------

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

/** A v2 PROXY header for TCP over IPv4 with an honest length. */
function v2Header(source: [string, number], destination: [string, number]): Buffer {
  const ip = (text: string) => text.split('.').map(Number);
  const body = Buffer.from([...ip(source[0]), ...ip(destination[0]), source[1] >> 8, source[1] & 0xff, destination[1] >> 8, destination[1] & 0xff]);
  return Buffer.concat([V2_SIGNATURE, Buffer.from([0x21, 0x11, 0, body.length]), body]);
}

interface Outcome {
  /** How the connection ended, from the client's side. */
  closedAfterMs: number;
  received: string;
  localPort: number;
}

/**
 * Opens a connection from `localAddress`, writes `chunks` (each after `gapMs`), and waits for
 * the server to close it (bounded). Resolves with when it closed and what arrived.
 */
function sendAndWaitForClose(port: number, chunks: Buffer[], options: { gapMs?: number; localAddress?: string; waitMs?: number } = {}): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, localAddress: options.localAddress, noDelay: true });
    const startedAt = Date.now();
    let received = '';
    let localPort = 0;
    socket.setEncoding('latin1');
    socket.on('data', (text: string) => (received += text));
    socket.on('error', () => {});
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`still open after ${options.waitMs ?? 5_000}ms (got ${JSON.stringify(received)})`));
    }, options.waitMs ?? 5_000);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve({ closedAfterMs: Date.now() - startedAt, received, localPort });
    });
    socket.once('connect', async () => {
      localPort = socket.localPort ?? 0;
      for (const chunk of chunks) {
        if (socket.destroyed) return;
        socket.write(chunk);
        if (options.gapMs) await new Promise((resolve) => setTimeout(resolve, options.gapMs));
      }
    });
  });
}

t.test('malformed PROXY headers are closed and logged; a good connection alongside is unaffected', async (t) => {
  const upstream = await headerEchoServer();
  t.teardown(() => upstream.close());
  let upstreamConnections = 0;
  upstream.server.on('connection', () => upstreamConnections++);
  const { proc, bound } = await startSwitchyard(
    t,
    'malformed',
    {
      listeners: [
        { name: 'trusting', protocol: 'tcp', bind: '127.0.0.1:0', pool: 'app', proxyProtocol: { trusted: ['127.0.0.1/32'], timeout: '1500ms' } },
        { name: 'picky', protocol: 'tcp', bind: '127.0.0.1:0', pool: 'app', proxyProtocol: { trusted: ['127.0.0.2/32'] } },
      ],
      pools: { app: { sendProxyProtocol: 'v1', servers: [{ address: `127.0.0.1:${upstream.port}` }] } },
    },
    2,
  );
  const port = bound.get('trusting')!.port;
  const pickyPort = bound.get('picky')!.port;

  // A good connection, kept open through everything below.
  const good = await exchange(port, 'PROXY TCP4 127.0.0.50 127.0.0.1 5000 80\r\nhello\n', 2);
  t.equal(good.text, `saw: PROXY TCP4 127.0.0.50 127.0.0.1 5000 80\nhello\n`, 'a valid v1 header: the upstream sees its source');
  const connectionsBefore = upstreamConnections;

  const fast = 1_000; // well under the 1.5s header timeout: rejected on sight, not by the timer
  const lyingV2 = Buffer.concat([V2_SIGNATURE, Buffer.from([0x21, 0x11, 0xff, 0xff]), Buffer.alloc(64)]);
  const shortV2 = Buffer.concat([V2_SIGNATURE, Buffer.from([0x21, 0x11, 0, 4]), Buffer.from([127, 0, 0, 1])]);
  const cases: Array<{ name: string; port: number; chunks: Buffer[]; reason: RegExp; within: number; atLeast?: number; localAddress?: string }> = [
    { name: 'garbage (an HTTP request)', port, chunks: [Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')], reason: /invalid PROXY header/, within: fast },
    { name: 'PROXY TCP4 1.2.3.4 (truncated v1)', port, chunks: [Buffer.from('PROXY TCP4 1.2.3.4\r\n')], reason: /invalid PROXY header/, within: fast },
    { name: 'an oversize v1 line without CRLF', port, chunks: [Buffer.from(`PROXY TCP4 ${'1'.repeat(300)}`)], reason: /invalid PROXY header/, within: fast },
    { name: 'a v2 header whose length claims 65535 bytes', port, chunks: [lyingV2], reason: /invalid PROXY header/, within: fast },
    { name: 'a v2 AF_INET header whose length (4) is too short for its addresses', port, chunks: [shortV2], reason: /invalid PROXY header/, within: fast },
    { name: 'no header at all within the timeout', port, chunks: [], reason: /no PROXY header within 1500ms/, within: 3_000, atLeast: 1_400 },
    { name: 'half a header, then silence', port, chunks: [Buffer.from('PROXY TCP4 127.0.0.5')], reason: /no PROXY header within/, within: 3_000, atLeast: 1_400 },
    {
      name: 'an untrusted source with a valid header',
      port: pickyPort,
      chunks: [Buffer.from('PROXY TCP4 127.0.0.60 127.0.0.1 6000 80\r\nhi\n')],
      reason: /not in proxyProtocol\.trusted/,
      within: fast,
    },
  ];

  const outcomes = await Promise.all(cases.map((c) => sendAndWaitForClose(c.port, c.chunks, { localAddress: c.localAddress })));
  const warnLines = await proc.waitForLogs((line) => /^PROXY protocol: connection closed/.test(String(line.msg)), cases.length, 3_000, 'rejection lines');
  cases.forEach((c, index) => {
    const outcome = outcomes[index]!;
    t.equal(outcome.received, '', `${c.name}: nothing came back`);
    t.ok(outcome.closedAfterMs < c.within, `${c.name}: closed after ${outcome.closedAfterMs}ms (< ${c.within}ms)`);
    if (c.atLeast !== undefined) t.ok(outcome.closedAfterMs >= c.atLeast, `${c.name}: not before the timeout (${outcome.closedAfterMs}ms)`);
    const line = warnLines.find((entry) => entry.downstream === `127.0.0.1:${outcome.localPort}`);
    t.ok(line, `${c.name}: logged with the real peer address`);
    t.equal(line?.level, 'warn', `${c.name}: at warn`);
    t.match(String(line?.reason), c.reason, `${c.name}: the reason says why (${line?.reason})`);
  });
  t.equal(upstreamConnections, connectionsBefore, 'no rejected connection reached the upstream');

  // Slow but complete: one byte every 20ms, well within the timeout, must work (v1 and v2).
  const slowV1 = Buffer.from('PROXY TCP4 127.0.0.70 127.0.0.1 7000 80\r\nslow\n');
  const slowV2 = Buffer.concat([v2Header(['127.0.0.71', 7001], ['127.0.0.1', 80]), Buffer.from('slow\n')]);
  for (const [name, bytes, expected] of [
    ['v1', slowV1, 'saw: PROXY TCP4 127.0.0.70 127.0.0.1 7000 80\nslow\n'],
    ['v2', slowV2, 'saw: PROXY TCP4 127.0.0.71 127.0.0.1 7001 80\nslow\n'],
  ] as const) {
    const startedAt = Date.now();
    const result = await new Promise<string>((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port, noDelay: true });
      let text = '';
      socket.setEncoding('latin1');
      socket.on('data', (chunk: string) => {
        text += chunk;
        if (text.endsWith('slow\n')) {
          socket.end();
          resolve(text);
        }
      });
      socket.on('error', reject);
      socket.on('close', () => reject(new Error(`closed (got ${JSON.stringify(text)})`)));
      socket.once('connect', async () => {
        for (const byte of bytes) {
          if (socket.destroyed) return;
          socket.write(Buffer.from([byte]));
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      });
    }).catch((err: Error) => `failed: ${err.message}`);
    t.equal(result, expected, `${name} header sent one byte at a time over ${Date.now() - startedAt}ms: accepted`);
  }

  // LOCAL / UNKNOWN headers (a health check from the balancer in front) keep the real peer.
  const local = await exchange(port, Buffer.concat([V2_SIGNATURE, Buffer.from([0x20, 0x00, 0, 0]), Buffer.from('local\n')]), 2);
  t.equal(local.text, `saw: PROXY TCP4 127.0.0.1 127.0.0.1 ${local.localPort} ${port}\nlocal\n`, 'v2 LOCAL: proxied with the real peer address');
  local.socket.end();
  const unknown = await exchange(port, 'PROXY UNKNOWN\r\nunknown\n', 2);
  t.equal(unknown.text, `saw: PROXY TCP4 127.0.0.1 127.0.0.1 ${unknown.localPort} ${port}\nunknown\n`, 'v1 UNKNOWN: proxied with the real peer address');
  unknown.socket.end();

  // The trusted source of the picky listener is served.
  const trusted = await exchange(pickyPort, 'PROXY TCP4 127.0.0.61 127.0.0.1 6001 80\r\nok\n', 2, '127.0.0.2');
  t.equal(trusted.text, 'saw: PROXY TCP4 127.0.0.61 127.0.0.1 6001 80\nok\n', 'the picky listener serves its trusted source');
  trusted.socket.end();

  // And the good connection opened first never noticed any of it.
  const still = await new Promise<string>((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error('no echo')), 3_000);
    good.socket.removeAllListeners('close');
    good.socket.on('data', (chunk: string) => {
      text += chunk;
      if (text.endsWith('still here\n')) {
        clearTimeout(timer);
        resolve(text);
      }
    });
    good.socket.write('still here\n');
  }).catch((err: Error) => `failed: ${err.message}`);
  t.equal(still, 'still here\n', 'the good connection still works');
  good.socket.end();

  // A client that resets right after connecting (as haproxy's health checks do) is gone by the
  // time the accept is handled: it must not be reported as an untrusted source.
  await Promise.all(
    Array.from(
      { length: 20 },
      () =>
        new Promise<void>((resolve) => {
          const socket = connect({ host: '127.0.0.1', port });
          socket.on('error', () => {});
          socket.once('connect', () => socket.resetAndDestroy());
          socket.once('close', () => resolve());
        }),
    ),
  );
  await new Promise((resolve) => setTimeout(resolve, 300));
  const untrusted = proc.logs().filter((line) => /not in proxyProtocol\.trusted/.test(String(line.reason)));
  t.equal(untrusted.length, 1, 'only the one really untrusted source is reported as untrusted');
  t.ok(
    proc.logs().every((line) => line.downstream !== ':0'),
    'no log line names a downstream ":0"',
  );
});
