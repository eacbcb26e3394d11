import type { WarrenMessage } from '@warren/protocol';

/**
 * Where a stream's messages go: an SSE response or a WebSocket. One small
 * interface for every streaming transport, as engine.io's `Transport`.
 */
export interface Sink {
  /**
   * Hands one message of `channel` to the socket. `written(true)` once it was
   * handed to the operating system, `written(false)` if the connection died
   * first. Called exactly once.
   */
  send(channel: string, message: WarrenMessage, written: (ok: boolean) => void): void;
  /** Bytes accepted by `send()` and not yet handed to the operating system. */
  pendingBytes(): number;
  /** Closes the connection, telling the client why when the transport can. */
  close(reason: SinkCloseReason): void;
}

export type SinkCloseReason =
  /** The client reads too slowly for a live (anonymous) stream. */
  | 'slow-consumer'
  /** The broker went away; the client should reconnect (and resume). */
  | 'broker-unavailable'
  /** The gateway is stopping. */
  | 'shutdown'
  /** The application (or the token) no longer allows this stream. */
  | 'revoked';
