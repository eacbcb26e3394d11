/**
 * Matches the messages RabbitMQ hands back (`basic.return`) to the publishes
 * they came from, so that a confirmed publish can say whether it was routed.
 *
 * A publish sent with `mandatory` that no queue or stream is bound to is
 * returned, and RabbitMQ sends the return before the confirm of that same
 * publish, on the same channel ("If the message is also published as
 * mandatory, the basic.return is sent to the client before basic.ack",
 * rabbitmq.com/docs/confirms). A return carries no delivery tag, only the
 * routing key and the message's properties, so it is matched by routing key
 * and message id: the confirm callback of a publish takes the return noted
 * for its key and id, if there is one. The confirm of an unroutable publish
 * immediately follows its return (no queue is waited for), so an earlier
 * publish of the same id to the same key that was routed is confirmed before
 * the return arrives, or is still waiting for its queue and confirmed after
 * the unroutable one: either way each confirm takes its own return.
 */
export class Returns {
  private readonly pending = new Map<string, number>();

  /** Notes a `basic.return` of `messageId` to `routingKey`. */
  add(routingKey: string, messageId: unknown): void {
    const key = this.key(routingKey, messageId);
    this.pending.set(key, (this.pending.get(key) ?? 0) + 1);
  }

  /** In a publish's confirm: `true` when it was returned (routed nowhere), and forgets the return. */
  take(routingKey: string, messageId: string): boolean {
    if (this.pending.size === 0) return false;
    const key = this.key(routingKey, messageId);
    const n = this.pending.get(key);
    if (n === undefined) return false;
    if (n === 1) this.pending.delete(key);
    else this.pending.set(key, n - 1);
    return true;
  }

  /** Forgets every return (the channel closed: its publishes fail or are retried elsewhere). */
  clear(): void {
    this.pending.clear();
  }

  /** Returns noted and not yet taken (for tests). */
  get size(): number {
    return this.pending.size;
  }

  private key(routingKey: string, messageId: unknown): string {
    return `${routingKey}\n${typeof messageId === 'string' ? messageId : ''}`;
  }
}
