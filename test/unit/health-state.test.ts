import t from 'tap';
import { HealthState } from '../../src/health/state.ts';

/** Feeds results ('+' pass, '-' fail) and returns what record() said for each. */
function feed(state: HealthState, results: string): number[] {
  return [...results].map((result) => state.record(result === '+'));
}

t.test('starts up but unconfirmed: the first pass confirms without a flip', async (t) => {
  const state = new HealthState(2, 3);
  t.equal(state.healthy, true);
  t.same(feed(state, '+'), [0]);
  t.equal(state.healthy, true);
});

t.test('the first result, if a failure, marks it down at once (count 1)', async (t) => {
  const state = new HealthState(2, 3);
  t.same(feed(state, '-'), [1]);
  t.equal(state.healthy, false);
});

t.test('only the very first result decides at once', async (t) => {
  const state = new HealthState(2, 3);
  t.same(feed(state, '+--'), [0, 0, 0], 'two failures after a confirmed pass do not reach fall=3');
  t.equal(state.healthy, true);
  t.same(feed(state, '-'), [3], 'the third consecutive failure flips, reporting 3');
  t.equal(state.healthy, false);
});

t.test('rise: consecutive passes bring a down server back', async (t) => {
  const state = new HealthState(2, 3);
  feed(state, '-');
  t.same(feed(state, '+'), [0]);
  t.equal(state.healthy, false, 'one pass is not enough with rise=2');
  t.same(feed(state, '+'), [2]);
  t.equal(state.healthy, true);
});

t.test('a result agreeing with the current state resets the streak', async (t) => {
  const up = new HealthState(2, 3);
  t.same(feed(up, '+--+--+--'), [0, 0, 0, 0, 0, 0, 0, 0, 0], 'up: failures interrupted by a pass never reach fall');
  t.equal(up.healthy, true);
  t.same(feed(up, '+---'), [0, 0, 0, 3]);

  const down = new HealthState(3, 1);
  feed(down, '-');
  t.same(feed(down, '++-++-++'), [0, 0, 0, 0, 0, 0, 0, 0], 'down: passes interrupted by a failure never reach rise');
  t.equal(down.healthy, false);
  t.same(feed(down, '+'), [3]);
  t.equal(down.healthy, true);
});

t.test('the streak restarts after each flip', async (t) => {
  const state = new HealthState(2, 2);
  t.same(feed(state, '+--'), [0, 0, 2]);
  t.same(feed(state, '+'), [0], 'the failures that flipped it down do not count toward rising');
  t.same(feed(state, '+'), [2]);
  t.same(feed(state, '-'), [0], 'nor do the passes that flipped it up count toward falling');
  t.same(feed(state, '-'), [2]);
});

t.test('rise=1, fall=1 flips on every change', async (t) => {
  const state = new HealthState(1, 1);
  t.same(feed(state, '+-+-'), [0, 1, 1, 1]);
  t.equal(state.healthy, false);
});

t.test('force() sets the state and counts from there', async (t) => {
  const state = new HealthState(2, 3);
  state.force(false);
  t.equal(state.healthy, false);
  t.same(feed(state, '+'), [0], 'a forced-down server needs rise passes, not one');
  t.same(feed(state, '+'), [2]);

  const unconfirmed = new HealthState(2, 3);
  unconfirmed.force(true);
  t.same(feed(unconfirmed, '-'), [0], 'force confirms: the first failure after it no longer decides at once');

  const midStreak = new HealthState(2, 3);
  feed(midStreak, '+--');
  midStreak.force(true);
  t.same(feed(midStreak, '-'), [0], 'force resets a running streak');
});
