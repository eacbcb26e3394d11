import type { IncomingMessage, OutgoingHttpHeader } from 'node:http';
import type { MessageData, MessageOptions } from '@warren/protocol';
import type { PublishAnswer } from '../publish-endpoint.js';

/**
 * What kind of push connection a request asks for: the analogue of Rack's
 * `env['rack.upgrade?']` (`:websocket`, `:sse`).
 */
export type UpgradeKind = 'websocket' | 'sse';

/**
 * A request that may become a push connection, shown to the application's
 * {@link UpgradeDecider} before anything is sent to the client.
 */
export interface PushUpgrade {
  /** `'websocket'` for an `Upgrade: websocket` request, `'sse'` for `Accept: text/event-stream`. */
  readonly kind: UpgradeKind;
  readonly request: IncomingMessage;
  /** The raw request path, without the query. */
  readonly path: string;
  readonly query: URLSearchParams;
  /**
   * The consumer the connection reads as, for subscriptions without their
   * own `consumerId`: at first the id the client named (`Consumer-Id` header,
   * `consumer_id` query parameter or cookie), already validated; `undefined`
   * for an anonymous client. The decider may set it (to an identity it
   * vouches for) or clear it.
   */
  consumerId: string | undefined;
  /** Adds a header to the response that opens the stream (SSE `200`, WebSocket `101`). */
  setHeader(name: string, value: OutgoingHttpHeader): void;
}

/**
 * The app's answer for one request: a handler takes the connection (the
 * analogue of setting `env['rack.upgrade']`); `undefined`, `null` or `false`
 * declines it, and then the application's own server answers the request
 * (404 on a standalone gateway). Throwing a `WarrenError` refuses it with
 * that error's HTTP status and JSON body.
 */
export type UpgradeDecision = PushHandler | undefined | null | false;

/** Looks at a push request and decides who handles it. May be async. */
export type UpgradeDecider = (upgrade: PushUpgrade) => UpgradeDecision | Promise<UpgradeDecision>;

/**
 * The callback object of one push connection (Rack push's "callback
 * object"). Every callback is optional and receives the connection.
 *
 * Order: `onOpen` first, once; no other callback runs before it returned
 * (or its promise settled). `onMessage` calls run one at a time, in the
 * order frames arrived. `onShutdown` comes before the gateway closes the
 * connection for a shutdown. `onClose` comes last, once, after the
 * connection closed for any reason, and never while another callback runs.
 * An exception in `onOpen` closes the connection; elsewhere it is logged.
 *
 * @example
 * const tickTock: PushHandler = {
 *   onOpen(conn) { this.timer = setInterval(() => conn.write(new Date().toISOString()), 1000); },
 *   onClose() { clearInterval(this.timer); },
 * };
 */
export interface PushHandler {
  /**
   * Called once the handler is chosen and before the client sees the
   * connection open (no SSE headers or `101` sent yet): make what the stream
   * needs so that nothing published after the client sees it open is missed
   * (the default handler declares the consumer's queue here). Throwing (or
   * rejecting with) a `WarrenError` refuses the request with that error's
   * status and JSON body; no other callback follows.
   */
  prepare?(upgrade: PushUpgrade): void | Promise<void>;
  onOpen?(conn: PushConnection): void | Promise<void>;
  /**
   * A WebSocket message from the client: a `string` for a text frame, a
   * `Buffer` for a binary one. Never called for SSE.
   */
  onMessage?(conn: PushConnection, data: string | Buffer): void | Promise<void>;
  /**
   * Everything written was handed to the operating system. Called once each
   * time `pending()` had returned more than 0 and the count fell back to 0.
   */
  onDrained?(conn: PushConnection): void | Promise<void>;
  /** The gateway is shutting down (`close()`) or draining (`drain()`) and will close this connection next (a last `write` still goes out). */
  onShutdown?(conn: PushConnection): void | Promise<void>;
  /** The connection is closed (client gone, `close()`, shutdown, error). The last callback. */
  onClose?(conn: PushConnection): void | Promise<void>;
  /** Any other fields are the handler's own state. */
  [key: string]: unknown;
}

/** Options of {@link PushConnection.write}. */
export interface WriteOptions {
  /** SSE only: the `event:` name, so that the browser dispatches it to `addEventListener(name)`. */
  event?: string;
  /** SSE only: the `id:` field (what EventSource sends back as `Last-Event-ID`). */
  id?: string;
}

/** Options of {@link PushConnection.subscribe}. */
export interface SubscribeOptions {
  /**
   * Read as this consumer: its own durable queue for the channel, resumable
   * and shared with other gateway processes. `null` reads live-only as an
   * anonymous listener. @default the connection's `consumerId`
   */
  consumerId?: string | null;
  /** Skip what this consumer already received up to this message id (resume). */
  lastEventId?: string;
  /** On a logged channel: start with its last this many messages (`?history=`). */
  history?: number;
  /**
   * On a logged channel: start after this event id, or from this time (an
   * ISO 8601 date or milliseconds since the epoch). Elsewhere an id is read as `lastEventId`.
   */
  since?: string;
}

/**
 * One open push connection, as the handler sees it (Rack push's `client`).
 * The gateway owns the socket: buffering, framing, heartbeats, backpressure
 * and the close handshake.
 */
export interface PushConnection {
  readonly kind: UpgradeKind;
  /**
   * The HTTP request the connection came from (Rack's `env`), kept for the
   * connection's life for an `onUpgrade` handler. The default handler's
   * connections keep none (an idle stream holds only what it reads).
   * @throws WarrenError `REQUEST_NOT_KEPT` on a connection of the default handler
   */
  readonly request: IncomingMessage;
  /** The request's path. @throws WarrenError `REQUEST_NOT_KEPT` on a connection of the default handler */
  readonly path: string;
  /** The request's query. @throws WarrenError `REQUEST_NOT_KEPT` on a connection of the default handler */
  readonly query: URLSearchParams;
  /** The consumer subscriptions read as by default (see {@link PushUpgrade.consumerId}). */
  readonly consumerId: string | undefined;
  /** The negotiated WebSocket subprotocol (`'warren.v1'` or none); always `undefined` for SSE. */
  readonly protocol: string | undefined;
  /** `false` once the connection is closed or `close()` was called (Rack's `open?`). */
  readonly open: boolean;
  /** Channels this connection is subscribed to. */
  readonly channels: readonly string[];
  /**
   * Schedules `data` for the client: over WebSocket a `string` is a text
   * frame and a `Buffer`/`Uint8Array` a binary one; over SSE it is one event
   * (`data:` lines; binary as base64). Any other value is sent as JSON text.
   * Returns `false` when the connection is not open (nothing is sent).
   * A client that lets more than `maxPendingBytes` pile up is disconnected.
   * @throws WarrenError `INVALID_MESSAGE` for a value JSON cannot encode or an `id`/`event` with a line break
   */
  write(data: MessageData, options?: WriteOptions): boolean;
  /**
   * Writes scheduled and not yet handed to the operating system, or `-1`
   * once closed. After it returned more than 0, `onDrained` follows when
   * the count is back at 0.
   */
  pending(): number;
  /**
   * Closes once what was written has gone out. Over WebSocket `code`
   * (1000, or 3000–4999) and `reason` (at most 123 bytes) go in the close frame.
   */
  close(code?: number, reason?: string): void;
  /**
   * Ends the connection for one of the gateway's reasons, told to the client
   * as its transport can: `'revoked'` (no longer allowed: SSE a comment,
   * WebSocket 1008 with `detail`), `'broker-unavailable'` (reconnect later:
   * SSE a jittered `retry:`, WebSocket 1013), `'superseded'` (another
   * connection took over: WebSocket 4009).
   */
  drop(reason: 'revoked' | 'broker-unavailable' | 'superseded', detail?: string): void;
  /**
   * Delivers `channel`'s messages to this client, through the broker
   * (per-consumer queue or the process's live fan-out), so it works across
   * gateway processes. Resolves once messages flow; subscribing twice is
   * a no-op.
   * @throws WarrenError `INVALID_CHANNEL`, `INVALID_CONSUMER_ID`, `TOO_MANY_SUBSCRIPTIONS`, `BROKER_UNAVAILABLE`, `CONNECTION_CLOSED`
   */
  subscribe(channel: string, options?: SubscribeOptions): Promise<void>;
  /** Stops delivering `channel`. Resolves once stopped; a no-op when not subscribed. */
  unsubscribe(channel: string): Promise<void>;
  /**
   * Publishes to every subscriber of `channel`, in every process on the same
   * broker (this connection too, when subscribed). Resolves once the broker
   * has confirmed it, with who took it, as `gateway.publish()` does.
   * @throws WarrenError `INVALID_CHANNEL`, `INVALID_MESSAGE`, `MESSAGE_TOO_LARGE`, `BROKER_UNAVAILABLE`
   */
  publish(channel: string, data: MessageData, options?: MessageOptions): Promise<PublishAnswer>;
}
