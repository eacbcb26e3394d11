import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  BINARY_CONTENT_TYPE,
  HEADERS,
  parseChannel,
  parseContentType,
  parseEventName,
  parseMessageId,
  generateMessageId,
  WarrenError,
  type WarrenMessage,
} from '@warren/protocol';
import type { Broker } from './broker/broker.js';
import { header, readBody, sendJson } from './http.js';

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
  const digest = (s: string): Buffer => createHash('sha256').update(s).digest();
  if (m === null || !timingSafeEqual(digest(m[1]!), digest(token))) {
    throw new WarrenError('UNAUTHORIZED', 'missing or wrong publish token (Authorization: Bearer <token>)');
  }
}

/**
 * `POST /_warren/publish?channel=/a[&channel=/b…]`: the body is the message,
 * `Content-Type` its type, optional `Message-Id` and `Warren-Event` headers.
 * Answers `200 {"id", "channels", "routed", "unrouted"}` once the broker
 * confirmed every channel: `unrouted` the channels no queue or log took.
 */
export async function handlePublish(
  req: IncomingMessage,
  res: ServerResponse,
  query: URLSearchParams,
  broker: Broker,
  token: string | undefined,
  maxMessageBytes: number,
  prepare: (channel: string) => Promise<unknown> = () => Promise.resolve(),
): Promise<void> {
  authorizePublisher(req, token);
  const channels = query.getAll('channel');
  if (channels.length === 0) throw new WarrenError('INVALID_CHANNEL', 'name at least one channel: ?channel=/greetings');
  if (channels.length > MAX_PUBLISH_CHANNELS)
    throw new WarrenError('INVALID_CHANNEL', `at most ${MAX_PUBLISH_CHANNELS} channels per publish`);
  const unique = [...new Set(channels.map(parseChannel))];
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
  if (!broker.ready) throw new WarrenError('BROKER_UNAVAILABLE', 'the broker is not connected');
  const routed = await Promise.all(
    unique.map(async (channel) => {
      await prepare(channel);
      return broker.publish(channel, message);
    }),
  );
  const unrouted = unique.filter((_, i) => !routed[i]);
  sendJson(res, 200, { id: message.id, channels: unique, routed: unrouted.length < unique.length, unrouted });
}
