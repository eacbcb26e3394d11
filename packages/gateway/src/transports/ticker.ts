/**
 * One interval timer for many connections (SSE heartbeats, WebSocket
 * pings) instead of one per connection: ten thousand idle connections cost
 * ten thousand set entries, not ten thousand timers and closures.
 */
export class Ticker<T> {
  private readonly members = new Set<T>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly everyMs: number,
    private readonly tick: (member: T) => void,
  ) {}

  add(member: T): void {
    this.members.add(member);
    if (this.timer !== undefined) return;
    this.timer = setInterval(() => {
      for (const m of this.members) this.tick(m);
    }, this.everyMs);
    this.timer.unref();
  }

  delete(member: T): void {
    this.members.delete(member);
    if (this.members.size > 0 || this.timer === undefined) return;
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
