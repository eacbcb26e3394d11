import { consumerQueueName, type ConsumerQueueLimits } from '@warren/protocol';
import type { Broker } from './broker/broker.js';

/** Audited channels (docs/audit.md): their queues dead-letter what they drop to the audit exchange. */
export interface QueueAudit {
  /** The dead-letter exchange for `channel`'s queues, or `undefined` for an unaudited channel. */
  deadLetterExchangeFor(channel: string): string | undefined;
  /** Makes sure the exchange exists (RabbitMQ drops dead letters to a missing one). */
  prepare(): Promise<void>;
}

interface Entry {
  /** Consumers on the queue now; while any, the queue cannot expire. */
  active: number;
  /** With no consumer, the declaration is trusted until then (ms epoch); 0 after the broker was lost. */
  trustedUntil: number;
  /** With no consumer, the queue is taken to exist until then (its `x-expires`): for the queue budget. */
  seenUntil: number;
}

/**
 * Declares and binds each consumer queue once, then reuses it. A queue's
 * declaration is trusted while it has a consumer, and afterwards for its
 * `x-expires` window less a safety margin: only a queue that may have
 * expired is declared again. This is what keeps RabbitMQ's declare/bind
 * rate at one per consumer and channel, however often the consumer polls.
 */
export class ConsumerQueues {
  private readonly entries = new Map<string, Entry>();
  private readonly declaring = new Map<string, Promise<void>>();
  private readonly margin: number;
  private readonly sweepTimer: NodeJS.Timeout;

  constructor(
    private readonly broker: Broker,
    private readonly limits: ConsumerQueueLimits,
    private readonly now: () => number = Date.now,
    private readonly audit?: QueueAudit,
  ) {
    this.margin = Math.min(Math.max(limits.expiresMs * 0.2, 100), 30_000);
    this.sweepTimer = setInterval(() => this.sweep(), Math.min(limits.expiresMs, 60_000));
    this.sweepTimer.unref();
    broker.on('lost', () => this.distrust());
  }

  /** Makes sure the queue of (`consumerId`, `channel`) exists and is bound; returns its name. */
  async ensure(consumerId: string, channel: string): Promise<string> {
    const name = consumerQueueName(consumerId, channel);
    const entry = this.entries.get(name);
    if (entry !== undefined && (entry.active > 0 || this.now() < entry.trustedUntil)) return name;
    let pending = this.declaring.get(name);
    if (pending === undefined) {
      pending = this.declare(name, channel).then(() => {
        const current = this.entries.get(name);
        const seenUntil = this.now() + this.limits.expiresMs;
        const trustedUntil = seenUntil - this.margin;
        if (current === undefined) this.entries.set(name, { active: 0, trustedUntil, seenUntil });
        else {
          current.trustedUntil = trustedUntil;
          current.seenUntil = seenUntil;
        }
      });
      this.declaring.set(name, pending);
      const forget = (): void => {
        if (this.declaring.get(name) === pending) this.declaring.delete(name);
      };
      pending.then(forget, forget);
    }
    await pending;
    return name;
  }

  private async declare(name: string, channel: string): Promise<void> {
    const exchange = this.audit?.deadLetterExchangeFor(channel);
    if (exchange === undefined) return this.broker.declareConsumerQueue(name, channel, this.limits);
    await this.audit!.prepare();
    // A queue that exists without the dead-letter exchange (declared before the
    // route was audited) cannot take it (PRECONDITION_FAILED): it is used as it is.
    return this.broker.declareConsumerQueue(name, channel, { ...this.limits, deadLetterExchange: exchange });
  }

  /** Whether the queue of (`consumerId`, `channel`) is known to exist (no declaration needed). */
  known(consumerId: string, channel: string): boolean {
    const entry = this.entries.get(consumerQueueName(consumerId, channel));
    return entry !== undefined && (entry.active > 0 || this.now() < entry.trustedUntil);
  }

  /**
   * Whether this gateway made the queue of (`consumerId`, `channel`) within
   * its retention window, trusted or not: a client coming back to its queue
   * (after a broker outage too) costs no queue budget.
   */
  seen(consumerId: string, channel: string): boolean {
    const entry = this.entries.get(consumerQueueName(consumerId, channel));
    return entry !== undefined && (entry.active > 0 || this.now() < entry.seenUntil);
  }

  /** A consumer started on `name`. */
  acquire(name: string): void {
    const entry = this.entries.get(name);
    if (entry !== undefined) entry.active++;
  }

  /** A consumer on `name` stopped: the expiry clock starts again. */
  release(name: string): void {
    const entry = this.entries.get(name);
    if (entry === undefined) return;
    entry.active = Math.max(0, entry.active - 1);
    if (entry.active > 0) return;
    entry.seenUntil = this.now() + this.limits.expiresMs;
    // After a broker loss the queue is declared again before it is trusted.
    if (entry.trustedUntil > 0) entry.trustedUntil = entry.seenUntil - this.margin;
  }

  /** Forget `name`: the next `ensure()` declares it again. */
  invalidate(name: string): void {
    this.entries.delete(name);
  }

  clear(): void {
    this.entries.clear();
  }

  /**
   * The broker connection was lost (RabbitMQ may have restarted): every
   * queue is declared again on its next use, its consumers are gone, but the
   * queues stay {@link seen} for their retention window.
   */
  distrust(): void {
    for (const entry of this.entries.values()) {
      entry.active = 0;
      entry.trustedUntil = 0;
    }
  }

  get size(): number {
    return this.entries.size;
  }

  close(): void {
    clearInterval(this.sweepTimer);
    this.entries.clear();
  }

  private sweep(): void {
    const now = this.now();
    for (const [name, entry] of this.entries) {
      if (entry.active === 0 && now >= entry.seenUntil) this.entries.delete(name);
    }
  }
}
