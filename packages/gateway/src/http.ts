import { STATUS_CODES, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
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
  const error = answerable(err, log);
  const body: ErrorBody = error.toJSON();
  sendJson(res, error.status!, body, { ...headers, ...errorHeaders(error) });
}

/** `err` as the error the client is told: a coded one as it is, anything else a logged 500. */
function answerable(err: unknown, log: Logger): WarrenError {
  if (err instanceof WarrenError && err.status !== null) return err;
  log.error('unexpected error', { error: err instanceof Error ? err.stack : String(err) });
  return new WarrenError('INTERNAL_ERROR', 'internal error');
}

/** The headers an error answer carries besides its body: when to retry, how to authenticate. */
function errorHeaders(error: WarrenError): OutgoingHttpHeaders {
  switch (error.code) {
    case 'BROKER_UNAVAILABLE':
    case 'BROKER_TIMEOUT':
      return { 'retry-after': String(RETRY_AFTER_SECONDS) };
    case 'QUEUE_BUDGET_EXCEEDED':
    case 'QUEUE_LIMIT_REACHED':
      // One token of the queue budget comes back within a minute / budget; a few seconds is the honest hint.
      return { 'retry-after': '5' };
    case 'UNAUTHORIZED':
      return { 'www-authenticate': 'Bearer realm="warren"' };
    default:
      return {};
  }
}

/**
 * Refuses a request on its raw socket (a WebSocket handshake, `CONNECT`, a
 * request Node could not parse): the status line, the error's headers (and
 * `headers`) and its JSON body, then the socket is ended. The one place
 * that writes raw HTTP; everything else answers through a `ServerResponse`.
 * @returns the status written, `undefined` when the client had left
 */
export function abortHandshake(socket: Duplex, err: unknown, log: Logger, headers: Record<string, string> = {}): number | undefined {
  socket.on('error', () => undefined);
  if (!socket.writable) {
    socket.destroy();
    return undefined;
  }
  const error = answerable(err, log);
  const body = JSON.stringify(error.toJSON());
  const lines = [`HTTP/1.1 ${error.status} ${STATUS_CODES[error.status!] ?? error.code}`, 'content-type: application/json; charset=utf-8'];
  for (const [name, value] of Object.entries({ ...headers, ...errorHeaders(error) })) lines.push(`${name}: ${String(value)}`);
  lines.push(`content-length: ${Buffer.byteLength(body)}`, 'connection: close');
  socket.end(`${lines.join('\r\n')}\r\n\r\n${body}`);
  return error.status!;
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
