/**
 * The AMQP wire layout. Anything that speaks AMQP 0-9-1 can publish to a
 * Warren channel by following it; README.md ("Wire layout") says the same.
 *
 * - Exchange: {@link DEFAULT_EXCHANGE} (`warren`), type `direct`, durable;
 *   type `topic` where the gateways serve wildcard subscriptions
 *   (`--wildcard-routes`, docs/wildcards.md). Publishers use it the same
 *   way: a topic exchange routes a routing key without `*` or `#` exactly
 *   as a direct one does. Declare it passively (or accept either type).
 * - Routing key: the channel path exactly as in the URL (`/greetings`).
 * - Consumer queue: `warren:<consumer id>:<channel>`, durable, with
 *   `x-expires` (retention), `x-max-length` + `x-overflow: drop-head` and
 *   `x-single-active-consumer: true`, bound to the exchange with the channel
 *   as binding key.
 * - Channel log (logged channels only): `warren:log:<shard>`, a durable
 *   stream queue (`x-queue-type: stream`) with `x-max-age`,
 *   `x-max-length-bytes` and `x-stream-max-segment-size-bytes`, bound with
 *   the routing key of each logged channel hashed to that shard.
 * - Wildcard queue (wildcard routes only): `warren:wildcard:<gateway id>`,
 *   one per gateway process while it has pattern subscribers, not durable,
 *   with `x-expires`, bound to the topic exchange with `#`.
 * - Audit (audited routes only, docs/audit.md): consumer queues of audited
 *   channels carry `x-dead-letter-exchange: warren.audit` (`<exchange>.audit`
 *   for another exchange), a durable `fanout` exchange bound to the durable
 *   queue `warren:audit-inbox`; the gateway moves what arrives there into the
 *   stream `warren:audit` with the `warren-missed-*` headers.
 * - Message properties: `messageId`, `contentType`, `type` (event name),
 *   `timestamp` (seconds), `deliveryMode: 2` (persistent). The body is the
 *   message bytes, untouched.
 */
import { generateMessageId, isContentType, isEventName, isMessageId } from './names.js';
import { WarrenError } from './errors.js';
import { BINARY_CONTENT_TYPE, type WarrenMessage } from './message.js';

export const DEFAULT_EXCHANGE = 'warren';
export const EXCHANGE_TYPE = 'direct';
/** The exchange type a gateway with wildcard routes declares (docs/wildcards.md). */
export const WILDCARD_EXCHANGE_TYPE = 'topic';
/** The binding key of a wildcard queue on the topic exchange: every routing key. */
export const WILDCARD_BINDING_KEY = '#';
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

/**
 * The queue through which one gateway process receives every channel for
 * its wildcard subscribers (docs/wildcards.md): `warren:wildcard:<gateway id>`.
 */
export function wildcardQueueName(gatewayId: string): string {
  return `${QUEUE_PREFIX}wildcard:${gatewayId}`;
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
  /**
   * Where RabbitMQ dead-letters what the queue drops (overflow, `maxlen`):
   * the audit exchange of an audited channel. @default none: dropped silently
   */
  deadLetterExchange?: string;
}

/** The `arguments` table of a consumer queue's declaration. */
export function consumerQueueArguments(limits: ConsumerQueueLimits): Record<string, unknown> {
  const common = { 'x-expires': limits.expiresMs, 'x-max-length': limits.maxLength, 'x-overflow': 'drop-head' };
  // RabbitMQ refuses basic.get (the first step of a long-poll) on a quorum
  // queue with a single active consumer: there, one reader per consumer is
  // kept by the gateway process (takeover), not by the queue.
  const audit = limits.deadLetterExchange === undefined ? {} : { 'x-dead-letter-exchange': limits.deadLetterExchange };
  if (limits.queueType === 'quorum') return { 'x-queue-type': 'quorum', ...common, ...audit };
  return { ...common, 'x-single-active-consumer': true, ...audit };
}

/** The consumer id and channel a consumer queue's name encodes, or `undefined` for another queue. */
export function parseConsumerQueueName(queue: string): { consumerId: string; channel: string } | undefined {
  if (!queue.startsWith(QUEUE_PREFIX)) return undefined;
  const rest = queue.slice(QUEUE_PREFIX.length);
  const colon = rest.indexOf(':');
  if (colon <= 0) return undefined;
  const consumerId = rest.slice(0, colon);
  const channel = rest.slice(colon + 1);
  if (!/^[A-Za-z0-9_-]+$/.test(consumerId) || !channel.startsWith('/')) return undefined;
  return { consumerId, channel };
}

/** The dead-letter exchange of audited consumer queues: `warren.audit` (`<exchange>.audit` for another exchange). */
export function auditExchangeName(exchange: string = DEFAULT_EXCHANGE): string {
  return `${exchange}.audit`;
}

/**
 * The durable queue bound to the audit exchange (`warren:audit-inbox`;
 * `warren:audit-inbox:<exchange>` for another exchange). RabbitMQ 3.10 does
 * not dead-letter into a stream, so dead letters land here first.
 */
export function auditInboxName(exchange: string = DEFAULT_EXCHANGE): string {
  return exchange === DEFAULT_EXCHANGE ? `${QUEUE_PREFIX}audit-inbox` : `${QUEUE_PREFIX}audit-inbox:${exchange}`;
}

/** The stream the app reads the audit from (`warren:audit`; `warren:audit:<exchange>` for another exchange). */
export function auditLogName(exchange: string = DEFAULT_EXCHANGE): string {
  return exchange === DEFAULT_EXCHANGE ? `${QUEUE_PREFIX}audit` : `${QUEUE_PREFIX}audit:${exchange}`;
}

/** Arguments of the audit inbox: durable, bounded (oldest dropped first), one reader at a time (order kept). */
export function auditInboxArguments(maxLength: number): Record<string, unknown> {
  return { 'x-max-length': maxLength, 'x-overflow': 'drop-head', 'x-single-active-consumer': true };
}

/** Why a queue dropped a message: RabbitMQ's dead-letter reasons. */
export type DeathReason = 'maxlen' | 'expired' | 'rejected' | 'delivery_limit';

/** What RabbitMQ says about a dead-lettered message (its first death). */
export interface Death {
  /** The queue that dropped it. */
  queue: string;
  reason: DeathReason;
  /** When (ms since the epoch; RabbitMQ gives whole seconds). */
  time: number;
  /** The channel it was published to (its routing key). */
  channel: string;
}

/** Headers of an entry of the audit stream: the death, as the gateway copies it from `x-first-death-*` and `x-death`. */
export const MISSED_HEADERS = {
  queue: 'warren-missed-queue',
  reason: 'warren-missed-reason',
  time: 'warren-missed-time',
  channel: 'warren-missed-channel',
} as const;

const REASONS: readonly string[] = ['maxlen', 'expired', 'rejected', 'delivery_limit'];

/**
 * The death of a message from its AMQP headers: the gateway's
 * `warren-missed-*` (audit stream), else RabbitMQ's `x-first-death-*` and
 * `x-death` (a dead letter). `undefined` for a message that did not die.
 */
export function deathFromHeaders(headers: Record<string, unknown> | undefined, routingKey: string): Death | undefined {
  if (headers === undefined) return undefined;
  const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : Buffer.isBuffer(v) ? v.toString('utf8') : undefined);
  const own = str(headers[MISSED_HEADERS.reason]);
  if (own !== undefined) {
    const queue = str(headers[MISSED_HEADERS.queue]);
    const channel = str(headers[MISSED_HEADERS.channel]);
    const time = Number(headers[MISSED_HEADERS.time]);
    if (queue === undefined || channel === undefined || !REASONS.includes(own) || !Number.isFinite(time)) return undefined;
    return { queue, reason: own as DeathReason, time, channel };
  }
  const reason = str(headers['x-first-death-reason']);
  const queue = str(headers['x-first-death-queue']);
  if (reason === undefined || queue === undefined || !REASONS.includes(reason)) return undefined;
  const deaths = Array.isArray(headers['x-death']) ? (headers['x-death'] as Record<string, unknown>[]) : [];
  const first = deaths.find((d) => str(d.queue) === queue && str(d.reason) === reason);
  const stamp = first?.time as { value?: unknown } | number | undefined;
  const seconds = typeof stamp === 'number' ? stamp : Number(stamp?.value);
  const keys = Array.isArray(first?.['routing-keys']) ? (first['routing-keys'] as unknown[]) : [];
  return {
    queue,
    reason: reason as DeathReason,
    time: Number.isFinite(seconds) ? seconds * 1000 : Date.now(),
    channel: str(keys[0]) ?? routingKey,
  };
}

/** The headers that carry `death` into the audit stream. */
export function deathHeaders(death: Death): Record<string, unknown> {
  return {
    [MISSED_HEADERS.queue]: death.queue,
    [MISSED_HEADERS.reason]: death.reason,
    [MISSED_HEADERS.time]: death.time,
    [MISSED_HEADERS.channel]: death.channel,
  };
}

/** The subset of AMQP basic properties Warren writes and reads. */
export interface WireProperties {
  messageId?: string | undefined;
  contentType?: string | undefined;
  type?: string | undefined;
  timestamp?: number | undefined;
  deliveryMode?: number | undefined;
  persistent?: boolean | undefined;
  headers?: Record<string, unknown> | undefined;
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
