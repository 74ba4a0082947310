/**
 * The rise/fall state machine for one server, pure and clock-free.
 *
 * Starting state (as HAProxy does): a server starts *up but unconfirmed*, so traffic flows
 * from the first instant after start or reload, and the very first probe result decides:
 * a failure marks it down at once, a pass confirms it. Waiting for `rise` passes first
 * (Envoy's choice) would turn every restart of the balancer into an outage of
 * `rise × interval`. After that first result, it takes `fall` consecutive failures to go
 * down and `rise` consecutive passes to come back up.
 */
export class HealthState {
  healthy = true;
  private confirmed = false;
  /** Consecutive results against the current state (failures while up, passes while down). */
  private streak = 0;

  private readonly rise: number;
  private readonly fall: number;

  /** @param rise consecutive passes to come back up; @param fall consecutive failures to go down (both >= 1) */
  constructor(rise: number, fall: number) {
    this.rise = rise;
    this.fall = fall;
  }

  /**
   * Records one result. Returns 0 when `healthy` did not change; otherwise it flipped, and
   * the return value is how many consecutive results flipped it (for the log line). The
   * caller logs and propagates each flip exactly once.
   */
  record(pass: boolean): number {
    if (!this.confirmed) {
      this.confirmed = true;
      this.streak = 0;
      if (pass) return 0;
      this.healthy = false;
      return 1;
    }
    if (pass === this.healthy) {
      this.streak = 0;
      return 0;
    }
    this.streak++;
    const needed = this.healthy ? this.fall : this.rise;
    if (this.streak < needed) return 0;
    this.healthy = !this.healthy;
    this.streak = 0;
    return needed;
  }

  /**
   * Forces a state decided elsewhere (a passive-check mark-down), so the next probes count
   * from there: a server marked down by traffic needs `rise` passing probes to return.
   */
  force(healthy: boolean): void {
    this.healthy = healthy;
    this.confirmed = true;
    this.streak = 0;
  }
}
