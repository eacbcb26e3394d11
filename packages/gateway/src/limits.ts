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
