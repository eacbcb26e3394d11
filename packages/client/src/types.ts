/** The three ways the client can reach a gateway, in the default order of preference. */
export type TransportName = 'websocket' | 'sse' | 'long-poll';

/** The default {@link WarrenClientOptions.transports}: WebSocket, then SSE, then long-poll. */
export const DEFAULT_TRANSPORTS: readonly TransportName[] = ['websocket', 'sse', 'long-poll'];

/** One message received on a channel. */
export interface WarrenMessage {
  /** The channel it was published to, e.g. `/greetings`. */
  channel: string;
  /** The wildcard pattern it came through (`/stocks/*`), on a pattern subscription (docs/wildcards.md). */
  pattern?: string;
  /** The message id the producer gave (or the gateway made up). */
  id: string;
  /** The producer's event name, if it named one. */
  event?: string;
  /**
   * The producer's content type. Known over WebSocket and long-poll; absent
   * over SSE, which does not carry it.
   */
  contentType?: string;
  /**
   * The body: text for textual content types (`text/*`, JSON, XML, …), base64
   * otherwise. Over SSE a binary body is base64 too, but nothing marks it so.
   */
  data: string;
  /** The body's bytes, when it is binary and the transport says so (WebSocket, long-poll). */
  binary?: Uint8Array;
  /** The transport that delivered it. */
  transport: TransportName;
}

/** The `open` event: a transport connected. */
export interface WarrenOpenEvent {
  transport: TransportName;
}

/** The `close` event: an open connection ended. Every `open` is followed by one `close`. */
export interface WarrenCloseEvent {
  transport: TransportName;
  /** `true` when the client will reconnect by itself; `false` after `close()` or the last `unsubscribe()`. */
  reconnect: boolean;
  /** The WebSocket close code, when there was one (1001 gateway shutting down, 1013 broker unavailable, 4008 slow consumer…). */
  code?: number;
  /** The WebSocket close reason, when there was one. */
  reason?: string;
}

/**
 * Codes of {@link WarrenClientError}: the client's own, or a gateway error
 * code (`BROKER_UNAVAILABLE`, `POLL_SUPERSEDED`, `TOO_MANY_SUBSCRIPTIONS`, …).
 *
 * - `TRANSPORT_UNAVAILABLE`: the transport has no implementation here, or its constructor threw.
 * - `CONNECT_FAILED`: the transport did not open (refused, upgrade refused, network error).
 * - `CONNECT_TIMEOUT`: it did not open within `connectTimeoutMs`.
 * - `CONNECTION_LOST`: an open connection ended.
 * - `INVALID_FRAME`: the gateway sent something the client cannot read.
 * - `INVALID_CHANNEL`, `INVALID_PATTERN`, `INVALID_CONSUMER_ID`, `INVALID_MESSAGE_ID`, `INVALID_OPTION`, `CLIENT_CLOSED`: thrown by the API for bad arguments or use after `close()`.
 */
export type WarrenClientErrorCode =
  | 'TRANSPORT_UNAVAILABLE'
  | 'CONNECT_FAILED'
  | 'CONNECT_TIMEOUT'
  | 'CONNECTION_LOST'
  | 'INVALID_FRAME'
  | 'INVALID_CHANNEL'
  | 'INVALID_PATTERN'
  | 'INVALID_CONSUMER_ID'
  | 'INVALID_MESSAGE_ID'
  | 'INVALID_OPTION'
  | 'CLIENT_CLOSED'
  | (string & {});

/** An error the client reports (the `error` event) or throws (bad arguments). */
export class WarrenClientError extends Error {
  override readonly name = 'WarrenClientError';
  /** What happened: see {@link WarrenClientErrorCode}. */
  readonly code: WarrenClientErrorCode;
  /** The transport concerned, if any. */
  readonly transport?: TransportName;
  /** The channel concerned, if any. */
  readonly channel?: string;
  /** The HTTP status the gateway answered, if any. */
  readonly status?: number;

  constructor(
    code: WarrenClientErrorCode,
    message: string,
    details: { transport?: TransportName; channel?: string; status?: number } = {},
  ) {
    super(message);
    this.code = code;
    if (details.transport !== undefined) this.transport = details.transport;
    if (details.channel !== undefined) this.channel = details.channel;
    if (details.status !== undefined) this.status = details.status;
  }
}

/** The client's events and what their listeners receive. */
export interface WarrenClientEventMap {
  open: WarrenOpenEvent;
  message: WarrenMessage;
  error: WarrenClientError;
  close: WarrenCloseEvent;
  gap: WarrenSignalEvent;
  reset: WarrenSignalEvent;
}

/**
 * A logged channel's signal (docs/channel-logs.md). `gap`: the client
 * resumed from a position older than what the log retains; every message
 * retained follows, but some are gone. `reset`: the log does not know the
 * position (it was recreated); live messages follow, and `id` is where the
 * client resumes from now on. After a `reset` an app that needs the past
 * asks for it again (say, a fresh page load).
 */
export interface WarrenSignalEvent {
  channel: string;
  /** `gap`: the position the client sent; `reset`: the new position. */
  id: string;
  /** `history-gone` or `unknown-position`. */
  reason: string;
  transport: TransportName;
}

/**
 * What the client needs of a WebSocket: the browser's `WebSocket`, or the
 * `ws` package's (`import { WebSocket } from 'ws'`).
 */
/* eslint-disable @typescript-eslint/no-explicit-any -- the browser's and the ws/eventsource packages' handler types must be assignable to these */
export interface WebSocketLike {
  readonly readyState: number;
  readonly protocol: string;
  onopen: ((event: any) => void) | null;
  onmessage: ((event: any) => void) | null;
  onerror: ((event: any) => void) | null;
  onclose: ((event: any) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/**
 * What the client needs of an EventSource: the browser's, or the
 * `eventsource` package's (`import { EventSource } from 'eventsource'`).
 */
export interface EventSourceLike {
  readonly readyState: number;
  onopen: ((event: any) => void) | null;
  onmessage: ((event: any) => void) | null;
  onerror: ((event: any) => void) | null;
  addEventListener(type: string, listener: (event: any) => void): void;
  close(): void;
}
/* eslint-enable @typescript-eslint/no-explicit-any */
export type EventSourceConstructor = new (url: string) => EventSourceLike;

/** What the client needs of a fetch response. */
export interface FetchResponseLike {
  readonly status: number;
  readonly headers: { get(name: string): string | null };
  arrayBuffer(): Promise<ArrayBuffer>;
  text(): Promise<string>;
}
/** What the client needs of `fetch` (the global one in browsers and Node 18+). */
export type FetchLike = (url: string, init: { method: 'GET'; signal: AbortSignal }) => Promise<FetchResponseLike>;

/** Where a generated consumer id is kept between page loads (`localStorage` in a browser). */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

/** Options of {@link WarrenClient}. */
export interface WarrenClientOptions {
  /**
   * The gateway's base URL, `http(s)://host[:port][/prefix]`. In a browser it
   * may be relative to the page and defaults to the page's origin.
   */
  url?: string;
  /**
   * Who this client is: 1 to 64 characters of `A-Z a-z 0-9 _ -`. The gateway
   * keeps a queue per consumer and channel, so messages published while the
   * client is disconnected wait for it. When absent, the client reads one
   * from `storage` or generates one (`c_` + 22 random base64url characters)
   * and saves it there.
   *
   * `null`: no consumer id at all, an anonymous client. On a logged channel
   * (docs/channel-logs.md) it still resumes from the last event id it
   * received, at no per-consumer cost on the broker; elsewhere it reads live
   * messages only.
   */
  consumerId?: string | null;
  /** Transports to try, in order. Default: `['websocket', 'sse', 'long-poll']`. */
  transports?: readonly TransportName[];
  /** The WebSocket implementation. Default: `globalThis.WebSocket`; `null` for none. */
  WebSocket?: WebSocketConstructor | null;
  /** The EventSource implementation. Default: `globalThis.EventSource`; `null` for none. */
  EventSource?: EventSourceConstructor | null;
  /** The fetch implementation for long-poll. Default: `globalThis.fetch`; `null` for none. */
  fetch?: FetchLike | null;
  /**
   * Reconnection delays: exponential backoff with full jitter, a random delay
   * between 0 and `min(maxMs, minMs * 2^attempt)`. Default `{ minMs: 500, maxMs: 30000 }`.
   */
  reconnect?: { minMs?: number; maxMs?: number };
  /** How long a transport may take to open before the next one is tried. Default 10000. */
  connectTimeoutMs?: number;
  /** How long one long-poll waits on the gateway, in seconds; at most the gateway's `--max-poll-timeout` (120 by default). Default 25. */
  pollTimeoutSeconds?: number;
  /**
   * Where a generated consumer id is kept. Default: `globalThis.localStorage`
   * when there is one and it works; `null` to keep it in memory only.
   */
  storage?: StorageLike | null;
  /** The storage key of the consumer id. Default {@link CONSUMER_ID_STORAGE_KEY}. */
  storageKey?: string;
}

/** Options of {@link WarrenClient.subscribe}. */
export interface SubscribeOptions {
  /**
   * Named events to receive besides unnamed messages. When given, messages
   * with another event name are dropped, on every transport. SSE can only
   * deliver the event names listed here (an EventSource has no catch-all
   * listener): over SSE, a named event that is not listed never arrives.
   */
  events?: readonly string[];
  /**
   * Resume after this message id (one saved by an earlier page, say). Used
   * only when this is the channel's first subscription in this client.
   */
  lastEventId?: string;
  /** Called when the channel's log lost some of the history this client asked for (see {@link WarrenSignalEvent}). */
  onGap?: (event: WarrenSignalEvent) => void;
  /** Called when the channel's log did not know the client's position; live messages follow (see {@link WarrenSignalEvent}). */
  onReset?: (event: WarrenSignalEvent) => void;
}

/** A live subscription, returned by {@link WarrenClient.subscribe}. */
export interface Subscription {
  readonly channel: string;
  /** The id of the last message received on the channel, if any. */
  readonly lastEventId: string | undefined;
  /** Stops this subscription; the channel's connection is released when it was the channel's last. Idempotent. */
  unsubscribe(): void;
}

/** The key under which a generated consumer id is kept in `localStorage`. */
export const CONSUMER_ID_STORAGE_KEY = 'warren.consumerId';
