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
    const origin = req.headers.origin;
    if (origin === undefined) return;
    res.appendHeader('vary', 'Origin');
    if (this.origins.has(origin)) {
      res.setHeader('access-control-allow-origin', origin);
      res.setHeader('access-control-allow-credentials', 'true');
    } else if (this.any) {
      res.setHeader('access-control-allow-origin', '*');
    } else {
      return;
    }
    res.setHeader('access-control-expose-headers', EXPOSED_HEADERS);
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
