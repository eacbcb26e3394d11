import { Pool } from 'undici';
import { HEADERS, isErrorCode, PATHS, WarrenError, type WarrenMessage } from '@warren/protocol';
import type { PublishTransport, Sent } from './transport.js';

/**
 * Publishes through a gateway's `POST /_warren/publish` endpoint: one
 * request names every channel, and the gateway answers once the broker
 * confirmed all of them. Up to 8 connections with 8 requests pipelined on
 * each: the gateway handles pipelined publishes at once.
 */
export class HttpTransport implements PublishTransport {
  private readonly pool: Pool;

  constructor(
    url: URL,
    private readonly token: string | undefined,
    private readonly timeoutMs: number,
  ) {
    this.pool = new Pool(url.origin, { connections: 8, pipelining: 8 });
  }

  async send(channels: readonly string[], message: WarrenMessage): Promise<Sent> {
    const query = new URLSearchParams();
    for (const channel of channels) query.append('channel', channel);
    const headers: Record<string, string> = {
      'content-type': message.contentType,
      [HEADERS.messageId]: message.id,
    };
    if (message.event !== undefined) headers[HEADERS.event] = message.event;
    if (this.token !== undefined) headers.authorization = `Bearer ${this.token}`;
    let status: number;
    let text: string;
    try {
      const res = await this.pool.request({
        path: `${PATHS.publish}?${query}`,
        method: 'POST',
        // undici pipelines a request only when it may send it again
        // (`idempotent`) and when it does not hold the pipeline (`blocking`,
        // true by default for all but HEAD). A publish may be sent again: its
        // message id travels with it, and delivery is at least once. When a
        // connection drops, undici fails the request at the head of its
        // pipeline and sends the ones behind it again on a new connection.
        idempotent: true,
        blocking: false,
        headers,
        body: message.body,
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
      });
      status = res.statusCode;
      text = await res.body.text();
    } catch (err) {
      throw new WarrenError('GATEWAY_UNREACHABLE', `cannot reach the gateway: ${(err as Error).message}`, { cause: err });
    }
    let body: { code?: unknown; message?: unknown; unrouted?: unknown; routes?: unknown } = {};
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      // not JSON: reported below
    }
    if (status === 200) {
      const unrouted = body.unrouted;
      if (Array.isArray(unrouted) && unrouted.every((c) => typeof c === 'string' && channels.includes(c))) {
        const routes = routesOf(body.routes, channels);
        return routes === undefined ? { unrouted: unrouted as string[] } : { unrouted: unrouted as string[], routes };
      }
      throw new WarrenError(
        'GATEWAY_ERROR',
        'the gateway confirmed the message without saying how it was routed (a gateway older than this producer?)',
      );
    }
    if (isErrorCode(body.code)) {
      throw new WarrenError(body.code, typeof body.message === 'string' ? body.message : `gateway answered ${status}`);
    }
    throw new WarrenError('GATEWAY_ERROR', `gateway answered ${status}`);
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}

/**
 * The gateway's count per channel (`"routes"`), when it gave one for every
 * channel. One it did not give, or gave malformed, is left out: the message
 * was confirmed all the same, and the count is an extra.
 */
function routesOf(value: unknown, channels: readonly string[]): Record<string, number> | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const given = value as Record<string, unknown>;
  const routes: Record<string, number> = {};
  for (const channel of channels) {
    const n = given[channel];
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) return undefined;
    routes[channel] = n;
  }
  return routes;
}
