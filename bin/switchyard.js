#!/usr/bin/env node
// The `switchyard` command. Switchyard is TypeScript run by Node's built-in type stripping
// (Node >= 22.18 / 23.6 strip types by default; 22.12-22.17 need a flag, so we re-run with it).
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 12)) {
  console.error(`switchyard: Node ${process.version} is too old; Switchyard needs Node >= 22.12.`);
  console.error('Inside the project, `npx switchyard` and `npm start` use the Node 24 that `npm install` brings.');
  process.exit(1);
}

if (process.features.typescript) {
  const { runCli } = await import('../src/cli.ts');
  const code = await runCli(process.argv.slice(2));
  process.exit(code);
} else {
  const cli = fileURLToPath(new URL('../src/cli.ts', import.meta.url));
  const child = spawn(process.execPath, ['--experimental-strip-types', '--no-warnings=ExperimentalWarning', cli, ...process.argv.slice(2)], { stdio: 'inherit' });
  for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => child.kill(signal));
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
}
