import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { WarrenError, type ErrorBody } from '@warren/protocol';
import type { Logger } from './logger.js';

/** Seconds a client should wait before retrying while the broker is away. */
export const RETRY_AFTER_SECONDS = 1;

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: OutgoingHttpHeaders = {}): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, {
    ...headers,
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

/** Answers with `{ code, message }` and the code's status; unknown errors become 500 and are logged. */
export function sendError(res: ServerResponse, err: unknown, log: Logger, headers: OutgoingHttpHeaders = {}): void {
  let error: WarrenError;
  if (err instanceof WarrenError && err.status !== null) {
    error = err;
  } else {
    log.error('unexpected error', { error: err instanceof Error ? err.stack : String(err) });
    error = new WarrenError('INTERNAL_ERROR', 'internal error');
  }
  const extra: OutgoingHttpHeaders = { ...headers };
  if (error.code === 'BROKER_UNAVAILABLE' || error.code === 'BROKER_TIMEOUT') extra['retry-after'] = String(RETRY_AFTER_SECONDS);
  // One token of the queue budget comes back within a minute / budget; a few seconds is the honest hint.
  if (error.code === 'QUEUE_BUDGET_EXCEEDED' || error.code === 'QUEUE_LIMIT_REACHED') extra['retry-after'] = '5';
  if (error.code === 'UNAUTHORIZED') extra['www-authenticate'] = 'Bearer realm="warren"';
  const body: ErrorBody = error.toJSON();
  sendJson(res, error.status!, body, extra);
}

/**
 * Reads a request body of at most `limit` bytes.
 * @throws WarrenError `MESSAGE_TOO_LARGE`
 */
export async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) {
    throw new WarrenError('MESSAGE_TOO_LARGE', `message body is larger than ${limit} bytes`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new WarrenError('MESSAGE_TOO_LARGE', `message body is larger than ${limit} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}

/** The first value of a header that may have been sent several times. */
export function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}
