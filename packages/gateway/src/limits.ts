import { WarrenError } from '@warren/protocol';

/**
 * Caps on open subscriptions (streams and waiting long-polls) per client
 * address and per identity, so that one client cannot hold the gateway's
 * sockets or the broker's consumers. Counts only what is open now.
 */
export class ConnectionLimits {
  private readonly byIp = new Map<string, number>();
  private readonly byIdentity = new Map<string, number>();

  constructor(
    private readonly perIp: number,
    private readonly perIdentity: number,
  ) {}

  /**
   * Counts one more subscription for `ip` and `identity`.
   * @returns the function that gives it back (idempotent)
   * @throws WarrenError `TOO_MANY_CONNECTIONS`
   */
  acquire(ip: string, identity: string | undefined): () => void {
    this.take(ip, identity);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.give(ip, identity);
    };
  }

  /**
   * Counts one more subscription; {@link give} gives it back (exactly once).
   * For holders that keep `ip` and `identity` anyway (push connections), so no closure is kept.
   * @throws WarrenError `TOO_MANY_CONNECTIONS`
   */
  take(ip: string, identity: string | undefined): void {
    if ((this.byIp.get(ip) ?? 0) >= this.perIp) {
      throw new WarrenError('TOO_MANY_CONNECTIONS', `at most ${this.perIp} open subscriptions per client address`);
    }
    if (identity !== undefined && (this.byIdentity.get(identity) ?? 0) >= this.perIdentity) {
      throw new WarrenError('TOO_MANY_CONNECTIONS', `at most ${this.perIdentity} open subscriptions per identity`);
    }
    bump(this.byIp, ip, 1);
    if (identity !== undefined) bump(this.byIdentity, identity, 1);
  }

  give(ip: string, identity: string | undefined): void {
    bump(this.byIp, ip, -1);
    if (identity !== undefined) bump(this.byIdentity, identity, -1);
  }
}

function bump(map: Map<string, number>, key: string, by: number): void {
  const next = (map.get(key) ?? 0) + by;
  if (next <= 0) map.delete(key);
  else map.set(key, next);
}

/**
 * How many new queues (consumer queues, or channels new to this process's
 * fan-out) each client address may have the gateway declare: a token bucket
 * of `perMinute` tokens, refilled continuously. Queues cost RabbitMQ memory and
 * declarations are what it handles worst: without a budget one client can
 * declare thousands a minute.
 */
export class QueueBudget {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private readonly sweepTimer: NodeJS.Timeout;

  constructor(
    private readonly perMinute: number,
    private readonly now: () => number = Date.now,
  ) {
    this.sweepTimer = setInterval(() => this.sweep(), 60_000);
    this.sweepTimer.unref();
  }

  /**
   * Spends one token of `address`.
   * @throws WarrenError `QUEUE_BUDGET_EXCEEDED`
   */
  take(address: string): void {
    const now = this.now();
    const bucket = this.buckets.get(address) ?? { tokens: this.perMinute, at: now };
    bucket.tokens = Math.min(this.perMinute, bucket.tokens + ((now - bucket.at) * this.perMinute) / 60_000);
    bucket.at = now;
    if (bucket.tokens < 1) {
      this.buckets.set(address, bucket);
      throw new WarrenError('QUEUE_BUDGET_EXCEEDED', `at most ${this.perMinute} new queues per client address per minute`);
    }
    bucket.tokens -= 1;
    this.buckets.set(address, bucket);
  }

  close(): void {
    clearInterval(this.sweepTimer);
  }

  /** Forgets buckets that are full again. */
  private sweep(): void {
    const now = this.now();
    for (const [address, bucket] of this.buckets) {
      if (bucket.tokens + ((now - bucket.at) * this.perMinute) / 60_000 >= this.perMinute) this.buckets.delete(address);
    }
  }
}
