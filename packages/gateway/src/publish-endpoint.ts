import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  BATCH_CONTENT_TYPE,
  BINARY_CONTENT_TYPE,
  encodeMessage,
  HEADERS,
  parseChannel,
  parseContentType,
  parseEventName,
  parseMessageId,
  generateMessageId,
  WarrenError,
  type MessageData,
  type WarrenMessage,
} from '@warren/protocol';
import type { Broker } from './broker/broker.js';
import { publishCounted, type RouteCounter } from './broker/route-count.js';
import { header, readBody, sendJson } from './http.js';
import type { Logger } from './logger.js';

/** Most channels one HTTP publish may name. */
export const MAX_PUBLISH_CHANNELS = 32;

/**
 * Headers that only browsers send: `Origin` (on every POST) and the
 * `Sec-Fetch-*` metadata (`Sec-Fetch-Site` on every request). Not
 * `Sec-Fetch-Mode`: server-side `fetch` (Node, Deno, Bun) sends that one too,
 * and backends must be able to publish with it.
 */
function browserHeader(req: IncomingMessage): string | undefined {
  for (const name of Object.keys(req.headers)) {
    if (name === 'origin' || (name.startsWith('sec-fetch-') && name !== 'sec-fetch-mode')) return name;
  }
  return undefined;
}

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();
let known: { token: string; digest: Buffer } | undefined;

/** The digest of the gateway's token, computed once (every publish request compares with it). */
function tokenDigest(token: string): Buffer {
  if (known?.token !== token) known = { token, digest: digest(token) };
  return known.digest;
}

/**
 * Checks the publish token in constant time.
 * @throws WarrenError `PUBLISH_DISABLED`, `FORBIDDEN_FROM_BROWSER`, `UNAUTHORIZED`
 */
export function authorizePublisher(req: IncomingMessage, token: string | undefined): void {
  if (token === undefined) throw new WarrenError('PUBLISH_DISABLED', 'HTTP publishing is off: start the gateway with a publish token');
  const browser = browserHeader(req);
  if (browser !== undefined) {
    throw new WarrenError('FORBIDDEN_FROM_BROWSER', `the publish endpoint is for servers; requests with a ${browser} header are refused`);
  }
  const auth = header(req, 'authorization') ?? '';
  const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
  if (m === null || !timingSafeEqual(digest(m[1]!), tokenDigest(token))) {
    throw new WarrenError('UNAUTHORIZED', 'missing or wrong publish token (Authorization: Bearer <token>)');
  }
}

/**
 * What a published message is answered with: its id, its channels, which of
 * them no queue or log took, and, when the gateway can count them, how many
 * queues and logs took it.
 */
export interface PublishAnswer {
  id: string;
  channels: string[];
  /** `true` when at least one channel's copy reached a queue or a log. */
  routed: boolean;
  /** The channels whose copy reached no queue and no log, in the order of `channels`. */
  unrouted: string[];
  /**
   * The queues and logs the copies reached, all channels together; absent
   * when unknown (RabbitMQ without `--management-url`, or its API failing).
   */
  queues?: number;
  /** The same per channel: 0 exactly for the channels in `unrouted`. Absent with `queues`. */
  routes?: Record<string, number>;
}

/** The bounds of the publish endpoints. */
export interface PublishLimits {
  maxMessageBytes: number;
  batchMaxMessages: number;
  batchMaxBytes: number;
}

type Prepare = (channel: string) => Promise<unknown>;

/** How the publish endpoints reach the broker. */
export interface PublishVia {
  broker: Broker;
  /** Makes a channel ready for a publish (binds a logged channel to its log). */
  prepare?: Prepare;
  /** Counts the queues and logs a publish reached; none: no count in the answer. */
  counter?: RouteCounter | undefined;
}

/** Publishes `message` to each of `channels` (checked, without duplicates) and waits for every confirm. */
export async function publishMessage(via: PublishVia, channels: string[], message: WarrenMessage): Promise<PublishAnswer> {
  const results = await Promise.all(
    channels.map(async (channel) => {
      await via.prepare?.(channel);
      return publishCounted(via.broker, via.counter, channel, message);
    }),
  );
  const unrouted = channels.filter((_, i) => !results[i]!.routed);
  const answer: PublishAnswer = { id: message.id, channels, routed: unrouted.length < channels.length, unrouted };
  if (results.every((r) => r.queues !== undefined)) {
    const routes: Record<string, number> = {};
    let queues = 0;
    for (const [i, channel] of channels.entries()) {
      routes[channel] = results[i]!.queues!;
      queues += routes[channel];
    }
    answer.queues = queues;
    answer.routes = routes;
  }
  return answer;
}

/** The channels of one publish, checked: 1 to {@link MAX_PUBLISH_CHANNELS}, duplicates dropped. */
function checkChannels(channels: readonly string[]): string[] {
  if (channels.length === 0) throw new WarrenError('INVALID_CHANNEL', 'name at least one channel: ?channel=/greetings');
  if (channels.length > MAX_PUBLISH_CHANNELS)
    throw new WarrenError('INVALID_CHANNEL', `at most ${MAX_PUBLISH_CHANNELS} channels per publish`);
  return [...new Set(channels.map(parseChannel))];
}

/**
 * `POST /_warren/publish?channel=/a[&channel=/b…]`: the body is the message,
 * `Content-Type` its type, optional `Message-Id` and `Warren-Event` headers.
 * Answers `200 {"id", "channels", "routed", "unrouted"}` once the broker
 * confirmed every channel: `unrouted` the channels no queue or log took;
 * with `"queues"` and `"routes"` too when `via.counter` gives a count.
 * Pipelined requests on one connection are handled at once, each waiting
 * for its own confirms; Node writes their answers in request order.
 */
export async function handlePublish(
  req: IncomingMessage,
  res: ServerResponse,
  query: URLSearchParams,
  via: PublishVia,
  token: string | undefined,
  maxMessageBytes: number,
): Promise<void> {
  authorizePublisher(req, token);
  const unique = checkChannels(query.getAll('channel'));
  const id = header(req, HEADERS.messageId);
  const event = header(req, HEADERS.event);
  const contentType = header(req, 'content-type');
  const message: WarrenMessage = {
    id: id === undefined ? generateMessageId() : parseMessageId(id),
    contentType: contentType === undefined ? BINARY_CONTENT_TYPE : parseContentType(contentType),
    body: Buffer.alloc(0),
    publishedAt: Date.now(),
  };
  if (event !== undefined) message.event = parseEventName(event);
  message.body = await readBody(req, maxMessageBytes);
  if (!via.broker.ready) throw new WarrenError('BROKER_UNAVAILABLE', 'the broker is not connected');
  sendJson(res, 200, await publishMessage(via, unique, message));
}

/** One message of a batch: what its line says, checked. */
interface BatchEntry {
  channels: string[];
  message: WarrenMessage;
}

/** What a batch answers for one message: as a single publish, or the error that message met. */
export type BatchResult = PublishAnswer | { id: string; channels: string[]; error: { code: string; message: string } };

const LINE_FIELDS = new Set(['channel', 'channels', 'data', 'encoding', 'id', 'event', 'contentType']);
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** A coded error of line `n`: the same code, the line named in the message. */
function onLine(n: number, err: unknown): unknown {
  return err instanceof WarrenError ? new WarrenError(err.code, `line ${n}: ${err.message}`) : err;
}

/**
 * Reads one line of a batch: a JSON object with `channel` (a string) or
 * `channels` (an array), `data`, and optional `encoding`, `id`, `event`,
 * `contentType`. `data` as a string is the message's text
 * (`text/plain; charset=utf-8`), with `encoding: "base64"` its bytes
 * (`application/octet-stream`); any other JSON value is sent as JSON
 * (`application/json`). `contentType` overrides the derived type.
 * @throws WarrenError `INVALID_BATCH`, `INVALID_CHANNEL`, `INVALID_MESSAGE_ID`, `INVALID_EVENT_NAME`, `INVALID_CONTENT_TYPE`, `MESSAGE_TOO_LARGE`
 */
export function parseBatchLine(text: string, n: number, maxMessageBytes: number): BatchEntry {
  let line: unknown;
  try {
    line = JSON.parse(text);
  } catch {
    throw new WarrenError('INVALID_BATCH', `line ${n}: not JSON`);
  }
  if (typeof line !== 'object' || line === null || Array.isArray(line))
    throw new WarrenError('INVALID_BATCH', `line ${n}: not a JSON object`);
  const fields = line as Record<string, unknown>;
  for (const key of Object.keys(fields)) {
    if (!LINE_FIELDS.has(key)) throw new WarrenError('INVALID_BATCH', `line ${n}: unknown field ${JSON.stringify(key.slice(0, 64))}`);
  }
  const { channel, channels, data, encoding, id, event, contentType } = fields;
  if ((channel === undefined) === (channels === undefined))
    throw new WarrenError('INVALID_BATCH', `line ${n}: give either "channel" (a string) or "channels" (an array)`);
  const names = channel === undefined ? channels : [channel];
  if (!Array.isArray(names) || !names.every((c) => typeof c === 'string'))
    throw new WarrenError('INVALID_BATCH', `line ${n}: "channel" is a string, "channels" an array of strings`);
  if (data === undefined) throw new WarrenError('INVALID_BATCH', `line ${n}: no "data"`);
  for (const [name, value] of [
    ['id', id],
    ['event', event],
    ['contentType', contentType],
  ] as const) {
    if (value !== undefined && typeof value !== 'string') throw new WarrenError('INVALID_BATCH', `line ${n}: "${name}" must be a string`);
  }
  let body: MessageData = data as MessageData;
  if (encoding !== undefined) {
    if (encoding !== 'base64') throw new WarrenError('INVALID_BATCH', `line ${n}: "encoding" can only be "base64"`);
    if (typeof data !== 'string' || !BASE64.test(data)) throw new WarrenError('INVALID_BATCH', `line ${n}: "data" is not base64`);
    body = Buffer.from(data, 'base64');
  }
  try {
    const entry = {
      channels: checkChannels(names as string[]),
      message: encodeMessage(body, {
        ...(id === undefined ? {} : { id: id as string }),
        ...(event === undefined ? {} : { event: event as string }),
        ...(contentType === undefined ? {} : { contentType: contentType as string }),
      }),
    };
    if (entry.message.body.length > maxMessageBytes) {
      throw new WarrenError('MESSAGE_TOO_LARGE', `the message is ${entry.message.body.length} bytes; at most ${maxMessageBytes}`);
    }
    return entry;
  } catch (err) {
    throw onLine(n, err);
  }
}

/**
 * Splits a batch body into its entries, every line checked before anything
 * is published: a batch is refused whole or taken whole. Blank lines are
 * skipped; line numbers count them.
 * @throws WarrenError `INVALID_BATCH`, `BATCH_TOO_LARGE`, and a line's own code (see {@link parseBatchLine})
 */
export function parseBatch(body: Buffer, limits: PublishLimits): BatchEntry[] {
  const entries: BatchEntry[] = [];
  const text = body.toString('utf8');
  let n = 0;
  for (let start = 0; start < text.length;) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    n++;
    const line = text.slice(start, end);
    start = end + 1;
    if (line.trim() === '') continue;
    if (entries.length === limits.batchMaxMessages) {
      throw new WarrenError('BATCH_TOO_LARGE', `a batch holds at most ${limits.batchMaxMessages} messages`);
    }
    entries.push(parseBatchLine(line, n, limits.maxMessageBytes));
  }
  if (entries.length === 0) throw new WarrenError('INVALID_BATCH', 'the batch holds no message');
  return entries;
}

/**
 * `POST /_warren/publish/batch` with `Content-Type: application/x-ndjson`:
 * one message a line ({@link parseBatchLine}). Every line is checked first;
 * then the messages are published in order, all at once, and the answer
 * `200 {"results": […], "failed": n}` comes once every confirm did: one
 * result a message, in order, as a single publish answers, or with an
 * `error` (`{code, message}`) for a message the broker did not confirm.
 */
export async function handlePublishBatch(
  req: IncomingMessage,
  res: ServerResponse,
  via: PublishVia,
  token: string | undefined,
  limits: PublishLimits,
  log: Logger,
): Promise<void> {
  authorizePublisher(req, token);
  const type = header(req, 'content-type')?.split(';')[0]?.trim().toLowerCase();
  if (type !== BATCH_CONTENT_TYPE) {
    throw new WarrenError('INVALID_BATCH', `a batch is ${BATCH_CONTENT_TYPE}: one JSON object a line`);
  }
  let body: Buffer;
  try {
    body = await readBody(req, limits.batchMaxBytes);
  } catch (err) {
    if (err instanceof WarrenError && err.code === 'MESSAGE_TOO_LARGE') {
      throw new WarrenError('BATCH_TOO_LARGE', `a batch is at most ${limits.batchMaxBytes} bytes`);
    }
    throw err;
  }
  const entries = parseBatch(body, limits);
  if (!via.broker.ready) throw new WarrenError('BROKER_UNAVAILABLE', 'the broker is not connected');
  const now = Date.now();
  let failed = 0;
  const results = await Promise.all(
    entries.map(({ channels, message }): Promise<BatchResult> => {
      message.publishedAt = now;
      return publishMessage(via, channels, message).catch((err: unknown) => {
        failed++;
        if (!(err instanceof WarrenError) || err.status === null) {
          log.error('unexpected error in a publish batch', { error: err instanceof Error ? err.stack : String(err) });
          return { id: message.id, channels, error: { code: 'INTERNAL_ERROR', message: 'internal error' } };
        }
        return { id: message.id, channels, error: { code: err.code, message: err.message } };
      });
    }),
  );
  sendJson(res, 200, { results, failed });
}
