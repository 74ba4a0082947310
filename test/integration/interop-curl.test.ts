import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { closeSync, openSync, readFileSync } from 'node:fs';
import type { AddressInfo, Socket } from 'node:net';
import { listenTcp } from '../helpers/net.ts';
import { findBinary, runToExit, startCli, tempDir, type RunningProcess } from '../helpers/process.ts';

/**
 * Switchyard's TCP listener carrying HTTP between real clients nobody here wrote (curl,
 * socat) and node:http upstreams.
 */

const curl = findBinary('curl');
const socat = findBinary('socat');
const needCurl = curl === undefined ? 'curl not found' : false;
const needSocat = socat === undefined ? 'socat not found' : false;

const dir = tempDir('switchyard-curl-');
t.teardown(() => dir.remove());

interface HttpUpstream {
  name: string;
  port: number;
  server: Server;
  /** TCP connections accepted so far. */
  connections: number;
  /** Requests answered so far. */
  requests: number;
}

/**
 * A node:http server answering `<name> <method> <path> <sha256 of the body>` and counting
 * connections and requests (keep-alive is on, as node's default).
 */
async function httpUpstream(t: { teardown(fn: () => unknown): void }, name: string): Promise<HttpUpstream> {
  const sockets = new Set<Socket>();
  const server = createServer((request, response) => {
    upstream.requests++;
    const hash = createHash('sha256');
    request.on('data', (chunk: Buffer) => hash.update(chunk));
    request.on('end', () => {
      response.setHeader('content-type', 'text/plain');
      response.end(`${name} ${request.method} ${request.url} ${hash.digest('hex')}\n`);
    });
  });
  const upstream: HttpUpstream = { name, port: 0, server, connections: 0, requests: 0 };
  server.on('connection', (socket: Socket) => {
    upstream.connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  upstream.port = (server.address() as AddressInfo).port;
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  );
  return upstream;
}

async function startSwitchyard(t: { teardown(fn: () => unknown): void }, name: string, ports: number[]): Promise<{ proc: RunningProcess; port: number }> {
  const file = dir.write(
    `${name}.json`,
    JSON.stringify({
      shutdown: { drainTimeout: '1s' },
      listeners: [{ name: 'web', protocol: 'tcp', bind: '127.0.0.1:0', pool: 'web' }],
      pools: { web: { algorithm: 'round-robin', servers: ports.map((port) => ({ address: `127.0.0.1:${port}` })) } },
    }),
  );
  const { proc, bound } = await startCli(file);
  t.teardown(() => proc.stop());
  return { proc, port: bound.get('web')!.port };
}

const emptySha = createHash('sha256').digest('hex');

t.test('curl 20 times through the tcp listener: both upstreams answer, 10 each', { skip: needCurl }, async (t) => {
  const a = await httpUpstream(t, 'alpha');
  const b = await httpUpstream(t, 'beta');
  const { proc, port } = await startSwitchyard(t, 'twenty', [a.port, b.port]);
  const bodies: string[] = [];
  for (let i = 0; i < 20; i++) {
    const run = await runToExit(curl!, ['-s', '--max-time', '5', `http://127.0.0.1:${port}/x`], { timeoutMs: 10_000 });
    t.equal(run.code, 0, `curl #${i} exits 0`);
    bodies.push(run.stdout);
  }
  t.equal(bodies.filter((body) => body === `alpha GET /x ${emptySha}\n`).length, 10, 'alpha answered 10');
  t.equal(bodies.filter((body) => body === `beta GET /x ${emptySha}\n`).length, 10, 'beta answered 10');
  t.equal(a.connections + b.connections, 20, 'one upstream connection per curl');
  // curl is done when its response arrived; Switchyard's line for that connection may follow.
  await proc.waitForLogs((line) => line.msg === 'connection closed', 20, 3_000, 'connection lines');
  const lines = proc.logs().filter((line) => line.msg === 'connection closed');
  t.equal(lines.length, 20, 'one log line per connection');
  t.ok(lines.every((line) => line.end === 'closed' && Number(line.bytesIn) > 0 && Number(line.bytesOut) > 0), 'each ended cleanly and carried bytes both ways');
});

t.test('HTTP keep-alive: one curl fetching several URLs uses one connection end to end', { skip: needCurl }, async (t) => {
  const a = await httpUpstream(t, 'alpha');
  const b = await httpUpstream(t, 'beta');
  const { port } = await startSwitchyard(t, 'keepalive', [a.port, b.port]);
  const urls = ['/one', '/two', '/three', '/four'].map((path) => `http://127.0.0.1:${port}${path}`);
  const run = await runToExit(curl!, ['-s', '--max-time', '5', '-w', 'connects=%{num_connects}\\n', ...urls], { timeoutMs: 10_000 });
  t.equal(run.code, 0, `curl exits 0 (${run.stderr})`);
  const answers = run.stdout.split('\n').filter((line) => /^(alpha|beta) /.test(line));
  t.equal(answers.length, 4, 'four answers');
  const names = new Set(answers.map((line) => line.split(' ')[0]));
  t.equal(names.size, 1, 'all from the same upstream: the same connection was reused');
  t.same(
    answers.map((line) => line.split(' ')[2]),
    ['/one', '/two', '/three', '/four'],
    'in order',
  );
  const connects = [...run.stdout.matchAll(/connects=(\d+)/g)].map((match) => Number(match[1]));
  t.same(connects, [1, 0, 0, 0], 'curl connected once and reused the connection');
  t.equal(a.connections + b.connections, 1, 'the upstreams saw one connection');
  t.equal(a.requests + b.requests, 4, 'carrying four requests');
});

t.test('curl uploads a 2 MB body intact (backpressure through the balancer)', { skip: needCurl }, async (t) => {
  const a = await httpUpstream(t, 'alpha');
  const { port } = await startSwitchyard(t, 'upload', [a.port]);
  const body = randomBytes(2 * 1024 * 1024);
  const file = dir.write('upload.bin', body);
  const run = await runToExit(curl!, ['-s', '--max-time', '10', '--data-binary', `@${file}`, '-H', 'content-type: application/octet-stream', `http://127.0.0.1:${port}/up`], {
    timeoutMs: 15_000,
  });
  t.equal(run.code, 0, 'curl exits 0');
  t.equal(run.stdout, `alpha POST /up ${createHash('sha256').update(body).digest('hex')}\n`, 'the upstream received every byte');
});

t.test('socat pipes a file through the balancer to an echo upstream: identical bytes back', { skip: needSocat }, async (t) => {
  const echo = await listenTcp((socket) => socket.pipe(socket));
  t.teardown(() => echo.close());
  const { proc, port } = await startSwitchyard(t, 'socat', [echo.port]);
  const input = randomBytes(4 * 1024 * 1024 + 123);
  const inFile = dir.write('socat-in.bin', input);
  const outFile = dir.write('socat-out.bin', '');
  const inFd = openSync(inFile, 'r');
  const outFd = openSync(outFile, 'w');
  let run;
  try {
    // socat half-closes after the file (shutdown SHUT_WR) and keeps reading for up to -t seconds.
    run = await runToExit(socat!, ['-t', '10', '-', `TCP:127.0.0.1:${port}`], { stdio: [inFd, outFd, 'pipe'], timeoutMs: 30_000 });
  } finally {
    closeSync(inFd);
    closeSync(outFd);
  }
  t.equal(run.code, 0, `socat exits 0 (${run.stderr})`);
  const output = readFileSync(outFile);
  t.equal(output.length, input.length, 'same length');
  t.ok(output.equals(input), 'identical bytes');
  t.ok(run.durationMs < 9_000, `finished by half-close, not by socat's timeout (${run.durationMs}ms)`);
  const line = await proc.waitForLog((entry) => entry.msg === 'connection closed', 3_000);
  t.equal(line.bytesIn, input.length, 'log: bytesIn');
  t.equal(line.bytesOut, input.length, 'log: bytesOut');
  t.equal(line.end, 'closed', 'log: clean close');
});
