import type { IncomingMessage } from 'node:http';
import { CONSUMER_COOKIE, CONSUMER_QUERY, generateConsumerId, HEADERS, parseConsumerId } from '@warren/protocol';

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
  const header = req.headers[HEADERS.consumerId];
  if (header !== undefined) return { id: parseConsumerId(Array.isArray(header) ? header.join(',') : header), assigned: false };
  const fromQuery = query.getAll(CONSUMER_QUERY);
  if (fromQuery.length > 0) return { id: parseConsumerId(fromQuery.length === 1 ? fromQuery[0] : fromQuery.join(',')), assigned: false };
  const cookie = readCookie(req.headers.cookie, CONSUMER_COOKIE);
  if (cookie !== undefined) {
    try {
      return { id: parseConsumerId(cookie), assigned: false };
    } catch {
      // fall through: assign a fresh id
    }
  }
  return { id: generateConsumerId(), assigned: true };
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
