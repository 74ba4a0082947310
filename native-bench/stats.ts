/**
 * The arithmetic of the report: medians, spreads and paired ratios. Pure functions, unit-tested
 * in test/unit/bench-report.test.ts.
 *
 * Ratios are *paired by round*: round i of Switchyard is divided by round i of HAProxy, and the
 * median of those quotients is reported. Runs of one round happen back to back, so a slow
 * minute on the machine slows both halves of a pair and cancels out of the quotient.
 */
import type { RunOutcome } from './types.ts';

export interface Summary {
  median: number;
  min: number;
  max: number;
  /** Successful runs the summary is built from. */
  count: number;
}

/**
 * Median of `values` (mean of the two middle values for an even count).
 * Returns undefined for an empty list; never mutates the input.
 */
export function median(values: readonly number[]): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** Median, min and max of `values`; undefined for an empty list. */
export function summarize(values: readonly number[]): Summary | undefined {
  const mid = median(values);
  if (mid === undefined) return undefined;
  return { median: mid, min: Math.min(...values), max: Math.max(...values), count: values.length };
}

/**
 * The value of `key` in each run, by round: undefined where the run failed or lacks the metric.
 * Keeping the round positions is what lets ratios pair round i with round i.
 */
export function metricByRound(runs: readonly RunOutcome[], key: string): (number | undefined)[] {
  return runs.map((run) => (run.ok && Number.isFinite(run.metrics[key]) ? run.metrics[key] : undefined));
}

/** Summary of `key` over the successful runs; undefined when none has it. */
export function summarizeMetric(runs: readonly RunOutcome[], key: string): Summary | undefined {
  return summarize(metricByRound(runs, key).filter((v): v is number => v !== undefined));
}

/**
 * Median over rounds of `subject[i] / reference[i]`, using only rounds where both have a value
 * and the reference is not zero. Undefined when no round pairs up.
 */
export function pairedRatio(subject: readonly (number | undefined)[], reference: readonly (number | undefined)[]): number | undefined {
  const quotients: number[] = [];
  const rounds = Math.min(subject.length, reference.length);
  for (let i = 0; i < rounds; i++) {
    const s = subject[i];
    const r = reference[i];
    if (s !== undefined && r !== undefined && r !== 0) quotients.push(s / r);
  }
  return median(quotients);
}

/**
 * Median over rounds of `subject[i] - reference[i]` (e.g. latency a balancer adds over direct).
 * Undefined when no round pairs up.
 */
export function pairedDifference(subject: readonly (number | undefined)[], reference: readonly (number | undefined)[]): number | undefined {
  const differences: number[] = [];
  const rounds = Math.min(subject.length, reference.length);
  for (let i = 0; i < rounds; i++) {
    const s = subject[i];
    const r = reference[i];
    if (s !== undefined && r !== undefined) differences.push(s - r);
  }
  return median(differences);
}
