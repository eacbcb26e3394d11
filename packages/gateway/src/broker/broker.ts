import type { EventEmitter } from 'node:events';
import { WarrenError, type ConsumerQueueLimits, type Death, type LogLimits, type WarrenMessage } from '@warren/protocol';

/**
 * A message handed to a consumer. Settle it exactly once: `ack()` removes it
 * from the queue, `requeue()` puts it back in its place. Calls after the
 * first are ignored, so no code path can settle a delivery twice.
 */
export interface Delivery {
  readonly message: WarrenMessage;
  /** The channel it was published to (its routing key). */
  readonly channel?: string | undefined;
  /** `true` when the broker delivered this message before (it may be a duplicate). */
  readonly redelivered: boolean;
  /** For a dead letter (the audit inbox): which queue dropped it, why and when. */
  readonly death?: Death | undefined;
  ack(): void;
  requeue(): void;
}

/** Why a consumer stopped without being cancelled by its owner. */
export type ConsumerEnd =
  /** The broker connection went away; retry once the broker is `ready` again. */
  | { reason: 'broker-lost' }
  /** The consumer's AMQP channel closed while the connection stayed up; retry now. */
  | { reason: 'channel-lost' }
  /** The queue was deleted under the consumer; declare it again before retrying. */
  | { reason: 'queue-deleted' };

export interface ConsumeOptions {
  /** Most unacknowledged deliveries this consumer holds at once. */
  prefetch: number;
  onMessage(delivery: Delivery): void;
  /** Called at most once, and never after `cancel()` was called. */
  onEnd(end: ConsumerEnd): void;
}

/**
 * Where a log reader starts: an offset, the first entry stored at or after a
 * time (ms since the epoch; on RabbitMQ a whole chunk, so entries a little
 * older may come first), the oldest entry retained, or the next one appended.
 * An offset older than the oldest retained starts at the oldest retained; an
 * offset past the end waits for it.
 */
export type LogPosition = { offset: number } | { time: number } | 'first' | 'next';

/** One entry of a channel log handed to a reader. Acknowledge it (once) to let the reader's prefetch move on. */
export interface LogEntry {
  /** Its place in the log: unique and increasing within one log (not contiguous per channel). */
  readonly offset: number;
  /** The channel it was published to (its routing key). */
  readonly channel: string;
  readonly message: WarrenMessage;
  /** For an entry of the audit stream: which queue dropped the message, why and when. */
  readonly death?: Death | undefined;
  ack(): void;
}

/** Where the audit goes (docs/audit.md): names from `auditExchangeName`, `auditInboxName`, `auditLogName`. */
export interface AuditLayout {
  /** The dead-letter exchange of audited consumer queues (`fanout`, durable). */
  exchange: string;
  /** The durable queue bound to it, where dead letters land. */
  inbox: string;
  /** Most dead letters the inbox keeps while no gateway moves them (oldest dropped first). */
  inboxMaxLength: number;
  /** The audit stream the app reads. */
  log: string;
  limits: LogLimits;
}

export interface ReadLogOptions {
  from: LogPosition;
  /** Most unacknowledged entries this reader holds at once. */
  prefetch: number;
  onEntry(entry: LogEntry): void;
  /** Called at most once, and never after `cancel()` was called (`queue-deleted`: the log was deleted). */
  onEnd(end: ConsumerEnd): void;
}

export interface Subscription {
  /** Stops deliveries. Unsettled deliveries stay unsettled until settled. Idempotent. */
  cancel(): Promise<void>;
}

/** Counters for churn and traffic; monotonic over the broker's life. */
export interface BrokerStats {
  kind: BrokerKind;
  ready: boolean;
  queueDeclares: number;
  queueBinds: number;
  consumersStarted: number;
  consumersCancelled: number;
  /** `basic.get` calls, and how many found the queue empty. */
  gets: number;
  getsEmpty: number;
  published: number;
  delivered: number;
  acked: number;
  /** `basic.ack` frames sent for `acked` (one can settle many: see `AckBatch`). */
  ackFrames: number;
  requeued: number;
  connectionsOpened: number;
  channelsOpened: number;
  activeConsumers: number;
}

export type BrokerKind = 'memory' | 'rabbitmq';

export interface BrokerEvents {
  /** Connected and usable (again). */
  ready: [];
  /** Connection lost; every consumer ended with `broker-lost`. */
  lost: [error: Error | undefined];
}

/**
 * The seam between the gateway and the broker. The gateway never learns
 * which implementation runs: the in-process {@link MemoryBroker} and
 * {@link RabbitBroker} keep the same semantics (per-consumer queues with
 * expiry and a length bound, single active consumer, ordering, requeue to
 * the original position, acknowledge after delivery).
 */
export interface Broker extends EventEmitter<BrokerEvents> {
  readonly kind: BrokerKind;
  /** `true` while publish, declare and consume can be attempted. */
  readonly ready: boolean;
  /** Connects; never rejects for a broker that is merely down (it keeps retrying). */
  start(): Promise<void>;
  /** Disconnects for good. Idempotent. */
  close(): Promise<void>;
  /**
   * Routes `message` to every queue and log bound to `channel`. Resolves once
   * the broker has taken responsibility for it (publisher confirm), with
   * `true` when at least one queue or log took it and `false` when none was
   * bound (RabbitMQ: published `mandatory`, and returned).
   * @throws WarrenError `BROKER_UNAVAILABLE`, `PUBLISH_NACKED`
   */
  publish(channel: string, message: WarrenMessage): Promise<boolean>;
  /** Declares `queue` with `limits` and binds it to `channel`. Idempotent. */
  declareConsumerQueue(queue: string, channel: string, limits: ConsumerQueueLimits): Promise<void>;
  /** Declares a non-durable fan-out queue (see `fanOutQueueArguments`) and binds it to `channel`. Idempotent. */
  declareFanOutQueue(queue: string, channel: string, limits: ConsumerQueueLimits): Promise<void>;
  /**
   * Declares the process's wildcard queue (docs/wildcards.md): a non-durable
   * fan-out queue bound to every channel (RabbitMQ: binding key `#` on the
   * topic exchange). Each {@link Delivery} names its `channel`. Idempotent.
   */
  declareWildcardQueue(queue: string, limits: ConsumerQueueLimits): Promise<void>;
  /** Deletes `queue` and its messages; its consumers end with `queue-deleted`. Idempotent. */
  deleteQueue(queue: string): Promise<void>;
  /**
   * Starts a consumer on `queue`.
   * @throws QueueNotFoundError when the queue does not exist
   * @throws WarrenError `BROKER_UNAVAILABLE`
   */
  consume(queue: string, options: ConsumeOptions): Promise<Subscription>;
  /**
   * Takes the message at the head of `queue` without waiting (AMQP
   * `basic.get`), or `undefined` when the queue is empty. The delivery is
   * settled like a consumed one. It shares the consumers' AMQP channel, so a
   * requeue sent on that channel is applied before a later `get`.
   * @throws QueueNotFoundError when the queue does not exist
   * @throws WarrenError `BROKER_UNAVAILABLE`
   */
  get(queue: string): Promise<Delivery | undefined>;
  /**
   * Declares the channel log `log` (a stream) with `limits`. Idempotent; a
   * log that exists with other limits is used as it is.
   * @throws WarrenError `BROKER_UNAVAILABLE`
   */
  declareLog(log: string, limits: LogLimits): Promise<void>;
  /** Binds `channel` to `log`: from now on what is published to `channel` is appended to it. Idempotent. */
  bindLog(log: string, channel: string): Promise<void>;
  /**
   * Reads `log` from `options.from`, in order, each entry with its offset.
   * @throws QueueNotFoundError when the log does not exist
   */
  readLog(log: string, options: ReadLogOptions): Promise<Subscription>;
  /**
   * Appends `message` to `log` itself (not through a channel): its entry's
   * `channel` is the log's name. The gateway marks a place in the log with it.
   */
  appendLog(log: string, message: WarrenMessage, death?: Death): Promise<void>;
  /**
   * Declares the audit's exchange, inbox (bound to the exchange) and stream.
   * Idempotent. With a consumer queue declared with the exchange as its
   * `deadLetterExchange`, what it drops on overflow lands in the inbox as a
   * {@link Delivery} with its `death`.
   */
  declareAudit(layout: AuditLayout): Promise<void>;
  /** Deletes `log` and everything in it (its readers end with `queue-deleted`). Idempotent. */
  deleteLog(log: string): Promise<void>;
  stats(): BrokerStats;
}

/** Raised by `consume()` for a queue that does not exist (expired or deleted). */
export class QueueNotFoundError extends Error {
  override readonly name = 'QueueNotFoundError';
  constructor(readonly queue: string) {
    super(`queue ${queue} does not exist`);
  }
}

export function emptyStats(kind: BrokerKind): BrokerStats {
  return {
    kind,
    ready: false,
    queueDeclares: 0,
    queueBinds: 0,
    consumersStarted: 0,
    consumersCancelled: 0,
    gets: 0,
    getsEmpty: 0,
    published: 0,
    delivered: 0,
    acked: 0,
    ackFrames: 0,
    requeued: 0,
    connectionsOpened: 0,
    channelsOpened: 0,
    activeConsumers: 0,
  };
}

export function brokerUnavailable(message: string, cause?: unknown): WarrenError {
  return new WarrenError('BROKER_UNAVAILABLE', message, cause === undefined ? undefined : { cause });
}

export function brokerTimeout(message: string): WarrenError {
  return new WarrenError('BROKER_TIMEOUT', message);
}
