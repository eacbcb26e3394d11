import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { WarrenMessage } from '@warren/protocol';
import type { WriteOptions } from '../push/handler.js';
import { corkForTick } from './cork.js';
import { encodeSseData, patternSseEventBytes, sseEventBytes, sseEventChunk } from './encoding.js';
import { Ticker } from './ticker.js';
import type { CloseReason, PushTransport, TransportEvents } from './transport.js';

export interface SseOptions {
  /** Sends the heartbeat comments (one timer for every SSE response; see {@link sseHeartbeats}). */
  heartbeats: Ticker<SseTransport>;
  retryMs: number;
}

/** The shared heartbeat of SSE responses: a `: ping` comment every `heartbeatMs`. */
export function sseHeartbeats(heartbeatMs: number): Ticker<SseTransport> {
  return new Ticker<SseTransport>(heartbeatMs, (sse) => sse.ping());
}

/** The transport of a response, for the one `close` listener all responses share. */
const TRANSPORT = Symbol('warren.sse');
type TaggedResponse = ServerResponse & { [TRANSPORT]?: SseTransport };

function onResponseClose(this: TaggedResponse): void {
  this[TRANSPORT]?.gone();
}

/**
 * Node keeps the head it wrote (`_header`, a field of `OutgoingMessage`
 * since Node's first releases) for the response's life, as V8 built it:
 * a tree of some thirty joined strings, about 900 bytes. Reading one
 * character makes V8 flatten the tree in place into one string of the head's
 * 250-odd bytes; the value is the same.
 */
function flattenHead(res: ServerResponse): void {
  const head = (res as { _header?: unknown })._header;
  if (typeof head === 'string' && head.length > 0) head.charCodeAt(0);
}

/** What {@link chunkedSocket} reads of a response: `OutgoingMessage` fields Node has kept since its first releases. */
type ResponseState = ServerResponse & { chunkedEncoding?: boolean; outputData?: unknown[] };

/**
 * The socket of a chunked response that may be written to directly, or
 * `null` to go through `res.write`. A chunk written to the socket lands
 * exactly where `res.write` would put it only while the response is the
 * socket's current message (`socket._httpMessage`), its head is sent, and
 * nothing waits in the response's own buffer (`outputData`); an HTTP/1.0
 * client gets no chunked encoding at all. Any field missing (another Node)
 * means `res.write`.
 */
function chunkedSocket(res: ResponseState): Socket | null {
  const socket = res.socket as (Socket & { _httpMessage?: unknown }) | null;
  if (socket === null || res.chunkedEncoding !== true || !res.headersSent || socket._httpMessage !== res) return null;
  return Array.isArray(res.outputData) && res.outputData.length === 0 ? socket : null;
}

/**
 * A Server-Sent Events response as a {@link PushTransport}. Headers for proxies
 * and caches (`no-cache`, `X-Accel-Buffering: no`, never compressed), a
 * `retry:` hint, and a comment every `heartbeatMs` so that idle connections
 * stay open through proxies and dead ones are found.
 */
export class SseTransport implements PushTransport {
  private closed = false;
  /** Something was written since the last heartbeat. */
  private active = false;
  private events: TransportEvents | undefined;

  constructor(
    private readonly res: ServerResponse,
    headers: OutgoingHttpHeaders,
    private readonly options: SseOptions,
  ) {
    res.writeHead(200, {
      ...headers,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      'x-accel-buffering': 'no',
      connection: 'keep-alive',
    });
    res.write(`retry: ${options.retryMs}\n: warren\n\n`);
    flattenHead(res);
  }

  // On the prototype, not fields: one object per idle connection, every field counts.
  get kind(): 'sse' {
    return 'sse';
  }

  get protocol(): undefined {
    return undefined;
  }

  attach(events: TransportEvents): void {
    this.events = events;
    this.options.heartbeats.add(this);
    if (this.res.destroyed) {
      this.gone();
      return;
    }
    // One listener function for every response (`once` would wrap it in a closure per response).
    (this.res as TaggedResponse)[TRANSPORT] = this;
    this.res.on('close', onResponseClose);
  }

  /** The response closed. */
  gone(): void {
    const events = this.events;
    if (events === undefined) return;
    this.events = undefined;
    this.closed = true;
    this.options.heartbeats.delete(this);
    events.transportClosed();
  }

  /** The heartbeat comment, to a response that had nothing else to carry since the last one. */
  ping(): void {
    if (this.active) {
      this.active = false;
      return;
    }
    if (!this.closed) this.res.write(': ping\n\n');
  }

  write(data: string | Buffer, options: WriteOptions, done: (ok: boolean) => void): void {
    this.send(encodeSseData(data, options), done);
  }

  /** On a wildcard subscription the event's data is the `warren.v1` message frame, which names the channel (docs/wildcards.md). */
  deliver(channel: string, message: WarrenMessage, done?: (ok: boolean) => void, pattern?: string): void {
    if (pattern !== undefined) {
      this.send(patternSseEventBytes(channel, message, pattern), done);
      return;
    }
    // The message's chunk, framed once for every response it goes to, in one socket write (res.write makes three).
    const socket = chunkedSocket(this.res);
    if (socket === null) this.send(sseEventBytes(message), done);
    else this.send(sseEventChunk(message), done, socket);
  }

  /** Writes `chunk` through the response, or, already framed, straight to its socket (`to`, from {@link chunkedSocket}). */
  private send(chunk: string | Buffer, done?: (ok: boolean) => void, to: ServerResponse | Socket = this.res): void {
    if (this.closed || this.res.destroyed) {
      done?.(false);
      return;
    }
    const socket = this.res.socket;
    this.active = true;
    // Messages written in the same tick (a burst from the broker) leave in one writev.
    if (socket !== null) corkForTick(socket);
    if (done === undefined) {
      to.write(chunk);
      return;
    }
    to.write(chunk, (err?: Error | null) => {
      // A write to a socket that died can still report success: check the socket.
      done(err == null && socket !== null && !socket.destroyed);
    });
  }

  bufferedBytes(): number {
    // What the response and its socket hold, not yet handed to the operating system.
    return this.res.writableLength;
  }

  end(reason: CloseReason): void {
    if (this.closed) return;
    this.closed = true;
    this.options.heartbeats.delete(this);
    if (reason.kind === 'slow-consumer') {
      // A slow reader would not read a goodbye either: drop it now.
      this.res.destroy();
      return;
    }
    if (reason.kind === 'normal') {
      this.res.end();
      return;
    }
    if (reason.kind === 'restart') {
      // A draining gateway gives each stream its own delay, so that they do not all come back at once.
      this.res.end(`retry: ${Math.max(0, Math.round(reason.retryMs))}\n: closing (restart)\n\n`);
      return;
    }
    // Sources ended together (the broker went away) should not come back together:
    // each gets its own reconnect delay, from the hint to twice the hint.
    const retry = reason.kind === 'broker-unavailable' ? `retry: ${Math.round(this.options.retryMs * (1 + Math.random()))}\n` : '';
    this.res.end(`${retry}: closing (${reason.kind})\n\n`);
  }
}
