/**
 * Turns results into the markdown report and the SVG chart of ratios to each scenario's
 * reference system (HAProxy; nginx for UDP, which HAProxy cannot proxy). Pure: data in, text
 * out (tested in test/unit/bench-report.test.ts); run.ts writes the files.
 */
import { metricByRound, pairedDifference, pairedRatio, summarizeMetric, type Summary } from './stats.ts';
import type { BalancerName, MetricSpec, Scenario, ScenarioResult, SystemName, SystemRuns } from './types.ts';

const SYSTEM_LABELS: Record<SystemName, string> = { direct: 'direct', switchyard: 'Switchyard', haproxy: 'HAProxy', nginx: 'nginx' };

/** The system a scenario's ratios divide by: `scenario.reference`, HAProxy by default. */
export function referenceOf(scenario: Scenario): BalancerName {
  return scenario.reference ?? 'haproxy';
}

/** `× HAProxy`, `× nginx`: the header of a scenario's ratio column. */
export function ratioLabel(scenario: Scenario): string {
  return `× ${SYSTEM_LABELS[referenceOf(scenario)]}`;
}

/** One system's line in a scenario's table. */
export interface ReportRow {
  system: SystemName;
  unavailable?: string;
  /** With `unavailable`: the system cannot do this at all (the report says n/a). */
  notApplicable?: boolean;
  runsOk: number;
  runsTotal: number;
  primary?: Summary;
  /** Median over rounds of value / the reference system's value in the same round. */
  vsReference?: number;
  /** Median over rounds of value / direct's value in the same round. */
  vsDirect?: number;
  secondary: (number | undefined)[];
  /** Per secondary metric with `compare`: the paired ratio to the reference system; else undefined. */
  secondaryVsReference: (number | undefined)[];
  /** Median over rounds of value − direct's value, per `scenario.addedOverDirect`. */
  addedOverDirect: (number | undefined)[];
  /** Failed runs' reasons and runs' warnings, deduplicated. */
  problems: string[];
}

/**
 * The rows of one scenario's table, in the order of `result.systems`. Ratios pair runs by round
 * (see stats.ts); without a reference (or direct) row in the result there is no such ratio.
 */
export function scenarioRows(result: ScenarioResult): ReportRow[] {
  const { scenario } = result;
  const byName = new Map(result.systems.map((entry) => [entry.system, entry]));
  const reference = (name: SystemName, key: string) => {
    const entry = byName.get(name);
    return entry && entry.unavailable === undefined ? metricByRound(entry.runs, key) : undefined;
  };
  const referenceName = referenceOf(scenario);
  const referenceValues = reference(referenceName, scenario.primary.key);
  const direct = reference('direct', scenario.primary.key);
  return result.systems.map((entry: SystemRuns): ReportRow => {
    const problems = new Set<string>();
    for (const run of entry.runs) {
      if (!run.ok) problems.add(run.error);
      else for (const warning of run.warnings) problems.add(warning);
    }
    const row: ReportRow = {
      system: entry.system,
      unavailable: entry.unavailable,
      notApplicable: entry.notApplicable,
      runsOk: entry.runs.filter((run) => run.ok).length,
      runsTotal: entry.runs.length,
      secondary: [],
      secondaryVsReference: [],
      addedOverDirect: [],
      problems: [...problems],
    };
    if (entry.unavailable !== undefined) return row;
    const own = metricByRound(entry.runs, scenario.primary.key);
    row.primary = summarizeMetric(entry.runs, scenario.primary.key);
    row.vsReference = referenceValues ? pairedRatio(own, referenceValues) : undefined;
    row.vsDirect = direct ? pairedRatio(own, direct) : undefined;
    row.secondary = scenario.secondary.map((metric) => summarizeMetric(entry.runs, metric.key)?.median);
    row.secondaryVsReference = scenario.secondary.map((metric) => {
      if (!metric.compare) return undefined;
      const referenceMetric = reference(referenceName, metric.key);
      return referenceMetric ? pairedRatio(metricByRound(entry.runs, metric.key), referenceMetric) : undefined;
    });
    row.addedOverDirect = (scenario.addedOverDirect ?? []).map((metric) => {
      const directValues = reference('direct', metric.key);
      return directValues ? pairedDifference(metricByRound(entry.runs, metric.key), directValues) : undefined;
    });
    return row;
  });
}

/** `1234.5` with 0 digits → `1,235`; undefined → `–`. */
export function formatNumber(value: number | undefined, digits: number): string {
  if (value === undefined || !Number.isFinite(value)) return '–';
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** A ratio as `1.23×`; undefined → `–`. */
export function formatRatio(value: number | undefined): string {
  return value === undefined || !Number.isFinite(value) ? '–' : `${value.toFixed(2)}×`;
}

function arrow(metric: MetricSpec): string {
  return metric.better === 'higher' ? '↑' : '↓';
}

function escapeCell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

/** The first cell after the system's name for a system that did not run: n/a or not available. */
function unavailableCell(row: ReportRow): string {
  return row.notApplicable ? `n/a: ${escapeCell(row.unavailable ?? '')}` : `not available (${escapeCell(row.unavailable ?? '')})`;
}

/** The markdown table (header, separator, rows) for one scenario. */
export function scenarioTable(result: ScenarioResult): string {
  const { scenario } = result;
  const rows = scenarioRows(result);
  const headers = [
    'system',
    `${scenario.primary.label} ${arrow(scenario.primary)} (median)`,
    'min–max',
    ratioLabel(scenario),
    '× direct',
    ...scenario.secondary.flatMap((metric) =>
      metric.compare ? [`${metric.label} ${arrow(metric)}`, `${metric.label} ${ratioLabel(scenario)}`] : [metric.label],
    ),
    ...(scenario.addedOverDirect ?? []).map((metric) => metric.label),
    'runs ok',
  ];
  const lines = [`| ${headers.join(' | ')} |`, `|${headers.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`];
  for (const row of rows) {
    if (row.unavailable !== undefined) {
      lines.push(`| ${row.system} | ${unavailableCell(row)} |${' |'.repeat(headers.length - 2)}`);
      continue;
    }
    const digits = scenario.primary.digits;
    const cells = [
      row.system,
      formatNumber(row.primary?.median, digits),
      row.primary ? `${formatNumber(row.primary.min, digits)}–${formatNumber(row.primary.max, digits)}` : '–',
      formatRatio(row.vsReference),
      formatRatio(row.vsDirect),
      ...row.secondary.flatMap((value, i) => {
        const metric = scenario.secondary[i];
        const median = formatNumber(value, metric.digits);
        return metric.compare ? [median, formatRatio(row.secondaryVsReference[i])] : [median];
      }),
      ...row.addedOverDirect.map((value, i) => formatNumber(value, (scenario.addedOverDirect ?? [])[i].digits)),
      `${row.runsOk}/${row.runsTotal}`,
    ];
    lines.push(`| ${cells.map(escapeCell).join(' | ')} |`);
  }
  return lines.join('\n');
}

export interface ReportInput {
  /** YYYY-MM-DD, local time. */
  date: string;
  /** One line: mode, rounds, duration. */
  mode: string;
  /** One line: which CPUs run what. */
  placement: string;
  machine: [string, string][];
  results: ScenarioResult[];
  /** Invocation-wide notes (e.g. stray-process check). */
  notes: string[];
  elapsedSec: number;
}

/** The whole markdown report. */
export function renderMarkdown(input: ReportInput): string {
  const out: string[] = [];
  out.push(`# Switchyard native benchmark — ${input.date}`, '');
  out.push(`- **Mode:** ${input.mode}`);
  out.push(`- **CPU placement:** ${input.placement}`);
  out.push(`- **Elapsed:** ${input.elapsedSec.toFixed(1)} s`, '');
  out.push('| machine | |', '|---|---|', ...input.machine.map(([label, value]) => `| ${label} | ${escapeCell(value)} |`), '');
  out.push(
    'Read the ratios as: **× HAProxy** = this system’s value ÷ HAProxy’s value in the same round, median over rounds ' +
      '(likewise **× nginx** for the UDP scenarios, which HAProxy cannot proxy, and **× direct**, against the upstream ' +
      'without a balancer). ↑ means higher is better, ↓ lower is better, so for ↓ metrics a ratio below 1 is the better ' +
      'result. min–max is the spread of the per-run values.',
    '',
  );

  out.push('## Summary: ratio to the reference system', '');
  const systems = input.results[0]?.systems.map((entry) => entry.system) ?? [];
  out.push(`| scenario | metric | ratio | ${systems.join(' | ')} |`, `|---|---|---|${systems.map(() => '---:').join('|')}|`);
  for (const result of input.results) {
    const { scenario } = result;
    const rows = new Map(scenarioRows(result).map((row) => [row.system, row]));
    const cells = (ratio: (row: ReportRow) => number | undefined) =>
      systems.map((system) => {
        const row = rows.get(system);
        return row === undefined || row.unavailable !== undefined ? 'n/a' : formatRatio(ratio(row));
      });
    out.push(`| ${scenario.name} | ${scenario.primary.label} ${arrow(scenario.primary)} | ${ratioLabel(scenario)} | ${cells((row) => row.vsReference).join(' | ')} |`);
    scenario.secondary.forEach((metric, i) => {
      if (!metric.compare) return;
      out.push(`| ${scenario.name} | ${metric.label} ${arrow(metric)} | ${ratioLabel(scenario)} | ${cells((row) => row.secondaryVsReference[i]).join(' | ')} |`);
    });
  }
  out.push('');

  for (const result of input.results) {
    out.push(`## ${result.scenario.name}`, '', result.scenario.title, '', scenarioTable(result), '');
    const problems = scenarioRows(result).flatMap((row) => [
      ...(row.unavailable !== undefined ? [] : row.problems.map((problem) => `${row.system}: ${problem}`)),
    ]);
    for (const note of [...result.notes, ...problems]) out.push(`- ${note}`);
    if (result.notes.length + problems.length > 0) out.push('');
  }

  if (input.notes.length > 0) {
    out.push('## Notes', '', ...input.notes.map((note) => `- ${note}`), '');
  }
  return out.join('\n');
}

const SYSTEM_COLOURS: Record<SystemName, string> = {
  direct: '#9e9e9e',
  switchyard: '#1f77b4',
  haproxy: '#d62728',
  nginx: '#2ca02c',
};

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/**
 * A horizontal bar chart of each system's ratio to the scenario's reference system (HAProxy,
 * or nginx for UDP), one group per scenario, with a dashed line at 1.0 (the reference itself).
 * Hand-written SVG, no dependency.
 */
export function renderRatioSvg(input: ReportInput): string {
  const width = 760;
  const labelWidth = 100;
  const chartLeft = labelWidth + 10;
  const chartRight = width - 80;
  const barHeight = 16;
  const barGap = 4;
  const groupGap = 18;
  const top = 74;

  interface Bar {
    system: SystemName;
    ratio?: number;
    note?: string;
  }
  const groups = input.results.map((result) => ({
    title: `${result.scenario.name}: ${result.scenario.primary.label} ${arrow(result.scenario.primary)}, ${ratioLabel(result.scenario)}`,
    bars: scenarioRows(result)
      .filter((row) => row.system !== referenceOf(result.scenario))
      .map(
        (row): Bar =>
          row.unavailable !== undefined ? { system: row.system, note: row.notApplicable ? 'n/a' : 'not available' } : { system: row.system, ratio: row.vsReference },
      ),
  }));
  // The axis stops at 3×: direct is often several times HAProxy (bulk on loopback) and would
  // squash every other bar. Longer bars are cut at the edge and keep their true value as label.
  const axisMax = Math.min(3, Math.max(1.25, ...groups.flatMap((group) => group.bars.map((bar) => bar.ratio ?? 0)))) * 1.08;
  const x = (ratio: number) => chartLeft + (Math.min(ratio, axisMax) / axisMax) * (chartRight - chartLeft);

  let y = top;
  const body: string[] = [];
  for (const group of groups) {
    body.push(`<text x="10" y="${y + 12}" font-weight="bold">${escapeXml(group.title)}</text>`);
    y += 20;
    for (const bar of group.bars) {
      body.push(`<text x="${labelWidth}" y="${y + 12}" text-anchor="end">${bar.system}</text>`);
      if (bar.ratio === undefined) {
        body.push(`<text x="${chartLeft + 4}" y="${y + 12}" fill="#777">${escapeXml(bar.note ?? 'no ratio')}</text>`);
      } else {
        const barWidth = Math.max(1, x(bar.ratio) - chartLeft);
        body.push(`<rect x="${chartLeft}" y="${y}" width="${barWidth.toFixed(1)}" height="${barHeight}" fill="${SYSTEM_COLOURS[bar.system]}"/>`);
        const cut = bar.ratio > axisMax ? ' ▸' : '';
        body.push(`<text x="${(chartLeft + barWidth + 4).toFixed(1)}" y="${y + 12}">${bar.ratio.toFixed(2)}×${cut}</text>`);
      }
      y += barHeight + barGap;
    }
    y += groupGap;
  }
  const height = y + 10;
  const one = x(1).toFixed(1);
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    `<text x="10" y="20" font-size="15" font-weight="bold">Ratio to the reference system (dashed line = 1.0) — ${escapeXml(input.date)}</text>`,
    `<text x="10" y="38" fill="#555">${escapeXml(input.mode.split(';')[0])}; reference: HAProxy for TCP, nginx for UDP</text>`,
    '<text x="10" y="56" fill="#555">Bar = median over rounds of value ÷ reference value. ↑ higher is better, ↓ lower is better; ▸ bar cut at the axis end.</text>',
    ...body,
    `<line x1="${one}" y1="${top - 4}" x2="${one}" y2="${height - 10}" stroke="#555" stroke-dasharray="4 3"/>`,
    '</svg>',
    '',
  ].join('\n');
}
