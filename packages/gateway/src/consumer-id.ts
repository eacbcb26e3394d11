import type { IncomingMessage } from 'node:http';
import { CONSUMER_COOKIE, CONSUMER_QUERY, generateConsumerId, HEADERS, parseConsumerId, parseMessageId } from '@warren/protocol';

export interface ConsumerIdentity {
  id: string;
  /** `true` when the gateway made the id up for this request. */
  assigned: boolean;
}

/**
 * Who is polling: the `Consumer-Id` header, else the `consumer_id` query
 * parameter, else the `warren_consumer_id` cookie, else a new id. A header or
 * query value that breaks the rules is an error (the client meant it); a bad
 * cookie is ignored (it may be a stale leftover) and a new id is assigned.
 *
 * @throws WarrenError `INVALID_CONSUMER_ID`
 */
export function resolveConsumer(req: IncomingMessage, query: URLSearchParams): ConsumerIdentity {
  const id = findConsumer(req, query);
  return id === undefined ? { id: generateConsumerId(), assigned: true } : { id, assigned: false };
}

/**
 * The consumer id the request names, if any (same sources and rules as
 * {@link resolveConsumer}, without assigning one). Sources without one are
 * anonymous.
 * @throws WarrenError `INVALID_CONSUMER_ID`
 */
export function findConsumer(req: IncomingMessage, query: URLSearchParams): string | undefined {
  const header = req.headers[HEADERS.consumerId];
  if (header !== undefined) return parseConsumerId(Array.isArray(header) ? header.join(',') : header);
  const fromQuery = query.getAll(CONSUMER_QUERY);
  if (fromQuery.length > 0) return parseConsumerId(fromQuery.length === 1 ? fromQuery[0] : fromQuery.join(','));
  const cookie = readCookie(req.headers.cookie, CONSUMER_COOKIE);
  if (cookie === undefined) return undefined;
  try {
    return parseConsumerId(cookie);
  } catch {
    return undefined;
  }
}

/**
 * The id of the last message a reconnecting stream received: the
 * `Last-Event-ID` header (EventSource sends it), else `last_event_id` in the
 * query.
 * @throws WarrenError `INVALID_MESSAGE_ID`
 */
export function findLastEventId(req: IncomingMessage, query: URLSearchParams): string | undefined {
  const header = req.headers['last-event-id'];
  const value = (Array.isArray(header) ? header[0] : header) ?? query.get('last_event_id') ?? undefined;
  return value === undefined || value === '' ? undefined : parseMessageId(value);
}

/** The `Set-Cookie` value that keeps an assigned id for the next request. */
export function consumerCookie(id: string, secure: boolean): string {
  return `${CONSUMER_COOKIE}=${id}; Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax${secure ? '; Secure' : ''}`;
}

function readCookie(header: string | undefined, name: string): string | undefined {
  if (header === undefined || header.length > 8192) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** The namespace of consumer ids nobody vouched for, where the app or tokens vouch for identities (a dot is in no consumer id). */
export const UNVOUCHED_PREFIX = 'anon.';
