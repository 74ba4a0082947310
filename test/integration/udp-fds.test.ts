import t from 'tap';
import { createSocket } from 'node:dgram';
import { readdirSync, readFileSync } from 'node:fs';
import { waitFor } from '../helpers/net.ts';
import { childEnv, freePort, repoRoot, spawnProcess, tempDir, type RunningProcess } from '../helpers/process.ts';
import { echoServer, type Teardown } from '../helpers/udp.ts';

// Descriptors and memory of a real Switchyard process (the CLI, as users run it) while
// thousands of distinct UDP sources come and go, and when it runs out of descriptors.

/** Starts the CLI under `ulimit -n nofile` with a one-listener udp config over `serverPort`. */
async function startLimited(t: Teardown, nofile: number, udp: string, serverPort: number): Promise<{ proc: RunningProcess; port: number }> {
  const dir = tempDir();
  t.teardown(() => dir.remove());
  // At log level warn there is no "bound to" line: the port is chosen here, and the
  // listener is up once it answers.
  const port = await freePort();
  const config = dir.write(
    'udp.yaml',
    ['log: { level: warn }', 'listeners:', `  - { name: u, protocol: udp, bind: "127.0.0.1:${port}", pool: p, udp: ${udp} }`, 'pools:', '  p:', `    servers: [ { address: "127.0.0.1:${serverPort}" } ]`, ''].join('\n'),
  );
  const proc = spawnProcess('bash', ['-c', `ulimit -n ${nofile} && exec "${process.execPath}" src/cli.ts --config "${config}"`], { cwd: repoRoot, env: childEnv() });
  t.teardown(() => proc.stop());
  const deadline = Date.now() + 15_000;
  while ((await askOnce(port, 'ready?', 200)) === undefined) {
    if (proc.exit !== undefined || Date.now() > deadline) throw new Error(`switchyard did not come up: ${proc.stderr}${proc.stdout}`);
  }
  return { proc, port };
}

function fdsOf(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

function rssKiB(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(match![1]);
}

/** One query from a fresh socket (a new source port); resolves with the reply or undefined. */
function askOnce(port: number, payload: string, timeoutMs = 1_000): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = createSocket('udp4');
    const done = (reply: string | undefined) => {
      clearTimeout(timer);
      socket.close();
      resolve(reply);
    };
    const timer = setTimeout(() => done(undefined), timeoutMs);
    socket.on('error', () => done(undefined));
    socket.on('message', (message) => done(String(message)));
    socket.send(payload, port, '127.0.0.1');
  });
}

t.test('6,000 distinct sources with responses: 1: descriptors and memory stay bounded, then return', async (t) => {
  const server = await echoServer(t, 'a');
  const { proc, port } = await startLimited(t, 4096, '{ responses: 1, maxSessions: 500, sessionTimeout: 1s }', server.port);
  const pid = proc.child.pid!;
  t.ok(await askOnce(port, 'warm-up'));
  const baseFds = fdsOf(pid);
  const baseRss = rssKiB(pid);
  let maxFds = 0;
  let answered = 0;
  // 60 waves of 100 concurrent sources: 6,000 sessions, each from its own source port.
  for (let wave = 0; wave < 60; wave++) {
    const replies = await Promise.all(Array.from({ length: 100 }, (_, i) => askOnce(port, `q${wave}-${i}`)));
    answered += replies.filter((reply, i) => reply === `a:q${wave}-${i}`).length;
    maxFds = Math.max(maxFds, fdsOf(pid));
  }
  t.equal(answered, 6_000, 'every query answered with its own reply');
  // Each wave needs at most 100 upstream sockets at once; finished ones are parked and reused.
  t.ok(maxFds <= baseFds + 200, `descriptors peaked at ${maxFds} (base ${baseFds})`);
  t.ok(rssKiB(pid) - baseRss < 64 * 1024, `RSS grew by ${rssKiB(pid) - baseRss} KiB`);
  await waitFor(() => fdsOf(pid) <= baseFds, 5_000, 'parked sockets to close after sessionTimeout');
});

t.test('out of descriptors: new sessions are dropped and counted, the process lives on and recovers', async (t) => {
  const server = await echoServer(t, 'a');
  // maxSessions far above what 128 descriptors allow: the kernel, not the table, says no.
  const { proc, port } = await startLimited(t, 128, '{ maxSessions: 10000, sessionTimeout: 400ms }', server.port);
  const pid = proc.child.pid!;
  const clients = Array.from({ length: 300 }, () => createSocket('udp4'));
  t.teardown(() => clients.forEach((c) => c.close()));
  let replies = 0;
  for (const c of clients) {
    c.on('message', () => replies++);
    c.send('x', port, '127.0.0.1');
  }
  const line = await proc.waitForLog((l) => String(l.msg).includes('socket-failed'), 10_000, 'a socket-failed drop line');
  t.equal(line.level, 'warn', 'logged at warn');
  await waitFor(() => replies > 0, 2_000, 'the sessions that got a socket to be answered');
  t.ok(replies < 300, `${replies} of 300 answered: the rest had no descriptor`);
  // Sessions expire, descriptors come back, and new sources are served again.
  for (const c of clients) c.close();
  clients.length = 0;
  await waitFor(() => fdsOf(pid) < 64, 5_000, 'expired sessions to release their descriptors');
  t.equal(await askOnce(port, 'again', 2_000), 'a:again', 'a new source is served again');
  t.equal(proc.exit, undefined, 'still running');
});
