import { parseChannelPattern, patternMatches, wildcardQueueName, type ChannelPattern, type WarrenMessage } from '@warren/protocol';
import type { Broker, Subscription } from '../broker/broker.js';
import type { Logger } from '../logger.js';
import type { Sink } from './sink.js';

export interface WildcardFanOutOptions {
  /** A sink with more than this many bytes not yet handed to its socket is closed as a slow consumer. */
  maxPendingBytes: number;
  /** How long the wildcard queue and its consumer outlive the last pattern subscriber (`--wildcard-linger`). */
  lingerMs: number;
  /** Prefetch of the consumer. */
  prefetch: number;
  /** The queue's `x-expires` (cleanup after a crash) and `x-max-length`. */
  queueExpiresMs: number;
  queueMaxLength: number;
}

export interface WildcardStats {
  /** Patterns with a subscriber in this process. */
  patterns: number;
  /** Pattern subscriptions open now. */
  subscribers: number;
  /** Pattern subscriptions opened, over the process's life. */
  subscribed: number;
  /** Messages written to pattern subscribers. */
  delivered: number;
  /** Pattern subscribers closed as too slow. */
  slowClosed: number;
}

class PatternEntry {
  readonly sinks = new Set<Sink>();
  constructor(readonly pattern: ChannelPattern) {}
}

/** One sink on one pattern. `stop()` is idempotent. */
export class WildcardMember {
  private removed = false;

  constructor(
    private readonly owner: WildcardFanOut,
    private readonly entry: PatternEntry,
    private readonly sink: Sink,
  ) {}

  stop(): Promise<void> {
    if (!this.removed) {
      this.removed = true;
      this.owner.leave(this.entry, this.sink);
    }
    return Promise.resolve();
  }
}

/**
 * Wildcard subscriptions (`/stocks/*`, `/stocks/**`; docs/wildcards.md):
 * one queue per gateway process (`warren:wildcard:<gateway id>`), bound
 * with `#` on the topic exchange, so that it receives every channel; each
 * message is matched against the process's patterns and written to their
 * subscribers from memory. The queue exists only while the process has a
 * pattern subscriber, and `lingerMs` after the last one: while it exists,
 * every publish is routed (the `routed` feedback of a publish says `true`).
 *
 * Pattern subscribers are live only, as anonymous streams are: no
 * per-consumer queue, no resume; a subscriber that cannot keep up is closed.
 */
export class WildcardFanOut {
  readonly stats: WildcardStats = { patterns: 0, subscribers: 0, subscribed: 0, delivered: 0, slowClosed: 0 };
  private readonly patterns = new Map<string, PatternEntry>();
  private readonly queue: string;
  private subscription: Subscription | undefined;
  private starting: Promise<void> | undefined;
  private lingerTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly broker: Broker,
    gatewayId: string,
    private readonly log: Logger,
    private readonly options: WildcardFanOutOptions,
  ) {
    this.queue = wildcardQueueName(gatewayId);
    // Not durable: what was published while the broker was away is gone, so the streams end (as anonymous ones do).
    broker.on('lost', () => {
      this.subscription = undefined;
      this.dropAll();
    });
  }

  /** Whether `pattern` has a subscriber in this process now. */
  has(pattern: string): boolean {
    return this.patterns.has(pattern);
  }

  /** Patterns with a subscriber in this process now. */
  get size(): number {
    return this.patterns.size;
  }

  /** Makes sure the queue is bound and consumed, so that a subscriber added next gets what is published from now on. */
  async prepare(): Promise<void> {
    if (this.subscribers() === 0) this.linger();
    await this.start();
  }

  /**
   * Adds `sink` to `pattern`'s subscribers, starting the queue's consumer
   * if needed. Resolves once messages flow.
   * @throws WarrenError `INVALID_PATTERN`, or what the broker throws
   */
  async subscribe(pattern: string, sink: Sink): Promise<WildcardMember> {
    let entry = this.patterns.get(pattern);
    if (entry === undefined) {
      entry = new PatternEntry(parseChannelPattern(pattern));
      this.patterns.set(pattern, entry);
      this.stats.patterns++;
    }
    clearTimeout(this.lingerTimer);
    this.lingerTimer = undefined;
    entry.sinks.add(sink);
    this.stats.subscribers++;
    this.stats.subscribed++;
    const member = new WildcardMember(this, entry, sink);
    try {
      await this.start();
    } catch (err) {
      await member.stop();
      throw err;
    }
    return member;
  }

  /** @internal Takes `sink` off `entry` (dispatch may have taken it off already). */
  leave(entry: PatternEntry, sink: Sink): void {
    if (entry.sinks.delete(sink)) this.stats.subscribers--;
    this.forgetIfEmpty(entry);
    if (this.stats.subscribers === 0) this.linger();
  }

  /** A pattern without subscribers is matched no more (each message is matched against every pattern held). */
  private forgetIfEmpty(entry: PatternEntry): void {
    if (entry.sinks.size > 0 || this.patterns.get(entry.pattern.pattern) !== entry) return;
    this.patterns.delete(entry.pattern.pattern);
    this.stats.patterns--;
  }

  /** Stops the consumer and deletes the queue. */
  async close(): Promise<void> {
    clearTimeout(this.lingerTimer);
    this.patterns.clear();
    this.stats.patterns = 0;
    await this.stopQueue();
  }

  private subscribers(): number {
    return this.stats.subscribers;
  }

  private start(): Promise<void> {
    if (this.subscription !== undefined) return Promise.resolve();
    this.starting ??= (async () => {
      try {
        await this.broker.declareWildcardQueue(this.queue, {
          expiresMs: this.options.queueExpiresMs,
          maxLength: this.options.queueMaxLength,
        });
        this.subscription = await this.broker.consume(this.queue, {
          prefetch: this.options.prefetch,
          onMessage: (delivery) => {
            // Redelivered: written to the streams of an earlier connection, all ended with it.
            if (!delivery.redelivered && delivery.channel !== undefined) this.dispatch(delivery.channel, delivery.message);
            delivery.ack();
          },
          onEnd: (end) => {
            this.subscription = undefined;
            if (end.reason === 'broker-lost') return; // the 'lost' handler ends the streams
            this.log.warn('wildcard consumer ended', { reason: end.reason });
            this.dropAll();
          },
        });
      } finally {
        this.starting = undefined;
      }
    })();
    return this.starting;
  }

  private dispatch(channel: string, message: WarrenMessage): void {
    let dropped = false;
    for (const entry of this.patterns.values()) {
      if (entry.sinks.size === 0 || !patternMatches(entry.pattern, channel)) continue;
      for (const sink of entry.sinks) {
        if (sink.pendingBytes() > this.options.maxPendingBytes) {
          this.stats.slowClosed++;
          entry.sinks.delete(sink);
          this.stats.subscribers--;
          sink.drop('slow-consumer');
          dropped = true;
          continue;
        }
        this.stats.delivered++;
        sink.send(channel, message, undefined, entry.pattern.pattern);
      }
      if (dropped) this.forgetIfEmpty(entry);
    }
    // (Not on every message: the queue goes `lingerMs` after its last subscriber, whatever is published meanwhile.)
    if (dropped && this.stats.subscribers === 0) this.linger();
  }

  /** Ends every pattern stream. */
  private dropAll(): void {
    const entries = [...this.patterns.values()];
    this.patterns.clear();
    this.stats.patterns = 0;
    for (const entry of entries) {
      const sinks = [...entry.sinks];
      entry.sinks.clear();
      this.stats.subscribers -= sinks.length;
      for (const sink of sinks) sink.drop('broker-unavailable');
    }
    this.linger();
  }

  /** Without subscribers for `lingerMs`: stop consuming and delete the queue (publishes are no longer routed to it). */
  private linger(): void {
    clearTimeout(this.lingerTimer);
    this.lingerTimer = setTimeout(() => {
      this.lingerTimer = undefined;
      if (this.stats.subscribers > 0) return;
      this.stopQueue().catch((err: unknown) => this.log.warn('wildcard queue cleanup failed', { error: String(err) }));
    }, this.options.lingerMs);
    this.lingerTimer.unref();
  }

  private async stopQueue(): Promise<void> {
    await this.starting?.catch(() => undefined);
    const subscription = this.subscription;
    this.subscription = undefined;
    await subscription?.cancel();
    // A subscriber that came meanwhile started a new consumer: keep the queue.
    if (this.subscription !== undefined || this.starting !== undefined || !this.broker.ready) return;
    await this.broker.deleteQueue(this.queue);
  }
}
