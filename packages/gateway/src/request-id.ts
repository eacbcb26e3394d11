import { randomUUID } from 'node:crypto';
import type { TrustedProxies } from './proxies.js';
import type { RequestView } from './request-view.js';

/** The header that carries a request's id, both ways and to the application. */
export const REQUEST_ID_HEADER = 'x-request-id';

/** Longest request id taken from a proxy (a UUID is 36; Heroku's router allows 200, nginx's `$request_id` is 32). */
export const MAX_REQUEST_ID_LENGTH = 128;

const SAFE = /^[A-Za-z0-9._~:@/+=-]+$/;

/** Where a request's id is kept once chosen (a symbol: no field on every request, and no clash with the app's). */
const ID = Symbol('warren.requestId');

type WithId = RequestView & { [ID]?: string };

/**
 * An `X-Request-Id` as a proxy sent it, if it is one to keep: 1 to
 * {@link MAX_REQUEST_ID_LENGTH} characters of letters, digits and
 * `. _ ~ : @ / + = -` (a UUID, a base64 or hex token, nginx's and Envoy's
 * ids). Anything else (sent twice, spaces, quotes, control characters) is
 * `undefined`: the gateway makes its own rather than log or forward it.
 */
export function parseRequestId(value: string | string[] | undefined): string | undefined {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_REQUEST_ID_LENGTH) return undefined;
  return SAFE.test(value) ? value : undefined;
}

/**
 * The id of `req`, chosen once: a trusted proxy's valid `X-Request-Id`,
 * else a new random UUID. A client that is not one of `--trusted-proxies`
 * never picks its own id (it could otherwise forge lines in the app's
 * logs, or pass itself off as another request).
 */
export function requestId(req: RequestView, trusted: TrustedProxies): string {
  const known = (req as WithId)[ID];
  if (known !== undefined) return known;
  const fromProxy = trusted.has(req.socket.remoteAddress ?? '') ? parseRequestId(req.headers[REQUEST_ID_HEADER]) : undefined;
  const id = fromProxy ?? flatUuid();
  (req as WithId)[ID] = id;
  return id;
}

/** Gives `to` the id chosen for `from` (if one was): the same id in every later call about the request. */
export function keepRequestId<T extends RequestView>(from: RequestView, to: T): T {
  const known = (from as WithId)[ID];
  if (known !== undefined) (to as WithId)[ID] = known;
  return to;
}

/**
 * A random UUID as one flat string. `randomUUID()` joins its 36 characters
 * piece by piece, and V8 keeps such a string as a tree of a dozen
 * concatenations (about 400 bytes): a request that stays open (an SSE
 * stream) would hold that tree for its whole life.
 */
function flatUuid(): string {
  return Buffer.from(randomUUID(), 'latin1').toString('latin1');
}
