import type { WarrenMessage } from '@warren/protocol';

/**
 * Where a subscription's messages go: a push connection (SSE response or
 * WebSocket), whatever handler runs it. The sources (a consumer's queue, the
 * process's fan-out) know nothing else about the connection.
 */
export interface Sink {
  /**
   * Hands one message of `channel` to the socket. `written(true)` once it was
   * handed to the operating system, `written(false)` if the connection died
   * first. Called exactly once. Without `written` (live fan-out, which
   * acknowledges on arrival) no callback is attached to the write.
   * `pattern`: delivered to a wildcard subscription (`/stocks/*`), which
   * `channel` matched; the transport tells the client both.
   */
  send(channel: string, message: WarrenMessage, written?: (ok: boolean) => void, pattern?: string): void;
  /** Bytes accepted by `send()` and not yet handed to the operating system. */
  pendingBytes(): number;
  /**
   * Whether `written(true)` means the client read the message (a WebSocket's
   * pong after it), not only that the operating system took it (SSE).
   */
  confirmsReceipt?(): boolean;
  /**
   * A logged channel's signal (docs/channel-logs.md): history is gone, or
   * the position is unknown. Without it the signal is sent as a message
   * whose event is the signal's name (as SSE carries it).
   */
  signal?(channel: string, signal: LogSignal): void;
  /** Ends the connection, telling the client why when the transport can. */
  drop(reason: SinkCloseReason): void;
}

export type SinkCloseReason =
  /** The client reads too slowly for a live (anonymous) stream. */
  | 'slow-consumer'
  /** The broker went away; the client should reconnect (and resume). */
  | 'broker-unavailable'
  /** The gateway is stopping. */
  | 'shutdown'
  /** A newer connection of the same consumer took the queue over. */
  | 'superseded'
  /** The application (or the token) no longer allows this stream. */
  | 'revoked';

/** A signal as a message whose event is its name, data `{"reason":…}` (how SSE carries it). */
export function signalMessage(signal: LogSignal): WarrenMessage {
  return {
    id: signal.id,
    event: signal.event,
    contentType: 'application/json',
    body: Buffer.from(JSON.stringify({ reason: signal.reason })),
  };
}

/** A signal of a logged channel: `id` is the position the client should resume from. */
export interface LogSignal {
  event: 'warren-gap' | 'warren-reset';
  id: string;
  reason: string;
}
