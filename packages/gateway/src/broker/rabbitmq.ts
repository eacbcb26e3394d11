import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import amqp, { type Channel, type ChannelModel, type ConfirmChannel, type ConsumeMessage, type GetMessage, type Message } from 'amqplib';
import {
  channelLogArguments,
  confirmError,
  Returns,
  auditInboxArguments,
  consumerQueueArguments,
  deathFromHeaders,
  deathHeaders,
  fanOutQueueArguments,
  EXCHANGE_TYPE,
  WILDCARD_BINDING_KEY,
  WILDCARD_EXCHANGE_TYPE,
  fromWire,
  routingKey,
  toWireProperties,
  WarrenError,
  type ConsumerQueueLimits,
  type Death,
  type LogLimits,
  type WarrenMessage,
} from '@warren/protocol';
import { within } from '../deadline.js';
import type { Logger } from '../logger.js';
import { AckBatch } from './ack-batch.js';
import {
  brokerTimeout,
  brokerUnavailable,
  emptyStats,
  QueueNotFoundError,
  type AuditLayout,
  type Broker,
  type BrokerEvents,
  type BrokerStats,
  type ConsumeOptions,
  type ConsumerEnd,
  type Delivery,
  type LogEntry,
  type LogPosition,
  type ReadLogOptions,
  type Subscription,
} from './broker.js';

export interface RabbitBrokerOptions {
  /**
   * `amqp://user:pass@host:port/vhost`, one or several (the nodes of a
   * cluster): the broker connects to one and, when it loses it or cannot
   * reach it, tries the next.
   */
  urls: readonly string[];
  /** Exchange that channels publish to. */
  exchange: string;
  /**
   * `topic` (wildcard routes): declared so, and an exchange of another type
   * is an {@link ExchangeTypeError}. `direct`: declared so when missing, and
   * one that exists is used whatever its type (a topic exchange routes
   * Warren's keys as a direct one does).
   * @default 'direct'
   */
  exchangeType?: 'direct' | 'topic';
  /** First reconnect delay; doubles up to `reconnectMaxMs`, with ±20% jitter. */
  reconnectMinMs: number;
  reconnectMaxMs: number;
  /** Shown in RabbitMQ's connection list. */
  connectionName: string;
  /**
   * AMQP heartbeat in seconds (0: the server's choice, 60 s on RabbitMQ). A connection
   * that carried nothing for two intervals is taken for dead and replaced.
   */
  heartbeatSeconds: number;
  /**
   * Longest wait for one broker operation (connect, declare, consume, get,
   * cancel, publisher confirm); past it the operation fails with
   * `BROKER_TIMEOUT` and whatever it brings later is given back.
   */
  operationTimeoutMs: number;
  logger: Logger;
}

/** `url` with `heartbeat=<seconds>` unless it names its own. */
export function withHeartbeat(url: string, seconds: number): string {
  const parsed = new URL(url);
  if (parsed.searchParams.has('heartbeat')) return url;
  parsed.searchParams.set('heartbeat', String(seconds));
  return parsed.toString();
}

/** Consumer channels per prefetch value; queues are spread over them by name. */
export const CONSUMER_SHARDS = 4;

/**
 * Channels for long-polls (prefetch 1: `basic.get`, then a consumer when the
 * queue is empty). A `get` is a round trip, and amqplib sends a channel's
 * round trips one at a time: with polls of many consumers at once, the
 * channels are the limit (bench: long-poll cycles/s).
 */
export const POLL_SHARDS = 16;

/** A queue's consumer channel: FNV-1a of its name, modulo the channels for its prefetch. */
function shardOf(queue: string, shards: number): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < queue.length; i++) {
    hash ^= queue.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) % shards;
}

/** A {@link LogPosition} as the value of the consumer argument `x-stream-offset`. */
function streamOffset(from: LogPosition): unknown {
  if (from === 'first' || from === 'next') return from;
  if ('offset' in from) return { '!': 'long', value: from.offset };
  return { '!': 'timestamp', value: Math.floor(from.time / 1000) };
}

type State = 'idle' | 'connecting' | 'ready' | 'down' | 'closed';

/**
 * The exchange exists with a type the gateway cannot use: a direct exchange
 * where wildcard routes need a topic one. RabbitMQ cannot change an
 * exchange's type: migrate it (docs/wildcards.md, "Moving to a topic
 * exchange"), or run without `--wildcard-routes`.
 */
export class ExchangeTypeError extends Error {
  override readonly name = 'ExchangeTypeError';
}

class RabbitConsumer {
  tag: string | undefined;
  cancelled = false;
  ended = false;
  constructor(
    readonly channel: Channel,
    readonly options: ConsumeOptions,
  ) {}

  end(end: ConsumerEnd): void {
    if (this.cancelled || this.ended) return;
    this.ended = true;
    this.options.onEnd(end);
  }
}

/**
 * RabbitMQ through amqplib: one connection per gateway process, long-lived
 * channels (a confirm channel for publishing, one for declarations, and per
 * prefetch value a few for consumers), reconnection with backoff.
 */
export class RabbitBroker extends EventEmitter<BrokerEvents> implements Broker {
  readonly kind = 'rabbitmq' as const;
  private readonly counters: BrokerStats = emptyStats('rabbitmq');
  private state: State = 'idle';
  private connection: ChannelModel | undefined;
  /** The connection's socket is corked until the end of this turn of the event loop. */
  private framesCorked = false;
  private publishChannel: Promise<ConfirmChannel> | undefined;
  private adminChannel: Promise<Channel> | undefined;
  /** Consumer channels by `<prefetch>:<shard>`. */
  private readonly consumeChannels = new Map<string, Promise<Channel>>();
  private readonly closedChannels = new WeakSet<Channel>();
  /** Each consuming channel's acknowledgements (see `AckBatch`). */
  private readonly acks = new WeakMap<Channel, AckBatch>();
  /** Batches with acks asked for in this turn of the event loop. */
  private readonly acksWanted = new Set<AckBatch>();
  private acksScheduled = false;
  /** Declarations and bindings on their way to RabbitMQ, by what they do (see `settle`). */
  private readonly inFlight = new Map<string, Promise<void>>();
  /** Channel openings that succeeded: no bound on waiting for them. */
  private readonly openedChannels = new WeakSet<Promise<Channel>>();
  private readonly consumers = new Set<RabbitConsumer>();
  private publishDrain: Promise<void> | undefined;
  /** Each publish channel's returned messages, not yet matched to their confirm. */
  private readonly returns = new WeakMap<Channel, Returns>();
  private reconnectTimer: NodeJS.Timeout | undefined;
  private attempt = 0;
  /** The URL of the next connection attempt (the one in use while connected). */
  private urlIndex = 0;
  private readonly log: Logger;

  constructor(private readonly options: RabbitBrokerOptions) {
    super();
    this.log = options.logger;
  }

  get ready(): boolean {
    return this.state === 'ready';
  }

  async start(): Promise<void> {
    if (this.state !== 'idle') return;
    await this.connect();
  }

  async close(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'closed';
    clearTimeout(this.reconnectTimer);
    const connection = this.connection;
    this.dropChannels();
    if (connection !== undefined) {
      try {
        await this.bounded(connection.close(), 'connection.close');
      } catch {
        // Already closed, or the broker does not answer: drop the socket.
        (connection as unknown as { connection?: { stream?: Duplex } }).connection?.stream?.destroy();
      }
    }
  }

  /** `mandatory`: RabbitMQ returns the message when nothing is bound to `channel` ({@link Returns}). */
  publish(channel: string, message: WarrenMessage): Promise<boolean> {
    return this.publishTo(this.options.exchange, routingKey(channel), message, true);
  }

  /** Through the default exchange, straight to the stream. */
  async appendLog(log: string, message: WarrenMessage, death?: Death): Promise<void> {
    await this.publishTo('', log, message, false, death === undefined ? undefined : deathHeaders(death));
  }

  declareAudit(layout: AuditLayout): Promise<void> {
    return this.settle(`audit ${layout.exchange}`, 'exchange.declare', async () => {
      await (await this.admin()).assertExchange(layout.exchange, 'fanout', { durable: true });
      await this.declareQueue(layout.inbox, true, auditInboxArguments(layout.inboxMaxLength));
      this.counters.queueBinds++;
      await (await this.admin()).bindQueue(layout.inbox, layout.exchange, '');
      await this.declareQueue(layout.log, true, channelLogArguments(layout.limits));
    });
  }

  /** Resolves with `false` when the broker returned the message (routed nowhere). */
  private async publishTo(
    exchange: string,
    key: string,
    message: WarrenMessage,
    mandatory: boolean,
    headers?: Record<string, unknown>,
  ): Promise<boolean> {
    const ch = await this.channel(
      () => this.publishChannel,
      (p) => {
        this.publishChannel = p;
      },
      () => this.openPublishChannel(),
    );
    while (this.publishDrain !== undefined) await this.publishDrain;
    return new Promise<boolean>((resolve, reject) => {
      let ok: boolean;
      const timer = setTimeout(
        () =>
          reject(
            brokerTimeout(`RabbitMQ did not confirm the message within ${this.options.operationTimeoutMs} ms; it may still be delivered`),
          ),
        this.options.operationTimeoutMs,
      );
      // A batch (or pipelined requests) publishes many messages in one turn: one write for all their frames.
      this.batchFrames();
      const returns = mandatory ? this.returns.get(ch) : undefined;
      const properties = returns === undefined ? toWireProperties(message) : { ...toWireProperties(message), mandatory: true };
      try {
        const wire = headers === undefined ? properties : { ...properties, headers };
        ok = ch.publish(exchange, key, message.body, wire, (err: unknown) => {
          clearTimeout(timer);
          const returned = returns?.take(key, message.id) ?? false;
          if (err == null) resolve(!returned);
          else reject(confirmError(err));
        });
      } catch (err) {
        clearTimeout(timer);
        reject(brokerUnavailable('the broker connection is closed', err));
        return;
      }
      this.counters.published++;
      if (!ok && this.publishDrain === undefined) {
        // amqplib buffers; stop adding to its buffer until it drains (or the
        // channel closes: then the waiting publishes fail fast on the next try).
        this.publishDrain = new Promise<void>((done) => {
          const finish = (): void => {
            ch.off('drain', finish);
            ch.off('close', finish);
            this.publishDrain = undefined;
            done();
          };
          ch.on('drain', finish);
          ch.on('close', finish);
        });
      }
    });
  }

  declareConsumerQueue(queue: string, channel: string, limits: ConsumerQueueLimits): Promise<void> {
    return this.declareAndBind(queue, channel, true, consumerQueueArguments(limits));
  }

  declareFanOutQueue(queue: string, channel: string, limits: ConsumerQueueLimits): Promise<void> {
    return this.declareAndBind(queue, channel, false, fanOutQueueArguments(limits));
  }

  /** Bound with `#`: needs the topic exchange (`exchangeType: 'topic'`). */
  declareWildcardQueue(queue: string, limits: ConsumerQueueLimits): Promise<void> {
    return this.settle(`wildcard ${queue}`, 'queue.declare', async () => {
      await this.declareQueue(queue, false, fanOutQueueArguments(limits));
      this.counters.queueBinds++;
      await (await this.admin()).bindQueue(queue, this.options.exchange, WILDCARD_BINDING_KEY);
    });
  }

  async deleteQueue(queue: string): Promise<void> {
    try {
      await this.bounded((await this.admin()).deleteQueue(queue), 'queue.delete');
    } catch (err) {
      throw this.translate(err);
    }
  }

  private declareAndBind(queue: string, channel: string, durable: boolean, args: Record<string, unknown>): Promise<void> {
    return this.settle(`queue ${queue} ${channel}`, 'queue.declare', async () => {
      await this.declareQueue(queue, durable, args);
      await this.bind(queue, channel);
    });
  }

  /**
   * Runs a declaration (`what`, for the log) once per `key` at a time, and
   * waits for it at most `operationTimeoutMs`. One that timed out for its
   * caller goes on: a caller that asks again (a stream waiting for a slow
   * broker) waits for that one instead of queueing the same RPCs behind it.
   */
  private async settle(key: string, what: string, run: () => Promise<void>): Promise<void> {
    let operation = this.inFlight.get(key);
    if (operation === undefined) {
      const started = run();
      operation = started;
      this.inFlight.set(key, started);
      const forget = (): void => {
        if (this.inFlight.get(key) === started) this.inFlight.delete(key);
      };
      started.then(forget, forget);
    }
    try {
      await this.bounded(operation, what);
    } catch (err) {
      throw this.translate(err);
    }
  }

  /** Declares `queue` (no time bound: see `settle`); one that exists with other arguments is used as it is. */
  private async declareQueue(queue: string, durable: boolean, args: Record<string, unknown>): Promise<void> {
    this.counters.queueDeclares++;
    try {
      await (await this.admin()).assertQueue(queue, { durable, arguments: args });
    } catch (err) {
      if ((err as { code?: number }).code !== 406 || !this.ready) throw err;
      // The queue exists with other arguments (the retention or length
      // setting changed since it was declared). Keep using it as it is: its
      // messages belong to the consumer. It expires under its old settings.
      // (The 406 closed the admin channel; admin() opens a new one.)
      this.log.warn('queue exists with different arguments; using it as is', { queue });
      await (await this.admin()).checkQueue(queue);
    }
  }

  /** Binds `queue` to `channel` (no time bound: see `settle`). */
  private async bind(queue: string, channel: string): Promise<void> {
    this.counters.queueBinds++;
    await (await this.admin()).bindQueue(queue, this.options.exchange, routingKey(channel));
  }

  declareLog(log: string, limits: LogLimits): Promise<void> {
    return this.settle(`log ${log}`, 'queue.declare', () => this.declareQueue(log, true, channelLogArguments(limits)));
  }

  async bindLog(log: string, channel: string): Promise<void> {
    try {
      await this.settle(`bind ${log} ${channel}`, 'queue.bind', () => this.bind(log, channel));
    } catch (err) {
      const cause = err instanceof WarrenError ? (err as { cause?: unknown }).cause : undefined;
      if ((cause as { code?: number } | undefined)?.code === 404) throw new QueueNotFoundError(log);
      throw err;
    }
  }

  async deleteLog(log: string): Promise<void> {
    try {
      await this.bounded((await this.admin()).deleteQueue(log), 'queue.delete');
    } catch (err) {
      throw this.translate(err);
    }
  }

  /**
   * Reads a stream from `options.from` (consumer argument `x-stream-offset`;
   * RabbitMQ requires a prefetch and acknowledgements for it). Each delivery
   * carries its offset in the `x-stream-offset` header.
   */
  async readLog(log: string, options: ReadLogOptions): Promise<Subscription> {
    const ch = await this.logChannel(options.prefetch, log);
    const consumer = new RabbitConsumer(ch, { prefetch: options.prefetch, onMessage: () => undefined, onEnd: options.onEnd });
    return this.startConsumer(log, consumer, (msg) => this.onLogDelivery(consumer, msg, options), {
      'x-stream-offset': streamOffset(options.from),
    });
  }

  /** The channel for declarations and bindings. */
  private admin(): Promise<Channel> {
    return this.channel(
      () => this.adminChannel,
      (p) => {
        this.adminChannel = p;
      },
      () => this.openChannel(),
    );
  }

  async get(queue: string): Promise<Delivery | undefined> {
    const ch = await this.consumerChannel(1, queue);
    this.counters.gets++;
    let msg: GetMessage | false;
    try {
      const getting = ch.get(queue, { noAck: false });
      this.batchFrames();
      msg = await this.bounded(getting, 'basic.get', (late) => {
        // Arrived after the caller gave up: put it back.
        if (late !== false) this.delivery(ch, late).requeue();
      });
    } catch (err) {
      if ((err as { code?: number }).code === 404) throw new QueueNotFoundError(queue);
      throw this.translate(err);
    }
    if (msg === false) {
      this.counters.getsEmpty++;
      return undefined;
    }
    this.counters.delivered++;
    return this.delivery(ch, msg);
  }

  async consume(queue: string, options: ConsumeOptions): Promise<Subscription> {
    const ch = await this.consumerChannel(options.prefetch, queue);
    const consumer = new RabbitConsumer(ch, options);
    return this.startConsumer(queue, consumer, (msg) => this.onDelivery(consumer, msg));
  }

  private async startConsumer(
    queue: string,
    consumer: RabbitConsumer,
    onMessage: (msg: ConsumeMessage | null) => void,
    args?: Record<string, unknown>,
  ): Promise<Subscription> {
    const ch = consumer.channel;
    this.consumers.add(consumer);
    try {
      const reply = await this.bounded(
        ch.consume(queue, onMessage, { noAck: false, ...(args === undefined ? {} : { arguments: args }) }),
        'basic.consume',
        (late) => {
          // Started after the caller gave up: its deliveries are requeued (cancelled), and it is stopped.
          if (!this.closedChannels.has(ch)) ch.cancel(late.consumerTag).catch(() => undefined);
        },
      );
      consumer.tag = reply.consumerTag;
    } catch (err) {
      this.consumers.delete(consumer);
      consumer.cancelled = true;
      if ((err as { code?: number }).code === 404) throw new QueueNotFoundError(queue);
      throw this.translate(err);
    }
    this.counters.consumersStarted++;
    return {
      cancel: async () => {
        if (consumer.cancelled) return;
        consumer.cancelled = true;
        this.consumers.delete(consumer);
        this.counters.consumersCancelled++;
        if (consumer.ended || this.closedChannels.has(ch)) return;
        try {
          await this.bounded(ch.cancel(consumer.tag!), 'basic.cancel');
        } catch {
          // The channel closed meanwhile: the consumer is gone with it.
        }
      },
    };
  }

  stats(): BrokerStats {
    return { ...this.counters, ready: this.ready, activeConsumers: this.consumers.size };
  }

  private onDelivery(consumer: RabbitConsumer, msg: ConsumeMessage | null): void {
    if (msg === null) {
      // basic.cancel from the server: the queue was deleted.
      this.consumers.delete(consumer);
      consumer.end({ reason: 'queue-deleted' });
      return;
    }
    this.counters.delivered++;
    const delivery = this.delivery(consumer.channel, msg);
    if (consumer.cancelled) {
      // Arrived between cancel() and the broker's cancel-ok: give it back.
      delivery.requeue();
      return;
    }
    consumer.options.onMessage(delivery);
  }

  private onLogDelivery(consumer: RabbitConsumer, msg: ConsumeMessage | null, options: ReadLogOptions): void {
    if (msg === null) {
      // basic.cancel from the server: the stream was deleted.
      this.consumers.delete(consumer);
      consumer.end({ reason: 'queue-deleted' });
      return;
    }
    this.counters.delivered++;
    const ch = consumer.channel;
    const batch = this.ackBatch(ch);
    batch.register(msg.fields.deliveryTag);
    let acked = false;
    const entry: LogEntry = {
      offset: Number((msg.properties.headers as Record<string, unknown> | undefined)?.['x-stream-offset']),
      channel: msg.fields.routingKey,
      message: fromWire(msg.content, msg.properties),
      death: deathFromHeaders(msg.properties.headers, msg.fields.routingKey),
      ack: () => {
        if (acked) return;
        acked = true;
        if (this.closedChannels.has(ch)) return;
        this.counters.acked++;
        this.ack(batch, msg.fields.deliveryTag);
      },
    };
    // Arrived between cancel() and the broker's cancel-ok: nothing to give back on a stream.
    if (consumer.cancelled) entry.ack();
    else options.onEntry(entry);
  }

  /**
   * The channel for stream readers with this prefetch: apart from the queue
   * consumers' channels, so that a stream error (a bad offset, a deleted
   * stream) never closes a channel that queue consumers use.
   */
  private logChannel(prefetch: number, log: string): Promise<Channel> {
    const key = `log:${prefetch}:${shardOf(log, CONSUMER_SHARDS)}`;
    return this.channel(
      () => this.consumeChannels.get(key),
      (p) => (p === undefined ? this.consumeChannels.delete(key) : this.consumeChannels.set(key, p)),
      () => this.openConsumeChannel(prefetch, key),
    );
  }

  /**
   * The channel for consumers of `queue` with this prefetch (and, for
   * prefetch 1, for `get`). Queues are spread over {@link CONSUMER_SHARDS}
   * channels by name ({@link POLL_SHARDS} for prefetch 1): RabbitMQ serves each channel in its own process, so
   * consumer starts, cancels and gets of different queues run in parallel,
   * and a channel error ends a quarter of the consumers, not all. One queue
   * always maps to one channel, so a requeue is applied before a later get.
   */
  private consumerChannel(prefetch: number, queue: string): Promise<Channel> {
    const key = `${prefetch}:${shardOf(queue, prefetch === 1 ? POLL_SHARDS : CONSUMER_SHARDS)}`;
    return this.channel(
      () => this.consumeChannels.get(key),
      (p) => (p === undefined ? this.consumeChannels.delete(key) : this.consumeChannels.set(key, p)),
      () => this.openConsumeChannel(prefetch, key),
    );
  }

  private delivery(ch: Channel, msg: Message): Delivery {
    const batch = this.ackBatch(ch);
    const tag = msg.fields.deliveryTag;
    batch.register(tag);
    let settled = false;
    const settle = (ack: boolean): void => {
      if (settled) return;
      settled = true;
      if (this.closedChannels.has(ch)) return; // the broker requeued it when the channel closed
      if (ack) {
        this.counters.acked++;
        this.ack(batch, tag);
      } else {
        this.counters.requeued++;
        batch.nack(tag); // its sender ignores a channel closed meanwhile (the broker requeued)
        this.batchFrames();
      }
    };
    return {
      message: fromWire(msg.content, msg.properties),
      channel: msg.fields.routingKey,
      redelivered: msg.fields.redelivered,
      death: deathFromHeaders(msg.properties.headers, msg.fields.routingKey),
      ack: () => settle(true),
      requeue: () => settle(false),
    };
  }

  /** The acknowledgements of `ch`, which sends them (on a closed channel, nothing: the broker requeued). */
  private ackBatch(ch: Channel): AckBatch {
    let batch = this.acks.get(ch);
    if (batch === undefined) {
      const ref = { fields: { deliveryTag: 0 } } as Message;
      const send = (tag: number, ack: boolean, multiple: boolean): void => {
        if (this.closedChannels.has(ch)) return;
        ref.fields.deliveryTag = tag;
        try {
          if (ack) ch.ack(ref, multiple);
          else ch.nack(ref, false, true);
        } catch {
          // The channel closed meanwhile: the broker requeued what it had not settled.
        }
      };
      batch = new AckBatch({ ack: (tag, multiple) => send(tag, true, multiple), nack: (tag) => send(tag, false, false) });
      this.acks.set(ch, batch);
    }
    return batch;
  }

  /**
   * Acknowledges `tag` at the end of this turn: the acks of a turn leave as
   * few `basic.ack multiple` frames as their order allows (`AckBatch`).
   */
  private ack(batch: AckBatch, tag: number): void {
    const frames = batch.frames;
    if (batch.ack(tag)) this.acksWanted.add(batch);
    this.counters.ackFrames += batch.frames - frames;
    if (this.acksScheduled || this.acksWanted.size === 0) return;
    this.acksScheduled = true;
    process.nextTick(() => {
      this.acksScheduled = false;
      this.batchFrames();
      for (const wanted of this.acksWanted) {
        const before = wanted.frames;
        wanted.flush();
        this.counters.ackFrames += wanted.frames - before;
      }
      this.acksWanted.clear();
    });
  }

  /**
   * Lets the frames sent in this turn of the event loop leave in one TCP
   * write. Polls and streams send an ack or a `basic.get` each, one callback
   * after another: without this every frame is a write of its own (the
   * connection has Nagle off), which was a third of the gateway's CPU in the
   * long-poll benchmark. amqplib moves a channel's frames to the socket in a
   * `setImmediate` scheduled from a `nextTick` after the first write, so the
   * socket is uncorked in a `setImmediate` scheduled after that one.
   */
  private batchFrames(): void {
    if (this.framesCorked) return;
    const socket = (this.connection as unknown as { connection?: { stream?: Duplex } } | undefined)?.connection?.stream;
    if (socket === undefined || socket.destroyed) return;
    socket.cork();
    this.framesCorked = true;
    process.nextTick(() =>
      setImmediate(() => {
        this.framesCorked = false;
        socket.uncork();
      }),
    );
  }

  /** Returns the cached channel, opening it when needed. */
  private async channel<T extends Channel>(
    get: () => Promise<T> | undefined,
    set: (p: Promise<T> | undefined) => void,
    open: () => Promise<T>,
  ): Promise<T> {
    if (this.state !== 'ready' || this.connection === undefined) throw brokerUnavailable(`RabbitMQ is not connected (${this.state})`);
    let p = get();
    if (p === undefined) {
      // The opening is shared and not bounded itself: a caller that gave up
      // on a slow broker leaves it to the next one (it fails with the
      // connection), instead of opening a channel nobody closes.
      const opening = open();
      p = opening;
      set(opening);
      opening.then(
        () => this.openedChannels.add(opening),
        () => {
          if (get() === opening) set(undefined);
        },
      );
    }
    try {
      return await (this.openedChannels.has(p) ? p : this.bounded(p, 'channel.open'));
    } catch (err) {
      throw this.translate(err);
    }
  }

  private async openChannel(): Promise<Channel> {
    const ch = await this.connection!.createChannel();
    this.watchChannel(ch, () => {
      this.adminChannel = undefined;
    });
    return ch;
  }

  private async openPublishChannel(): Promise<ConfirmChannel> {
    const ch = await this.connection!.createConfirmChannel();
    const returns = new Returns();
    this.returns.set(ch, returns);
    ch.on('return', (msg: { fields: { routingKey: string }; properties: { messageId?: unknown } }) =>
      returns.add(msg.fields.routingKey, msg.properties.messageId),
    );
    this.watchChannel(ch, () => {
      this.publishChannel = undefined;
      returns.clear();
    });
    return ch;
  }

  private async openConsumeChannel(prefetch: number, key: string): Promise<Channel> {
    const ch = await this.connection!.createChannel();
    this.watchChannel(ch, () => {
      this.consumeChannels.delete(key);
      // Deferred: when the whole connection closed, its handler runs in this
      // same tick and ends the consumers with `broker-lost` instead.
      setImmediate(() => {
        for (const consumer of this.consumers) {
          if (consumer.channel !== ch) continue;
          this.consumers.delete(consumer);
          consumer.end({ reason: this.ready ? 'channel-lost' : 'broker-lost' });
        }
      });
    });
    // Per-consumer prefetch (global = false) for every consumer on this channel.
    await ch.prefetch(prefetch, false);
    return ch;
  }

  private watchChannel(ch: Channel, onClose: () => void): void {
    this.counters.channelsOpened++;
    ch.on('error', (err: Error) => {
      // A channel-level error (the 'close' event follows). Connection-level
      // errors are logged by the connection handler.
      this.log.warn('AMQP channel error', { error: err.message });
    });
    ch.on('close', () => {
      this.closedChannels.add(ch);
      onClose();
    });
  }

  private async connect(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'connecting';
    let connection: ChannelModel | undefined;
    try {
      connection = await amqp.connect(withHeartbeat(this.options.urls[this.urlIndex]!, this.options.heartbeatSeconds), {
        clientProperties: { connection_name: this.options.connectionName },
        // Covers the TCP connect and the AMQP handshake (a black-holed broker answers neither).
        timeout: Math.min(this.options.operationTimeoutMs, 5000),
        // Without it, an ack (no reply) followed by a consume waits ~40 ms
        // for the broker's delayed TCP ACK (Nagle): measured 42 ms per poll.
        noDelay: true,
      });
      // Until the handlers below are attached, an 'error' must not go unhandled.
      connection.on('error', () => undefined);
      if (this.state !== 'connecting') {
        await connection.close().catch(() => undefined);
        return;
      }
      this.counters.connectionsOpened++;
      await this.declareExchange(connection);
      // close() came while the exchange was being checked: this connection is not wanted.
      if (this.state !== 'connecting') {
        await connection.close().catch(() => undefined);
        return;
      }
    } catch (err) {
      if (connection !== undefined) await connection.close().catch(() => undefined);
      if (this.state !== 'connecting') return;
      if (err instanceof ExchangeTypeError && this.counters.connectionsOpened === 1) {
        // A first start on the wrong exchange is a setup to fix, not an outage to wait out.
        this.state = 'closed';
        this.log.error('cannot use the exchange', { error: err.message });
        throw err;
      }
      this.state = 'down';
      this.log.warn('cannot connect to RabbitMQ', { error: (err as Error).message, attempt: this.attempt, node: this.urlIndex });
      this.nextUrl();
      this.scheduleReconnect();
      return;
    }
    const conn = connection;
    conn.on('error', (err: Error) => this.log.warn('RabbitMQ connection error', { error: err.message }));
    conn.on('blocked', (reason: string) => this.log.warn('RabbitMQ blocked publishing', { reason }));
    conn.on('unblocked', () => this.log.info('RabbitMQ unblocked publishing'));
    conn.on('close', (err?: Error) => this.onConnectionClosed(conn, err));
    this.connection = conn;
    this.state = 'ready';
    this.attempt = 0;
    this.log.info('connected to RabbitMQ', { exchange: this.options.exchange, node: this.urlIndex });
    this.emit('ready');
  }

  /**
   * Makes sure the exchange exists as it must (see `exchangeType`). Each
   * check on a channel of its own: a refused declaration closes its channel.
   * @throws ExchangeTypeError for a topic exchange that exists as another type
   */
  private async declareExchange(connection: ChannelModel): Promise<void> {
    const { exchange } = this.options;
    const topic = this.options.exchangeType === 'topic';
    const type = topic ? WILDCARD_EXCHANGE_TYPE : EXCHANGE_TYPE;
    const attempt = async (check: (ch: Channel) => Promise<unknown>, what: string): Promise<number | undefined> => {
      const ch = await this.bounded(connection.createChannel(), 'channel.open');
      ch.on('error', () => undefined);
      try {
        await this.bounded(check(ch), what);
      } catch (err) {
        const code = (err as { code?: number }).code;
        if (err instanceof WarrenError) throw err;
        if (code !== 404 && code !== 406) {
          throw new Error(`cannot use exchange "${exchange}" as a durable ${type} exchange: ${(err as Error).message}`);
        }
        return code;
      }
      await this.bounded(ch.close(), 'channel.close');
      return undefined;
    };
    const refused = await attempt((ch) => ch.assertExchange(exchange, type, { durable: true }), 'exchange.declare');
    if (refused === undefined) return;
    // Without wildcard routes an existing exchange of another type (a topic one) will do: a second
    // channel looks (passive). Only then: the usual start costs one channel (see test/churn.test.ts).
    if (!topic && refused === 406 && (await attempt((ch) => ch.checkExchange(exchange), 'exchange.declare')) === undefined) return;
    if (topic) {
      throw new ExchangeTypeError(
        `exchange "${exchange}" exists with another type than topic (or not durable): --wildcard-routes needs a durable topic exchange; ` +
          'RabbitMQ cannot change the type of an exchange: see "Moving to a topic exchange" in docs/wildcards.md, or use another --exchange',
      );
    }
    throw new Error(`cannot use exchange "${exchange}" as a durable ${type} exchange (RabbitMQ answered ${refused})`);
  }

  private onConnectionClosed(conn: ChannelModel, err: Error | undefined): void {
    if (this.connection !== conn) return;
    this.connection = undefined;
    this.dropChannels();
    if (this.state === 'closed') return;
    this.state = 'down';
    this.log.warn('lost the RabbitMQ connection', { error: err?.message, node: this.urlIndex });
    // The node may be gone: the next attempt goes to the next one.
    this.nextUrl();
    const consumers = [...this.consumers];
    this.consumers.clear();
    for (const consumer of consumers) consumer.end({ reason: 'broker-lost' });
    this.emit('lost', err);
    this.scheduleReconnect();
  }

  private nextUrl(): void {
    this.urlIndex = (this.urlIndex + 1) % this.options.urls.length;
  }

  private dropChannels(): void {
    this.publishChannel = undefined;
    this.adminChannel = undefined;
    this.consumeChannels.clear();
    this.publishDrain = undefined;
  }

  private scheduleReconnect(): void {
    if (this.state === 'closed') return;
    const { reconnectMinMs, reconnectMaxMs } = this.options;
    const base = Math.min(reconnectMaxMs, reconnectMinMs * 2 ** this.attempt);
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    this.attempt++;
    clearTimeout(this.reconnectTimer);
    // An ExchangeTypeError there was logged, and leaves the broker closed.
    this.reconnectTimer = setTimeout(() => void this.connect().catch(() => undefined), delay);
    this.reconnectTimer.unref();
  }

  /**
   * `operation`, or `BROKER_TIMEOUT` once `operationTimeoutMs` has passed.
   * What the operation yields after that goes to `late` (to be given back).
   */
  private bounded<T>(operation: Promise<T>, what: string, late?: (value: T) => void): Promise<T> {
    const ms = this.options.operationTimeoutMs;
    const timeout = (): Error => {
      this.log.warn('RabbitMQ did not answer in time', { operation: what, timeoutMs: ms });
      return brokerTimeout(`RabbitMQ did not answer ${what} within ${ms} ms`);
    };
    return within(operation, ms, timeout, late);
  }

  private translate(err: unknown): Error {
    if (err instanceof WarrenError || err instanceof QueueNotFoundError) return err;
    if (!this.ready) return brokerUnavailable('RabbitMQ connection lost', err);
    const code = (err as { code?: number }).code;
    return new WarrenError('INTERNAL_ERROR', `RabbitMQ refused an operation${code === undefined ? '' : ` (${code})`}`, { cause: err });
  }
}
