/**
 * The AMQP wire layout. Anything that speaks AMQP 0-9-1 can publish to a
 * Warren channel by following it; README.md ("Wire layout") says the same.
 *
 * - Exchange: {@link DEFAULT_EXCHANGE} (`warren`), type `direct`, durable.
 * - Routing key: the channel path exactly as in the URL (`/greetings`).
 * - Consumer queue: `warren:<consumer id>:<channel>`, durable, with
 *   `x-expires` (retention), `x-max-length` + `x-overflow: drop-head` and
 *   `x-single-active-consumer: true`, bound to the exchange with the channel
 *   as binding key.
 * - Channel log (logged channels only): `warren:log:<shard>`, a durable
 *   stream queue (`x-queue-type: stream`) with `x-max-age`,
 *   `x-max-length-bytes` and `x-stream-max-segment-size-bytes`, bound with
 *   the routing key of each logged channel hashed to that shard.
 * - Message properties: `messageId`, `contentType`, `type` (event name),
 *   `timestamp` (seconds), `deliveryMode: 2` (persistent). The body is the
 *   message bytes, untouched.
 */
import { generateMessageId, isContentType, isEventName, isMessageId } from './names.js';
import { WarrenError } from './errors.js';
import { BINARY_CONTENT_TYPE, type WarrenMessage } from './message.js';

export const DEFAULT_EXCHANGE = 'warren';
export const EXCHANGE_TYPE = 'direct';
export const QUEUE_PREFIX = 'warren:';

/** The routing key of a channel: the channel path itself. */
export function routingKey(channel: string): string {
  return channel;
}

/** The name of the queue that holds `channel`'s messages for `consumerId`. */
export function consumerQueueName(consumerId: string, channel: string): string {
  return `${QUEUE_PREFIX}${consumerId}:${channel}`;
}

/**
 * The queue through which one gateway process receives `channel` for all its
 * anonymous streams (in-process fan-out): `warren:fanout:<gateway id>:<channel>`.
 */
export function fanOutQueueName(gatewayId: string, channel: string): string {
  return `${QUEUE_PREFIX}fanout:${gatewayId}:${channel}`;
}

/** Arguments of a fan-out queue: not durable, gone a minute after its process stops consuming. */
export function fanOutQueueArguments(limits: ConsumerQueueLimits): Record<string, unknown> {
  return {
    'x-expires': limits.expiresMs,
    'x-max-length': limits.maxLength,
    'x-overflow': 'drop-head',
  };
}

/**
 * The stream that keeps the history of the logged channels hashed to `shard`
 * (`warren:log:<shard>`; `warren:log:<exchange>:<shard>` for another exchange
 * than `warren`): a RabbitMQ stream queue bound to the exchange with the
 * routing key of every logged channel in the shard.
 */
export function channelLogName(shard: number, exchange: string = DEFAULT_EXCHANGE): string {
  return exchange === DEFAULT_EXCHANGE ? `${QUEUE_PREFIX}log:${shard}` : `${QUEUE_PREFIX}log:${exchange}:${shard}`;
}

/**
 * The stream of the positions of identified consumers on logged channels
 * (`warren:positions`; `warren:positions:<exchange>` for another exchange
 * than `warren`): every gateway appends `{consumer, channel, id}` to it and
 * reads it into a map (docs/channel-logs.md, "Positions").
 */
export function positionsLogName(exchange: string = DEFAULT_EXCHANGE): string {
  return exchange === DEFAULT_EXCHANGE ? `${QUEUE_PREFIX}positions` : `${QUEUE_PREFIX}positions:${exchange}`;
}

/** The shard of a logged channel: FNV-1a of its routing key, modulo `shards`. */
export function logShardOf(channel: string, shards: number): number {
  const key = routingKey(channel);
  let hash = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    hash ^= key.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) % shards;
}

/** Retention of a channel log. */
export interface LogLimits {
  /** Entries older than this may be removed (`x-max-age`, whole seconds). */
  maxAgeMs: number;
  /** The log is cut from its oldest end past this size (`x-max-length-bytes`). */
  maxBytes: number;
  /**
   * Size of one segment file (`x-stream-max-segment-size-bytes`). Retention
   * removes whole segments, so this is its granularity.
   */
  segmentBytes: number;
}

/** Arguments of a channel log: a durable stream queue with retention by age and size. */
export function channelLogArguments(limits: LogLimits): Record<string, unknown> {
  return {
    'x-queue-type': 'stream',
    'x-max-age': `${Math.max(1, Math.ceil(limits.maxAgeMs / 1000))}s`,
    'x-max-length-bytes': limits.maxBytes,
    'x-stream-max-segment-size-bytes': Math.min(limits.segmentBytes, limits.maxBytes),
  };
}

/** Settings of a consumer queue. */
export interface ConsumerQueueLimits {
  /** Milliseconds a queue outlives its last consumer (`x-expires`). */
  expiresMs: number;
  /** Most messages kept; the oldest are dropped first (`x-max-length`). */
  maxLength: number;
  /**
   * `classic` (one node holds the queue) or `quorum` (replicated over a
   * RabbitMQ cluster: the backlog survives the loss of a node). @default 'classic'
   */
  queueType?: 'classic' | 'quorum';
}

/** The `arguments` table of a consumer queue's declaration. */
export function consumerQueueArguments(limits: ConsumerQueueLimits): Record<string, unknown> {
  const common = { 'x-expires': limits.expiresMs, 'x-max-length': limits.maxLength, 'x-overflow': 'drop-head' };
  // RabbitMQ refuses basic.get (the first step of a long-poll) on a quorum
  // queue with a single active consumer: there, one reader per consumer is
  // kept by the gateway process (takeover), not by the queue.
  if (limits.queueType === 'quorum') return { 'x-queue-type': 'quorum', ...common };
  return { ...common, 'x-single-active-consumer': true };
}

/** The subset of AMQP basic properties Warren writes and reads. */
export interface WireProperties {
  messageId?: string | undefined;
  contentType?: string | undefined;
  type?: string | undefined;
  timestamp?: number | undefined;
  deliveryMode?: number | undefined;
  persistent?: boolean | undefined;
}

/** AMQP properties for publishing `message`. */
export function toWireProperties(message: WarrenMessage): WireProperties {
  const props: WireProperties = {
    messageId: message.id,
    contentType: message.contentType,
    timestamp: Math.floor((message.publishedAt ?? Date.now()) / 1000),
    persistent: true,
  };
  if (message.event !== undefined) props.type = message.event;
  return props;
}

/**
 * A message from AMQP properties and body. Any AMQP client can publish, so
 * every property is checked here, before it can reach an HTTP header: a
 * missing or malformed `messageId` is replaced by a random id (such a message
 * cannot be recognised again if it is redelivered), a malformed
 * `contentType` becomes `application/octet-stream`, a malformed `type`
 * (event name) is dropped.
 */
export function fromWire(body: Buffer, props: WireProperties): WarrenMessage {
  const message: WarrenMessage = {
    id: valid(isMessageId, props.messageId) ?? generateMessageId(),
    contentType: valid(isContentType, props.contentType) ?? BINARY_CONTENT_TYPE,
    body,
  };
  const event = valid(isEventName, props.type);
  if (event !== undefined) message.event = event;
  if (typeof props.timestamp === 'number') message.publishedAt = props.timestamp * 1000;
  return message;
}

function valid(check: (v: unknown) => boolean, value: unknown): string | undefined {
  return check(value) ? (value as string) : undefined;
}

/**
 * The error for a failed publisher confirm, from amqplib's callback error:
 * a broker nack is `PUBLISH_NACKED` (the message was refused); anything else
 * (the channel or connection closed first) is `BROKER_UNAVAILABLE` (it may or
 * may not have been routed: retry with the same id).
 */
export function confirmError(err: unknown): WarrenError {
  if (err instanceof Error && err.message === 'message nacked') {
    return new WarrenError('PUBLISH_NACKED', 'the broker refused the message');
  }
  return new WarrenError('BROKER_UNAVAILABLE', 'the broker went away before confirming the message; it may be retried with the same id', {
    cause: err,
  });
}
