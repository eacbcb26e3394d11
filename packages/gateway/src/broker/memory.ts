import { EventEmitter } from 'node:events';
import type { ConsumerQueueLimits, Death, LogLimits, WarrenMessage } from '@warren/protocol';
import {
  brokerUnavailable,
  emptyStats,
  QueueNotFoundError,
  type Broker,
  type BrokerEvents,
  type AuditLayout,
  type BrokerStats,
  type ConsumeOptions,
  type Delivery,
  type ReadLogOptions,
  type Subscription,
} from './broker.js';
import { MemoryLog } from './memory-log.js';

interface Stored {
  seq: number;
  message: WarrenMessage;
  /** The channel it was published to. */
  channel?: string;
  redelivered: boolean;
  death?: Death;
}

class MemoryConsumer {
  unacked = 0;
  cancelled = false;
  constructor(
    readonly queue: MemoryQueue,
    readonly options: ConsumeOptions,
  ) {}
}

class MemoryQueue {
  /** Ready messages, ordered by `seq` (requeued ones go back to their place). */
  readonly ready: Stored[] = [];
  /** The first consumer is the active one (single active consumer). */
  readonly consumers: MemoryConsumer[] = [];
  readonly channels = new Set<string>();
  deleted = false;
  private expiryTimer: NodeJS.Timeout | undefined;
  private pumpScheduled = false;

  constructor(
    readonly name: string,
    public limits: ConsumerQueueLimits,
    private readonly broker: MemoryBroker,
  ) {}

  /** Restarts the `x-expires` clock: it runs only while the queue has no consumer. */
  touch(): void {
    clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
    if (this.consumers.length === 0 && !this.deleted && Number.isFinite(this.limits.expiresMs)) {
      this.expiryTimer = setTimeout(() => this.broker.expireQueue(this), this.limits.expiresMs);
      this.expiryTimer.unref();
    }
  }

  enqueue(stored: Stored, channel: string): void {
    this.ready.push(stored);
    // x-max-length counts ready messages; drop-head removes the oldest
    // (dead-lettered with reason maxlen when the queue has a dead-letter exchange).
    while (this.ready.length > this.limits.maxLength) {
      const dropped = this.ready.shift()!;
      const exchange = this.limits.deadLetterExchange;
      if (exchange !== undefined) {
        this.broker.deadLetter(exchange, dropped, {
          queue: this.name,
          reason: 'maxlen',
          time: Date.now(),
          channel: dropped.death?.channel ?? channel,
        });
      }
    }
    this.schedulePump();
  }

  requeue(stored: Stored): void {
    if (this.deleted) return;
    stored.redelivered = true;
    let i = this.ready.length;
    while (i > 0 && this.ready[i - 1]!.seq > stored.seq) i--;
    this.ready.splice(i, 0, stored);
    this.schedulePump();
  }

  schedulePump(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    queueMicrotask(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  private pump(): void {
    const consumer = this.consumers[0];
    if (consumer === undefined) return;
    while (!consumer.cancelled && consumer.unacked < consumer.options.prefetch && this.ready.length > 0) {
      const stored = this.ready.shift()!;
      consumer.unacked++;
      this.broker.counters.delivered++;
      consumer.options.onMessage(this.broker.delivery(consumer, this, stored));
    }
  }

  dispose(): void {
    this.deleted = true;
    clearTimeout(this.expiryTimer);
    this.ready.length = 0;
  }
}

/**
 * The embedded broker: RabbitMQ's semantics for Warren's use, in process.
 * Nothing survives a restart of the process, and it cannot be shared between
 * processes (publish to it through the gateway's HTTP endpoint).
 */
export class MemoryBroker extends EventEmitter<BrokerEvents> implements Broker {
  readonly kind = 'memory' as const;
  /** @internal */
  readonly counters: BrokerStats = emptyStats('memory');
  private readonly queues = new Map<string, MemoryQueue>();
  private readonly bindings = new Map<string, Set<MemoryQueue>>();
  /** Queues bound to every channel (RabbitMQ: `#` on the topic exchange), the gateways' wildcard queues. */
  private readonly catchAll = new Set<MemoryQueue>();
  private readonly logs = new Map<string, MemoryLog>();
  private readonly logBindings = new Map<string, Set<MemoryLog>>();
  /** Dead-letter (fan-out) exchanges and the queues bound to them. */
  private readonly deadLetterExchanges = new Map<string, Set<MemoryQueue>>();
  private seq = 0;
  private closed = false;
  private started = false;

  get ready(): boolean {
    return this.started && !this.closed;
  }

  async start(): Promise<void> {
    this.started = true;
    this.counters.connectionsOpened++;
    this.emit('ready');
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const queue of this.queues.values()) queue.dispose();
    this.queues.clear();
    this.bindings.clear();
    this.catchAll.clear();
    this.logs.clear();
    this.logBindings.clear();
    this.deadLetterExchanges.clear();
  }

  async publish(channel: string, message: WarrenMessage): Promise<boolean> {
    this.assertReady();
    this.counters.published++;
    const logs = this.logBindings.get(channel);
    for (const log of logs ?? []) log.append(channel, message);
    const queues = this.bindings.get(channel);
    if (queues === undefined && this.catchAll.size === 0) return logs !== undefined;
    const seq = ++this.seq;
    for (const queue of queues ?? []) queue.enqueue({ seq, message, channel, redelivered: false }, channel);
    for (const queue of this.catchAll)
      if (queues?.has(queue) !== true) queue.enqueue({ seq, message, channel, redelivered: false }, channel);
    return true;
  }

  /**
   * The queues and logs a publish to `channel` reaches now: what `publish()`
   * routes by (one queue or log counted once). Exact when read in the same
   * turn as the publish, which routes synchronously.
   */
  routeCount(channel: string): number {
    const queues = this.bindings.get(channel);
    let wildcard = 0;
    for (const queue of this.catchAll) if (queues?.has(queue) !== true) wildcard++;
    return (queues?.size ?? 0) + wildcard + (this.logBindings.get(channel)?.size ?? 0);
  }

  /** @internal A queue dropped `stored`: RabbitMQ's dead-lettering, to every queue bound to `exchange` (a missing exchange drops it). */
  deadLetter(exchange: string, stored: Stored, death: Death): void {
    const seq = ++this.seq;
    for (const queue of this.deadLetterExchanges.get(exchange) ?? []) {
      // Only the first death is kept (x-first-death-*).
      queue.enqueue({ seq, message: stored.message, redelivered: false, death: stored.death ?? death }, death.channel);
    }
  }

  async declareAudit(layout: AuditLayout): Promise<void> {
    this.assertReady();
    this.counters.queueDeclares++;
    let inbox = this.queues.get(layout.inbox);
    if (inbox === undefined) {
      inbox = new MemoryQueue(layout.inbox, { expiresMs: Infinity, maxLength: layout.inboxMaxLength }, this);
      this.queues.set(layout.inbox, inbox);
    }
    let bound = this.deadLetterExchanges.get(layout.exchange);
    if (bound === undefined) this.deadLetterExchanges.set(layout.exchange, (bound = new Set()));
    bound.add(inbox);
    await this.declareLog(layout.log, layout.limits);
  }

  async declareConsumerQueue(name: string, channel: string, limits: ConsumerQueueLimits): Promise<void> {
    const queue = this.declareQueue(name, limits);
    if (!queue.channels.has(channel)) {
      queue.channels.add(channel);
      let bound = this.bindings.get(channel);
      if (bound === undefined) this.bindings.set(channel, (bound = new Set()));
      bound.add(queue);
    }
  }

  /** In process, a fan-out queue is a consumer queue: nothing survives a restart anyway. */
  declareFanOutQueue(name: string, channel: string, limits: ConsumerQueueLimits): Promise<void> {
    return this.declareConsumerQueue(name, channel, limits);
  }

  async declareWildcardQueue(name: string, limits: ConsumerQueueLimits): Promise<void> {
    this.catchAll.add(this.declareQueue(name, limits));
  }

  /** Declares `name` (made when missing, its expiry restarted) and counts the bind that follows. */
  private declareQueue(name: string, limits: ConsumerQueueLimits): MemoryQueue {
    this.assertReady();
    this.counters.queueDeclares++;
    let queue = this.queues.get(name);
    if (queue === undefined) {
      queue = new MemoryQueue(name, limits, this);
      this.queues.set(name, queue);
    }
    queue.touch();
    this.counters.queueBinds++;
    return queue;
  }

  async deleteQueue(name: string): Promise<void> {
    this.assertReady();
    const queue = this.queues.get(name);
    if (queue === undefined) return;
    const consumers = queue.consumers.splice(0);
    this.removeQueue(queue);
    for (const consumer of consumers) {
      if (consumer.cancelled) continue;
      consumer.cancelled = true;
      consumer.options.onEnd({ reason: 'queue-deleted' });
    }
  }

  async consume(name: string, options: ConsumeOptions): Promise<Subscription> {
    this.assertReady();
    const queue = this.queues.get(name);
    if (queue === undefined) throw new QueueNotFoundError(name);
    const consumer = new MemoryConsumer(queue, options);
    queue.consumers.push(consumer);
    queue.touch();
    this.counters.consumersStarted++;
    queue.schedulePump();
    return {
      cancel: async () => {
        if (consumer.cancelled) return;
        consumer.cancelled = true;
        this.counters.consumersCancelled++;
        const i = queue.consumers.indexOf(consumer);
        if (i >= 0) queue.consumers.splice(i, 1);
        queue.touch();
        queue.schedulePump();
      },
    };
  }

  async get(name: string): Promise<Delivery | undefined> {
    this.assertReady();
    const queue = this.queues.get(name);
    if (queue === undefined) throw new QueueNotFoundError(name);
    this.counters.gets++;
    queue.touch();
    const stored = queue.ready.shift();
    if (stored === undefined) {
      this.counters.getsEmpty++;
      return undefined;
    }
    this.counters.delivered++;
    return this.delivery(undefined, queue, stored);
  }

  async declareLog(name: string, limits: LogLimits): Promise<void> {
    this.assertReady();
    this.counters.queueDeclares++;
    if (!this.logs.has(name)) this.logs.set(name, new MemoryLog(name, limits));
  }

  async bindLog(name: string, channel: string): Promise<void> {
    this.assertReady();
    const log = this.logs.get(name);
    if (log === undefined) throw new QueueNotFoundError(name);
    this.counters.queueBinds++;
    if (log.channels.has(channel)) return;
    log.channels.add(channel);
    let bound = this.logBindings.get(channel);
    if (bound === undefined) this.logBindings.set(channel, (bound = new Set()));
    bound.add(log);
  }

  async readLog(name: string, options: ReadLogOptions): Promise<Subscription> {
    this.assertReady();
    const log = this.logs.get(name);
    if (log === undefined) throw new QueueNotFoundError(name);
    this.counters.consumersStarted++;
    return log.read(options);
  }

  async appendLog(name: string, message: WarrenMessage, death?: Death): Promise<void> {
    this.assertReady();
    const log = this.logs.get(name);
    if (log === undefined) throw new QueueNotFoundError(name);
    this.counters.published++;
    log.append(death?.channel ?? name, message, death);
  }

  async deleteLog(name: string): Promise<void> {
    this.assertReady();
    const log = this.logs.get(name);
    if (log === undefined) return;
    this.logs.delete(name);
    for (const channel of log.channels) {
      const bound = this.logBindings.get(channel);
      bound?.delete(log);
      if (bound?.size === 0) this.logBindings.delete(channel);
    }
    log.dispose();
  }

  stats(): BrokerStats {
    let active = 0;
    for (const queue of this.queues.values()) active += queue.consumers.length;
    return { ...this.counters, ready: this.ready, activeConsumers: active };
  }

  /** @internal */
  delivery(consumer: MemoryConsumer | undefined, queue: MemoryQueue, stored: Stored): Delivery {
    let settled = false;
    const settle = (): boolean => {
      if (settled) return false;
      settled = true;
      if (consumer !== undefined) consumer.unacked--;
      return true;
    };
    return {
      message: stored.message,
      channel: stored.channel,
      redelivered: stored.redelivered,
      death: stored.death,
      ack: () => {
        if (!settle()) return;
        this.counters.acked++;
        queue.schedulePump();
      },
      requeue: () => {
        if (!settle()) return;
        this.counters.requeued++;
        queue.requeue(stored);
      },
    };
  }

  /** @internal x-expires ran out. */
  expireQueue(queue: MemoryQueue): void {
    if (queue.consumers.length > 0 || this.queues.get(queue.name) !== queue) return;
    this.removeQueue(queue);
  }

  private removeQueue(queue: MemoryQueue): void {
    this.queues.delete(queue.name);
    this.catchAll.delete(queue);
    for (const channel of queue.channels) {
      const bound = this.bindings.get(channel);
      bound?.delete(queue);
      if (bound?.size === 0) this.bindings.delete(channel);
    }
    queue.dispose();
  }

  /** Number of queues that exist now (for tests and stats). */
  queueCount(): number {
    return this.queues.size;
  }

  private assertReady(): void {
    if (!this.ready) throw brokerUnavailable('embedded broker is closed');
  }
}
