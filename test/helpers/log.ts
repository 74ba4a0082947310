import { Writable } from 'node:stream';
import { createLogger, type Logger, type LogLevel } from '../../src/core/log.ts';

/** A logger that keeps its JSON lines in memory, for asserting on log output. */
export function captureLogger(level: LogLevel = 'trace'): { logger: Logger; lines: () => Array<Record<string, unknown>> } {
  const chunks: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      chunks.push(String(chunk));
      done();
    },
  });
  const logger = createLogger(sink, level);
  return {
    logger,
    lines: () =>
      chunks
        .join('')
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as Record<string, unknown>),
  };
}
