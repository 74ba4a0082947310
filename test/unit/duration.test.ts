import t from 'tap';
import { formatDuration, parseDuration } from '../../src/core/duration.ts';

t.test('parseDuration accepts a number with a unit and returns milliseconds', async (t) => {
  const cases: Array<[string, number]> = [
    ['500ms', 500],
    ['0ms', 0],
    ['0s', 0],
    ['0', 0],
    ['1ms', 1],
    ['3s', 3_000],
    ['1.5s', 1_500],
    ['0.25s', 250],
    ['10m', 600_000],
    ['1h', 3_600_000],
    ['1.5h', 5_400_000],
    ['1d', 86_400_000],
    ['90s', 90_000],
    ['007s', 7_000],
    [' 2s ', 2_000],
    ['1.0004s', 1_000], // rounded to whole milliseconds
    ['1.0006s', 1_001],
  ];
  for (const [text, ms] of cases) t.equal(parseDuration(text), ms, JSON.stringify(text));
});

t.test('parseDuration returns undefined for anything else', async (t) => {
  const cases = [
    '',
    ' ',
    '3', // a bare number other than 0 has no unit: 3 what?
    '-1s',
    '+1s',
    '1 s',
    '1S',
    '1MS',
    '1sec',
    '1y',
    '1w',
    '.5s',
    '1.s',
    '1e3ms',
    '1h30m',
    'Infinitys',
    'NaNms',
    '0x10s',
    's',
    'soon',
  ];
  for (const text of cases) t.equal(parseDuration(text), undefined, JSON.stringify(text));
});

t.test('formatDuration gives the shortest exact spelling', async (t) => {
  const cases: Array<[number, string]> = [
    [0, '0ms'],
    [1, '1ms'],
    [500, '500ms'],
    [1_000, '1s'],
    [1_500, '1500ms'],
    [3_000, '3s'],
    [90_000, '90s'],
    [60_000, '1m'],
    [600_000, '10m'],
    [5_400_000, '90m'],
    [3_600_000, '1h'],
    [86_400_000, '1d'],
    [172_800_000, '2d'],
    [90_000_000, '25h'],
  ];
  for (const [ms, text] of cases) t.equal(formatDuration(ms), text, String(ms));
});

t.test('formatDuration and parseDuration round-trip', async (t) => {
  const values = [0, 1, 999, 1_000, 1_001, 59_999, 60_000, 3_599_000, 3_600_000, 86_399_999, 86_400_000, 10 * 86_400_000];
  for (const ms of values) t.equal(parseDuration(formatDuration(ms)), ms, `${ms} → ${formatDuration(ms)}`);
});
