/**
 * `--profile`: summarises the V8 CPU profiles Switchyard writes when run with `--cpu-prof`
 * (one `.cpuprofile` JSON per Switchyard process) into the functions and files that took the
 * most self time. Pure: JSON in, summary and markdown out (tested in
 * test/unit/bench-report.test.ts); run.ts reads the files.
 */

/** The parts of a `.cpuprofile` the summary reads (Chrome DevTools protocol `Profile`). */
interface CpuProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}
interface CpuProfile {
  nodes: CpuProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
}

export interface ProfileEntry {
  /** `functionName file:line`, or a file, or a V8 category such as `(garbage collector)`. */
  name: string;
  /** Share of the busy samples (everything but `(idle)`), 0–1. */
  share: number;
  /** Milliseconds of self time (samples × the mean sampling interval). */
  ms: number;
}

export interface ProfileSummary {
  /** Samples in which the process was doing something (not `(idle)`). */
  busySamples: number;
  /** Busy time, ms. */
  busyMs: number;
  /** Share of all samples that were idle, 0–1. */
  idleShare: number;
  functions: ProfileEntry[];
  files: ProfileEntry[];
}

/** V8's pseudo-frames: no file; kept by name (program = native code outside JS, GC...). */
const CATEGORY = /^\(.*\)$/;

/**
 * The `top` functions and files by self time in `profile` (parsed `.cpuprofile` JSON). File
 * paths lose `stripPrefix` (the repo root as a file URL) so they read `src/l4/udp-session.ts`;
 * Node's own code keeps `node:` names. Returns a sentence instead when the JSON is not a CPU
 * profile or holds no busy sample.
 */
export function summarizeCpuProfile(profile: unknown, top: number, stripPrefix = ''): ProfileSummary | string {
  const data = profile as Partial<CpuProfile> | null;
  if (data === null || typeof data !== 'object' || !Array.isArray(data.nodes)) return 'not a CPU profile (no nodes)';
  const hits = new Map<number, number>();
  if (Array.isArray(data.samples) && data.samples.length > 0) {
    for (const id of data.samples) hits.set(id, (hits.get(id) ?? 0) + 1);
  } else {
    for (const node of data.nodes) hits.set(node.id, node.hitCount ?? 0);
  }
  let total = 0;
  let idle = 0;
  const byFunction = new Map<string, number>();
  const byFile = new Map<string, number>();
  for (const node of data.nodes) {
    const count = hits.get(node.id) ?? 0;
    if (count === 0) continue;
    total += count;
    const frame = node.callFrame;
    const name = frame.functionName || '(anonymous)';
    if (name === '(idle)') {
      idle += count;
      continue;
    }
    if (name === '(root)') continue;
    const file = frame.url === '' ? '' : shortenUrl(frame.url, stripPrefix);
    const functionKey = CATEGORY.test(name) || file === '' ? name : `${name} ${file}:${frame.lineNumber + 1}`;
    byFunction.set(functionKey, (byFunction.get(functionKey) ?? 0) + count);
    const fileKey = file === '' ? (CATEGORY.test(name) ? name : '(native)') : file;
    byFile.set(fileKey, (byFile.get(fileKey) ?? 0) + count);
  }
  const busy = [...byFunction.values()].reduce((sum, count) => sum + count, 0);
  if (busy === 0) return 'the profile holds no busy sample';
  const spanMs = typeof data.startTime === 'number' && typeof data.endTime === 'number' ? (data.endTime - data.startTime) / 1000 : 0;
  const msPerSample = total > 0 ? spanMs / total : 0;
  const ranked = (counts: Map<string, number>): ProfileEntry[] =>
    [...counts.entries()]
      .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
      .slice(0, top)
      .map(([name, count]) => ({ name, share: count / busy, ms: count * msPerSample }));
  return {
    busySamples: busy,
    busyMs: busy * msPerSample,
    idleShare: total > 0 ? idle / total : 0,
    functions: ranked(byFunction),
    files: ranked(byFile),
  };
}

function shortenUrl(url: string, stripPrefix: string): string {
  if (stripPrefix !== '' && url.startsWith(stripPrefix)) return url.slice(stripPrefix.length).replace(/^\/+/, '');
  return url.replace(/^file:\/\//, '');
}

/** The markdown section for one profile: busy time, then the top functions and files. */
export function renderProfileSummary(title: string, summary: ProfileSummary): string {
  const percent = (share: number) => `${(share * 100).toFixed(1)}%`;
  const table = (entries: ProfileEntry[], header: string) => [
    `| ${header} | self % of busy | self ms |`,
    '|---|---:|---:|',
    ...entries.map((entry) => `| ${entry.name.replace(/\|/g, '\\|')} | ${percent(entry.share)} | ${entry.ms.toFixed(0)} |`),
  ];
  return [
    `### ${title}`,
    '',
    `Busy ${(summary.busyMs / 1000).toFixed(2)} s (${summary.busySamples} samples); idle ${percent(summary.idleShare)} of the profile.`,
    '',
    ...table(summary.functions, 'function (self time)'),
    '',
    ...table(summary.files, 'file (self time)'),
    '',
  ].join('\n');
}
