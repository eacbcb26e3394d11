import type { IncomingMessage, ServerResponse } from 'node:http';
import { HEADERS } from '@warren/protocol';
import { parseList } from './options.js';

/** Request headers a cross-origin page may send to a channel. */
const ALLOWED_HEADERS = [HEADERS.consumerId, 'last-event-id'].join(', ');
/** Response headers a cross-origin page may read. */
const EXPOSED_HEADERS = [HEADERS.consumerId, HEADERS.messageId, HEADERS.event].join(', ');

/**
 * Cross-origin reads of channels (EventSource, long-poll with fetch): an
 * exact-origin allowlist, with credentials so that the consumer cookie
 * travels; or `*`, any origin, without credentials. Only `GET` on channel
 * paths is ever allowed; the publish endpoint never answers CORS.
 */
export class Cors {
  private readonly origins: Set<string>;
  private readonly any: boolean;

  constructor(setting: string | undefined) {
    const list = setting === undefined ? [] : parseList(setting);
    this.any = list.includes('*');
    this.origins = new Set(list.filter((o) => o !== '*'));
  }

  /** `true` when an allowlist was configured. */
  get configured(): boolean {
    return this.any || this.origins.size > 0;
  }

  /** `true` when `origin` is on the exact list (`*` is not: it never covers a WebSocket). */
  allows(origin: string): boolean {
    return this.origins.has(origin);
  }

  /** Adds the CORS headers a response to `req` should carry, if its origin is allowed. */
  apply(req: IncomingMessage, res: ServerResponse): void {
    const headers = this.headersFor(req);
    if (headers === undefined) return;
    for (const [name, value] of Object.entries(headers)) {
      if (name === 'vary') res.appendHeader(name, value);
      else res.setHeader(name, value);
    }
  }

  /**
   * The CORS headers of a response to `req`, as an object (for a stream's
   * head, written once): `Vary: Origin` for any request with an `Origin`,
   * and the grants if that origin is allowed. `undefined` without `Origin`.
   */
  headersFor(req: IncomingMessage): Record<string, string> | undefined {
    const origin = req.headers.origin;
    if (origin === undefined) return undefined;
    if (this.origins.has(origin)) {
      return {
        vary: 'Origin',
        'access-control-allow-origin': origin,
        'access-control-allow-credentials': 'true',
        'access-control-expose-headers': EXPOSED_HEADERS,
      };
    }
    if (this.any) return { vary: 'Origin', 'access-control-allow-origin': '*', 'access-control-expose-headers': EXPOSED_HEADERS };
    return { vary: 'Origin' };
  }

  /** Answers a preflight (`OPTIONS`) for a channel: 204, with the grants if the origin is allowed. */
  preflight(req: IncomingMessage, res: ServerResponse): void {
    this.apply(req, res);
    if (res.hasHeader('access-control-allow-origin')) {
      res.setHeader('access-control-allow-methods', 'GET');
      res.setHeader('access-control-allow-headers', ALLOWED_HEADERS);
      res.setHeader('access-control-max-age', '600');
    }
    res.writeHead(204, { allow: 'GET, OPTIONS' }).end();
  }
}
