import type { ServerResponse } from 'node:http';
import type { OutgoingHttpHeaders } from 'node:http';
import type { WarrenMessage } from '@warren/protocol';
import type { Sink, SinkCloseReason } from '../streams/sink.js';
import { encodeSseEvent } from './encoding.js';

export interface SseOptions {
  heartbeatMs: number;
  retryMs: number;
}

/**
 * A Server-Sent Events response as a {@link Sink}. Headers for proxies and
 * caches (`no-cache`, `X-Accel-Buffering: no`, never compressed), a `retry:`
 * hint, and a comment every `heartbeatMs` so that idle connections stay open
 * through proxies and dead ones are found.
 */
export class SseStream implements Sink {
  private pending = 0;
  private closed = false;
  private readonly heartbeat: NodeJS.Timeout;

  constructor(
    private readonly res: ServerResponse,
    headers: OutgoingHttpHeaders,
    options: SseOptions,
  ) {
    res.writeHead(200, {
      ...headers,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      'x-accel-buffering': 'no',
      connection: 'keep-alive',
    });
    res.write(`retry: ${options.retryMs}\n: warren\n\n`);
    this.heartbeat = setInterval(() => {
      if (!this.closed) res.write(': ping\n\n');
    }, options.heartbeatMs);
    this.heartbeat.unref();
    res.once('close', () => {
      this.closed = true;
      clearInterval(this.heartbeat);
    });
  }

  send(_channel: string, message: WarrenMessage, written: (ok: boolean) => void): void {
    if (this.closed || this.res.destroyed) {
      written(false);
      return;
    }
    const chunk = encodeSseEvent(message);
    const size = Buffer.byteLength(chunk);
    const socket = this.res.socket;
    this.pending += size;
    this.res.write(chunk, (err) => {
      this.pending -= size;
      // A write to a socket that died can still report success: check the socket.
      written(err == null && socket !== null && !socket.destroyed);
    });
  }

  pendingBytes(): number {
    return this.pending;
  }

  close(reason: SinkCloseReason): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.heartbeat);
    if (reason === 'slow-consumer') {
      // A slow reader would not read a goodbye either: drop it now.
      this.res.destroy();
      return;
    }
    this.res.end(`: closing (${reason})\n\n`);
  }
}
