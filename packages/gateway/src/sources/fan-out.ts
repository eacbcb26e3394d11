import { randomBytes } from 'node:crypto';
import { fanOutQueueName, type WarrenMessage } from '@warren/protocol';
import type { Broker, Subscription } from '../broker/broker.js';
import type { Logger } from '../logger.js';
import type { Sink } from './sink.js';

export interface FanOutOptions {
  /** A sink with more than this many bytes not yet handed to its socket is closed as a slow consumer. */
  maxPendingBytes: number;
  /** How long a channel's queue and consumer outlive its last local subscriber (churn guard). */
  lingerMs: number;
  /** Prefetch of the per-process consumer. */
  prefetch: number;
  /** The fan-out queue's `x-expires` (cleanup after a crash) and `x-max-length`. */
  queueExpiresMs: number;
  queueMaxLength: number;
}

export interface FanOutStats {
  channels: number;
  subscribers: number;
  delivered: number;
  slowClosed: number;
}

class ChannelFanOut {
  readonly sinks = new Set<Sink>();
  subscription: Subscription | undefined;
  starting: Promise<void> | undefined;
  /** The queue was declared and bound (by `prepare`) since the broker connected: `start` only consumes. */
  declared = false;
  lingerTimer: NodeJS.Timeout | undefined;
  constructor(
    readonly channel: string,
    readonly queue: string,
  ) {}
}

/** One sink on one channel's fan-out (an object, not a closure: there is one per idle connection). */
export class FanOutMember {
  private removed = false;

  constructor(
    private readonly fanOut: FanOut,
    private readonly fan: ChannelFanOut,
    private readonly sink: Sink,
  ) {}

  remove(): void {
    if (this.removed) return;
    this.removed = true;
    this.fanOut.leave(this.fan, this.sink);
  }

  stop(): Promise<void> {
    this.remove();
    return Promise.resolve();
  }
}

/**
 * Live streams without a consumer id share one queue per gateway process and
 * channel; each message is written to every local subscriber from memory.
 * Thousands of anonymous listeners on a channel cost RabbitMQ one queue, one
 * binding and one consumer per gateway process. They get live messages only
 * (no resume), and a subscriber that cannot keep up is closed rather than
 * buffered without bound.
 */
export class FanOut {
  readonly gatewayId = randomBytes(6).toString('hex');
  readonly stats: FanOutStats = { channels: 0, subscribers: 0, delivered: 0, slowClosed: 0 };
  private readonly channels = new Map<string, ChannelFanOut>();

  constructor(
    private readonly broker: Broker,
    private readonly log: Logger,
    private readonly options: FanOutOptions,
  ) {
    // A fan-out queue is not durable: what was published while this process
    // was away from the broker (and until its queue is declared again) is
    // gone. A live stream that cannot be complete is ended, so that its
    // client knows it may have missed messages and reconnects (and never
    // waits in silence). No consumer is restarted behind its back.
    broker.on('lost', () => {
      for (const fan of this.channels.values()) {
        fan.subscription = undefined;
        fan.declared = false;
        this.dropAll(fan, 'broker-unavailable');
      }
    });
  }

  /**
   * Makes sure `channel`'s queue is bound, so that a subscriber added next
   * receives everything published from now on (what comes before its
   * consumer starts waits in the queue). Without a subscriber it lingers
   * like an abandoned channel.
   */
  async prepare(channel: string): Promise<void> {
    const fan = this.entry(channel);
    if (fan.sinks.size === 0) this.linger(fan);
    if (fan.subscription !== undefined || fan.starting !== undefined) return this.start(fan);
    await this.declare(fan);
    fan.declared = true;
  }

  private declare(fan: ChannelFanOut): Promise<void> {
    return this.broker.declareFanOutQueue(fan.queue, fan.channel, {
      expiresMs: this.options.queueExpiresMs,
      maxLength: this.options.queueMaxLength,
    });
  }

  /**
   * Adds `sink` to `channel`'s local subscribers, starting the channel's
   * consumer if needed. Resolves once messages flow.
   * @returns the membership, whose `stop()` removes the sink (idempotent)
   */
  async subscribe(channel: string, sink: Sink): Promise<FanOutMember> {
    const fan = this.entry(channel);
    clearTimeout(fan.lingerTimer);
    fan.lingerTimer = undefined;
    fan.sinks.add(sink);
    this.stats.subscribers++;
    const member = new FanOutMember(this, fan, sink);
    try {
      await this.start(fan);
    } catch (err) {
      member.remove();
      throw err;
    }
    return member;
  }

  /** Whether `channel` has a fan-out in this process now. */
  has(channel: string): boolean {
    return this.channels.has(channel);
  }

  /** Channels with a fan-out in this process now. */
  get size(): number {
    return this.channels.size;
  }

  /** Takes `sink` off `fan` (dispatch() may have taken it off already: slow consumer). */
  leave(fan: ChannelFanOut, sink: Sink): void {
    if (fan.sinks.delete(sink)) this.stats.subscribers--;
    if (fan.sinks.size === 0) this.linger(fan);
  }

  private entry(channel: string): ChannelFanOut {
    let fan = this.channels.get(channel);
    if (fan === undefined) {
      fan = new ChannelFanOut(channel, fanOutQueueName(this.gatewayId, channel));
      this.channels.set(channel, fan);
      this.stats.channels++;
    }
    return fan;
  }

  /** Stops every consumer (the queues expire by themselves). */
  async close(): Promise<void> {
    const all = [...this.channels.values()];
    this.channels.clear();
    await Promise.all(
      all.map(async (fan) => {
        clearTimeout(fan.lingerTimer);
        await fan.subscription?.cancel();
      }),
    );
  }

  private start(fan: ChannelFanOut): Promise<void> {
    if (fan.subscription !== undefined) return Promise.resolve();
    fan.starting ??= (async () => {
      try {
        if (!fan.declared) await this.declare(fan);
        fan.subscription = await this.broker.consume(fan.queue, {
          prefetch: this.options.prefetch,
          onMessage: (delivery) => {
            // Redelivered (the connection went before the ack reached the
            // broker): it was written to the streams of that time, all ended
            // with the connection; the streams of now opened after it.
            if (!delivery.redelivered) this.dispatch(fan, delivery.message);
            // Written (or refused) to every local subscriber: done with it.
            delivery.ack();
          },
          onEnd: (end) => {
            fan.subscription = undefined;
            // broker-lost: the 'lost' handler ends the streams. A channel or
            // queue lost under a live connection: start again now; what was
            // in the old queue is gone, so the streams end all the same.
            if (end.reason === 'broker-lost') return;
            this.log.warn('fan-out consumer ended', { channel: fan.channel, reason: end.reason });
            this.dropAll(fan, 'broker-unavailable');
          },
        });
        if (fan.sinks.size === 0 && this.channels.get(fan.channel) !== fan) await fan.subscription.cancel();
      } finally {
        fan.starting = undefined;
      }
    })();
    return fan.starting;
  }

  /** Ends every local stream of `fan`. */
  private dropAll(fan: ChannelFanOut, reason: 'broker-unavailable'): void {
    if (fan.sinks.size === 0) return;
    const sinks = [...fan.sinks];
    fan.sinks.clear();
    this.stats.subscribers -= sinks.length;
    for (const sink of sinks) sink.drop(reason);
    this.linger(fan);
  }

  private dispatch(fan: ChannelFanOut, message: WarrenMessage): void {
    for (const sink of fan.sinks) {
      if (sink.pendingBytes() > this.options.maxPendingBytes) {
        this.stats.slowClosed++;
        fan.sinks.delete(sink);
        this.stats.subscribers--;
        sink.drop('slow-consumer');
        continue;
      }
      this.stats.delivered++;
      sink.send(fan.channel, message);
    }
  }

  private linger(fan: ChannelFanOut): void {
    clearTimeout(fan.lingerTimer);
    fan.lingerTimer = setTimeout(() => {
      if (fan.sinks.size > 0 || this.channels.get(fan.channel) !== fan) return;
      this.channels.delete(fan.channel);
      this.stats.channels--;
      const subscription = fan.subscription;
      fan.subscription = undefined;
      subscription?.cancel().catch((err: unknown) => this.log.warn('fan-out cancel failed', { channel: fan.channel, error: String(err) }));
    }, this.options.lingerMs);
    fan.lingerTimer.unref();
  }
}
