import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { configSchema, type Config } from './schema.ts';
import { SwitchyardError } from '../core/errors.ts';

/** One problem in a config file: where (`pools.pg.servers[1].address`) and what. */
export interface ConfigProblem {
  path: string;
  message: string;
}

/** Thrown by loadConfig; `problems` lists every problem found, not just the first. */
export class ConfigError extends SwitchyardError {
  readonly problems: readonly ConfigProblem[];
  readonly file: string;

  constructor(file: string, problems: ConfigProblem[]) {
    super('SWY_CONFIG_INVALID', `${file}: ${problems.length} problem${problems.length === 1 ? '' : 's'}\n${problems.map((p) => `  ${p.path}: ${p.message}`).join('\n')}`, { source: 'config' });
    this.file = file;
    this.problems = problems;
  }
}

/** Renders a zod issue path the way users write keys: `pools.pg.servers[1].address`. */
export function formatKeyPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else out += out ? `.${String(key)}` : String(key);
  }
  return out || '(top level)';
}

/**
 * Validates an already-parsed document. Returns the typed config (defaults applied,
 * durations in ms) or throws ConfigError with every problem and its key path.
 */
export function validateConfig(document: unknown, file = '<config>'): Config {
  if (document === null || document === undefined) {
    throw new ConfigError(file, [{ path: '(top level)', message: 'the config is empty: expected at least listeners and pools' }]);
  }
  const result = configSchema.safeParse(document);
  if (result.success) return result.data;
  const problems: ConfigProblem[] = [];
  for (const issue of result.error.issues) {
    if (issue.code === 'unrecognized_keys') {
      // One line per key, at the key's own path, so the typo is named where it stands.
      for (const key of issue.keys) problems.push({ path: formatKeyPath([...issue.path, key]), message: 'unknown key' });
    } else {
      problems.push({ path: formatKeyPath(issue.path), message: issue.message });
    }
  }
  throw new ConfigError(file, problems);
}

/** Parses YAML or JSON text; the format is chosen by the file extension (.json → JSON). */
export function parseConfigText(text: string, file: string): unknown {
  if (extname(file).toLowerCase() === '.json') {
    try {
      return JSON.parse(text);
    } catch (err) {
      throw new ConfigError(file, [{ path: '(file)', message: `invalid JSON: ${(err as Error).message.replace(/\s*\n\s*/g, ' ')}` }]);
    }
  }
  try {
    return parseYaml(text, { prettyErrors: true, uniqueKeys: true });
  } catch (err) {
    const message = err instanceof YAMLParseError ? err.message.split('\n')[0]!.replace(/:$/, '') : String(err);
    throw new ConfigError(file, [{ path: '(file)', message: `invalid YAML: ${message}` }]);
  }
}

/**
 * Reads, parses and validates a config file. Binds nothing and resolves no host names
 * (that happens at start), so `--check` can run it anywhere.
 */
export async function loadConfig(file: string): Promise<Config> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new SwitchyardError('SWY_CONFIG_READ', `cannot read config ${file}: ${(err as Error).message}`, { source: 'config', cause: err });
  }
  return validateConfig(parseConfigText(text, file), file);
}
