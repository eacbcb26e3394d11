import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { keepRequestId } from './request-id.js';

/**
 * What the gateway reads of a request after it was answered: some headers
 * and who sent it. An `IncomingMessage` is one; {@link viewOf} makes a
 * small one for a stream that outlives its request.
 */
export interface RequestView {
  readonly headers: IncomingHttpHeaders;
  readonly socket: { readonly remoteAddress?: string | undefined; readonly encrypted?: boolean };
}

/**
 * The headers an open stream still reads: what goes to the application
 * when it is authorized again or forwards a client's message (credentials,
 * origin, user agent), and what says where the client came from.
 */
const KEPT_HEADERS = [
  'authorization',
  'connection',
  'cookie',
  'forwarded',
  'host',
  'origin',
  'user-agent',
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
] as const;

/** The view of no request: for a stream that never asks the application anything. */
export const NO_REQUEST: RequestView = Object.freeze({ headers: Object.freeze({}), socket: Object.freeze({}) });

/**
 * What a stream keeps of `req`: the {@link KEPT_HEADERS} it has, its peer
 * and its request id, and not the request with its header maps and raw
 * headers (a kilobyte and more per idle connection).
 */
export function viewOf(req: IncomingMessage): RequestView {
  const headers: Record<string, string | string[]> = {};
  for (const name of KEPT_HEADERS) {
    const value = req.headers[name];
    if (value !== undefined) headers[name] = value;
  }
  const socket = { remoteAddress: req.socket.remoteAddress, encrypted: (req.socket as { encrypted?: boolean }).encrypted === true };
  return keepRequestId(req, { headers, socket });
}
