import type { WarrenMessage } from '@warren/protocol';
import type { LogSignal } from '../sources/sink.js';
import type { UpgradeKind, WriteOptions } from '../push/handler.js';

/** Why the gateway ends a connection; each transport tells the client in its own way. */
export type CloseReason =
  /** The application (or the client's handler) closed it. */
  | { kind: 'normal'; code?: number; reason?: string }
  /** The client reads too slowly: dropped without a goodbye. */
  | { kind: 'slow-consumer' }
  /** The broker went away; the client should reconnect (and resume). */
  | { kind: 'broker-unavailable' }
  /** The gateway is stopping. */
  | { kind: 'shutdown' }
  /** The gateway drains: the client should reconnect (to another gateway), SSE after `retryMs`. */
  | { kind: 'restart'; retryMs: number }
  /** A newer connection of the same consumer took its queue over. */
  | { kind: 'superseded' }
  /** The application (or the token) no longer allows this stream. */
  | { kind: 'revoked'; reason?: string }
  /** The handler failed. */
  | { kind: 'error' };

/** What a transport reports to the connection on top of it (methods, so that no closure is made per connection). */
export interface TransportEvents {
  /** A client message (WebSocket only): text as `string`, binary as `Buffer`. */
  transportMessage(data: string | Buffer): void;
  /** The socket is closed, for any reason. Called once. */
  transportClosed(): void;
}

/**
 * One push connection's socket: an SSE response or a WebSocket. Every
 * transport implements this small interface (as engine.io's `PushTransport`);
 * the {@link Connection} above it holds the application's callbacks and the
 * subscriptions, so no transport knows about either.
 */
export interface PushTransport {
  readonly kind: UpgradeKind;
  /** The negotiated WebSocket subprotocol, if any. */
  readonly protocol: string | undefined;
  /** Starts reporting events (the response or socket is already open). */
  attach(events: TransportEvents): void;
  /** Application data. `done(true)` once handed to the operating system, `done(false)` if the socket died first. */
  write(data: string | Buffer, options: WriteOptions, done: (ok: boolean) => void): void;
  /** A broker message of `channel`, in this transport's encoding. Same `done` contract; no callback without `done`. */
  deliver(channel: string, message: WarrenMessage, done?: (ok: boolean) => void, pattern?: string): void;
  /** A logged channel's signal, in the transport's own form; without it, it is delivered as a message named after the signal. */
  signal?(channel: string, signal: LogSignal): void;
  /** Bytes accepted and not yet handed to the operating system. */
  bufferedBytes(): number;
  /** Ends the connection after what was written (immediately for `slow-consumer`). Idempotent. */
  end(reason: CloseReason): void;
}
