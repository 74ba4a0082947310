/**
 * `npm start`: runs Switchyard on config/demo.yaml together with the three DEMO UPSTREAMS that
 * config points at, so the balancer visibly works on a fresh machine with nothing else
 * installed. The demo upstreams are plain HTTP servers on 127.0.0.1:18081-18083; they are not
 * part of Switchyard. Ctrl-C stops everything.
 */
import { createServer } from 'node:http';
import { fileURLToPath } from 'node:url';
import { runCli } from './cli.ts';

const DEMO_PORTS = [18081, 18082, 18083];
const config = fileURLToPath(new URL('../config/demo.yaml', import.meta.url));

for (const [index, port] of DEMO_PORTS.entries()) {
  const name = `demo upstream ${index + 1}`;
  const server = createServer((_request, response) => {
    response.setHeader('content-type', 'text/plain');
    response.end(`hello from ${name} (127.0.0.1:${port})\n`);
  });
  server.on('error', (err) => {
    process.stderr.write(`demo: cannot start ${name} on 127.0.0.1:${port}: ${err.message}\n`);
    process.exit(1);
  });
  server.listen(port, '127.0.0.1');
  server.unref();
}

process.stderr.write(
  [
    '',
    'Switchyard demo: balancing 127.0.0.1:18080 over demo upstreams on 127.0.0.1:18081-18083 (weights 2,1,1).',
    'Try:   for i in 1 2 3 4 5 6 7 8; do curl -s http://127.0.0.1:18080/; done',
    'Stop:  Ctrl-C (graceful drain). Logs below are Switchyard\'s JSON lines.',
    '',
    '',
  ].join('\n'),
);

const code = await runCli(['--config', config]);
process.exit(code);
