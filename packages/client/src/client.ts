import { LongPollTransport } from './transports/long-poll.js';
import { SseTransport } from './transports/sse.js';
import type { ClientTransport, TransportHost } from './transports/transport.js';
import { WebSocketTransport } from './transports/websocket.js';
import {
  CONSUMER_ID_STORAGE_KEY,
  DEFAULT_TRANSPORTS,
  WarrenClientError,
  type EventSourceConstructor,
  type FetchLike,
  type StorageLike,
  type SubscribeOptions,
  type Subscription,
  type TransportName,
  type WarrenClientEventMap,
  type WarrenClientOptions,
  type WarrenMessage,
  type WarrenSignalEvent,
  type WebSocketConstructor,
} from './types.js';
import { backoffDelay, checkTarget, generateConsumerId, isConsumerId, isEventName, isMessageId } from './util.js';

/** Ids remembered per channel to drop a message delivered twice (at-least-once delivery). */
const RECENT_IDS = 256;

type Listener<K extends keyof WarrenClientEventMap> = (event: WarrenClientEventMap[K]) => void;

interface SubscriptionEntry {
  handler: (message: WarrenMessage) => void;
  events: ReadonlySet<string> | undefined;
  onGap: ((event: WarrenSignalEvent) => void) | undefined;
  onReset: ((event: WarrenSignalEvent) => void) | undefined;
}

interface ChannelState {
  channel: string;
  lastEventId: string | undefined;
  subscriptions: Set<SubscriptionEntry>;
  recent: Set<string>;
}

interface Attempt {
  name: TransportName;
  transport: ClientTransport | undefined;
}

/**
 * A client of a Warren gateway: subscribes to channels over WebSocket,
 * falling back to Server-Sent Events, then to long-poll; reconnects with
 * exponential backoff and full jitter; resumes each channel after the last
 * message id it received; keeps one consumer id for its whole life.
 *
 * It connects when the first channel is subscribed and disconnects when the
 * last one is unsubscribed. One WebSocket carries every channel; SSE and
 * long-poll use one request per channel.
 *
 * **Fallback.** Every connection (the first one and each reconnection) tries
 * `transports` in order. A transport that cannot be built here (no
 * implementation, or its constructor throws) or that fails to open (refused,
 * upgrade refused, an error answer, no answer within `connectTimeoutMs`) is
 * passed over at once for the next one. When every transport failed, the
 * client waits a backoff delay and starts over from the first. Once a
 * transport opened, losing it means waiting a backoff delay, then trying the
 * list from the first again.
 *
 * @example
 * const client = new WarrenClient({ url: 'https://push.example.com' });
 * const sub = client.subscribe('/greetings', (message) => console.log(message.data));
 * client.on('error', (error) => console.warn(error.code, error.message));
 * // later
 * sub.unsubscribe();
 * client.close();
 */
export class WarrenClient {
  /** The consumer id sent to the gateway on every connection (`undefined` for an anonymous client: `consumerId: null`). */
  readonly consumerId: string | undefined;
  /** The gateway's base URL. */
  readonly url: string;

  private readonly baseUrl: URL;
  private readonly transports: readonly TransportName[];
  private readonly impl: {
    WebSocket: WebSocketConstructor | null | undefined;
    EventSource: EventSourceConstructor | null | undefined;
    fetch: FetchLike | null | undefined;
  };
  private readonly minMs: number;
  private readonly maxMs: number;
  private readonly connectTimeoutMs: number;
  private readonly pollTimeoutSeconds: number;
  private readonly channels = new Map<string, ChannelState>();
  private readonly listeners: { [K in keyof WarrenClientEventMap]: Set<Listener<K>> } = {
    open: new Set(),
    message: new Set(),
    error: new Set(),
    close: new Set(),
    gap: new Set(),
    reset: new Set(),
  };

  private attempt: Attempt | undefined;
  private openTransport: TransportName | undefined;
  /** Index in `transports` of the next transport to try in this round. */
  private next = 0;
  /** Longest Retry-After the gateway asked for in this round. */
  private retryAfterMs = 0;
  /** Backoff attempts since the last healthy connection. */
  private failures = 0;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private connectTimer: ReturnType<typeof setTimeout> | undefined;
  private closed = false;

  /**
   * @throws WarrenClientError `INVALID_OPTION` (no usable URL, bad transport name or delays) or `INVALID_CONSUMER_ID`
   */
  constructor(options: WarrenClientOptions = {}) {
    this.baseUrl = resolveUrl(options.url);
    this.url = this.baseUrl.href;
    this.transports = [...(options.transports ?? DEFAULT_TRANSPORTS)];
    if (this.transports.length === 0 || this.transports.some((t) => !DEFAULT_TRANSPORTS.includes(t))) {
      throw new WarrenClientError('INVALID_OPTION', `transports must be a non-empty list of ${DEFAULT_TRANSPORTS.join(', ')}`);
    }
    const g = globalThis as { WebSocket?: WebSocketConstructor; EventSource?: EventSourceConstructor; fetch?: FetchLike };
    this.impl = {
      WebSocket: options.WebSocket === undefined ? g.WebSocket : options.WebSocket,
      EventSource: options.EventSource === undefined ? g.EventSource : options.EventSource,
      // The global fetch must be called on globalThis in browsers.
      fetch: options.fetch === undefined ? (typeof g.fetch === 'function' ? g.fetch.bind(globalThis) : undefined) : options.fetch,
    };
    this.minMs = positive(options.reconnect?.minMs ?? 500, 'reconnect.minMs');
    this.maxMs = positive(options.reconnect?.maxMs ?? 30_000, 'reconnect.maxMs');
    if (this.minMs > this.maxMs) throw new WarrenClientError('INVALID_OPTION', 'reconnect.minMs exceeds reconnect.maxMs');
    this.connectTimeoutMs = positive(options.connectTimeoutMs ?? 10_000, 'connectTimeoutMs');
    this.pollTimeoutSeconds = positive(options.pollTimeoutSeconds ?? 25, 'pollTimeoutSeconds');
    this.consumerId = resolveConsumerId(options);
  }

  /** The transport connected now, if any. */
  get transport(): TransportName | undefined {
    return this.openTransport;
  }

  /**
   * Receives the messages of a channel. Connects if this is the first
   * subscription. Several subscriptions to one channel share its connection.
   *
   * @param channel a channel path such as `/greetings` or `/rooms/lobby`
   * @param onMessage called with each message, in order
   * @throws WarrenClientError `INVALID_CHANNEL`, `INVALID_MESSAGE_ID`, `INVALID_OPTION`, `CLIENT_CLOSED`
   */
  subscribe(channel: string, onMessage: (message: WarrenMessage) => void, options: SubscribeOptions = {}): Subscription {
    if (this.closed) throw new WarrenClientError('CLIENT_CLOSED', 'the client is closed');
    checkTarget(channel);
    if (typeof onMessage !== 'function') throw new WarrenClientError('INVALID_OPTION', 'onMessage must be a function');
    if (options.lastEventId !== undefined && !isMessageId(options.lastEventId)) {
      throw new WarrenClientError('INVALID_MESSAGE_ID', 'lastEventId must be 1 to 128 visible ASCII characters');
    }
    for (const name of options.events ?? []) {
      if (!isEventName(name)) throw new WarrenClientError('INVALID_OPTION', `invalid event name ${JSON.stringify(name)}`);
    }
    for (const name of ['onGap', 'onReset'] as const) {
      if (options[name] !== undefined && typeof options[name] !== 'function')
        throw new WarrenClientError('INVALID_OPTION', `${name} must be a function`);
    }
    const entry: SubscriptionEntry = {
      handler: onMessage,
      events: options.events === undefined ? undefined : new Set(options.events),
      onGap: options.onGap,
      onReset: options.onReset,
    };
    let state = this.channels.get(channel);
    if (state === undefined) {
      state = { channel, lastEventId: options.lastEventId, subscriptions: new Set(), recent: new Set() };
      if (options.lastEventId !== undefined) state.recent.add(options.lastEventId);
      this.channels.set(channel, state);
    }
    state.subscriptions.add(entry);
    if (this.attempt?.transport !== undefined) this.attempt.transport.add(channel);
    else this.connect();
    const channelState = state;
    let active = true;
    return {
      channel,
      get lastEventId() {
        return channelState.lastEventId;
      },
      unsubscribe: () => {
        if (!active) return;
        active = false;
        this.unsubscribe(channelState, entry);
      },
    };
  }

  /**
   * Listens to the client's events: `open` (a transport connected), `message`
   * (any message of any subscription), `error` (a failed connection attempt,
   * a lost connection, an error from the gateway; the client goes on by
   * itself), `close` (an open connection ended; `reconnect` says whether
   * the client will reconnect), and a logged channel's signals `gap` and
   * `reset` (see {@link WarrenSignalEvent}; the client goes on with live messages).
   *
   * @returns a function that removes the listener
   */
  on<K extends keyof WarrenClientEventMap>(type: K, listener: (event: WarrenClientEventMap[K]) => void): () => void {
    const set = this.listeners[type] as Set<Listener<K>> | undefined;
    if (set === undefined) throw new WarrenClientError('INVALID_OPTION', `unknown event ${String(type)}`);
    set.add(listener);
    return () => {
      set.delete(listener);
    };
  }

  /**
   * Unsubscribes everything, closes the connection and releases every socket,
   * request and timer. Emits `close` if a connection was open. Idempotent;
   * the client cannot be used after.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.channels.clear();
    this.disconnect();
    for (const set of Object.values(this.listeners)) set.clear();
  }

  private unsubscribe(state: ChannelState, entry: SubscriptionEntry): void {
    state.subscriptions.delete(entry);
    if (state.subscriptions.size > 0 || this.channels.get(state.channel) !== state) return;
    this.channels.delete(state.channel);
    this.attempt?.transport?.remove(state.channel);
    if (this.channels.size === 0) this.disconnect();
  }

  /** Drops the connection and any timer, without reconnecting. */
  private disconnect(): void {
    clearTimeout(this.retryTimer);
    clearTimeout(this.connectTimer);
    this.retryTimer = undefined;
    this.connectTimer = undefined;
    const attempt = this.attempt;
    this.attempt = undefined;
    attempt?.transport?.close();
    this.failures = 0;
    const open = this.openTransport;
    this.openTransport = undefined;
    if (open !== undefined) this.emit('close', { transport: open, reconnect: false });
  }

  /** Starts a round of connection attempts, unless one is under way or due. */
  private connect(): void {
    if (this.closed || this.channels.size === 0 || this.attempt !== undefined || this.retryTimer !== undefined) return;
    this.next = 0;
    this.retryAfterMs = 0;
    this.tryNext();
  }

  /** Tries the next transport of the round, or schedules the next round. */
  private tryNext(): void {
    while (this.next < this.transports.length) {
      if (this.closed || this.channels.size === 0 || this.attempt !== undefined) return;
      const name = this.transports[this.next++]!;
      const attempt: Attempt = { name, transport: undefined };
      this.attempt = attempt;
      try {
        attempt.transport = this.create(name, this.host(attempt));
      } catch (err) {
        this.attempt = undefined;
        const error =
          err instanceof WarrenClientError
            ? err
            : new WarrenClientError(
                'TRANSPORT_UNAVAILABLE',
                `${name} cannot be used: ${err instanceof Error ? err.message : String(err)}`,
                { transport: name },
              );
        this.emit('error', error);
        continue;
      }
      this.connectTimer = setTimeout(() => {
        this.connectTimer = undefined;
        this.onFail(
          attempt,
          new WarrenClientError('CONNECT_TIMEOUT', `${name} did not open within ${this.connectTimeoutMs} ms`, { transport: name }),
          {},
        );
      }, this.connectTimeoutMs);
      return;
    }
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.closed || this.channels.size === 0 || this.retryTimer !== undefined) return;
    const delay = Math.max(backoffDelay(this.failures++, this.minMs, this.maxMs), Math.min(this.retryAfterMs, this.maxMs));
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.connect();
    }, delay);
  }

  private create(name: TransportName, host: TransportHost): ClientTransport {
    const channels = [...this.channels.keys()];
    switch (name) {
      case 'websocket':
        return new WebSocketTransport(host, this.impl.WebSocket, channels);
      case 'sse':
        return new SseTransport(host, this.impl.EventSource, channels);
      case 'long-poll':
        return new LongPollTransport(host, this.impl.fetch, channels);
    }
  }

  /** The host a transport attempt talks to; everything it says after the client dropped it is ignored. */
  private host(attempt: Attempt): TransportHost {
    const current = (): boolean => this.attempt === attempt && !this.closed;
    return {
      baseUrl: this.baseUrl,
      consumerId: this.consumerId,
      pollTimeoutSeconds: this.pollTimeoutSeconds,
      lastEventId: (channel) => this.channels.get(channel)?.lastEventId,
      eventNames: (channel) => {
        const names = new Set<string>();
        for (const entry of this.channels.get(channel)?.subscriptions ?? []) for (const name of entry.events ?? []) names.add(name);
        return [...names];
      },
      opened: () => {
        if (!current() || this.openTransport !== undefined) return;
        clearTimeout(this.connectTimer);
        this.connectTimer = undefined;
        this.openTransport = attempt.name;
        this.emit('open', { transport: attempt.name });
      },
      healthy: () => {
        if (current()) this.failures = 0;
      },
      deliver: (message) => {
        if (current()) this.deliver(message);
      },
      signal: (kind, event) => {
        if (current()) this.signal(kind, event);
      },
      report: (error) => {
        if (current()) this.emit('error', error);
      },
      fail: (error, details = {}) => {
        if (current()) this.onFail(attempt, error, details);
      },
      retryDelay: (n) => backoffDelay(n, this.minMs, this.maxMs),
    };
  }

  private onFail(attempt: Attempt, error: WarrenClientError, details: { code?: number; reason?: string; retryAfterMs?: number }): void {
    if (this.attempt !== attempt) return;
    this.attempt = undefined;
    clearTimeout(this.connectTimer);
    this.connectTimer = undefined;
    attempt.transport?.close();
    this.retryAfterMs = Math.max(this.retryAfterMs, details.retryAfterMs ?? 0);
    const wasOpen = this.openTransport;
    this.openTransport = undefined;
    this.emit('error', error);
    if (wasOpen !== undefined) {
      this.emit('close', {
        transport: wasOpen,
        reconnect: !this.closed && this.channels.size > 0,
        ...(details.code === undefined ? {} : { code: details.code }),
        ...(details.reason === undefined ? {} : { reason: details.reason }),
      });
      this.scheduleReconnect();
    } else {
      this.tryNext();
    }
  }

  private deliver(message: WarrenMessage): void {
    const state = this.channels.get(message.pattern ?? message.channel);
    if (state === undefined) return;
    if (message.id !== '') {
      if (state.recent.has(message.id)) return;
      state.recent.add(message.id);
      if (state.recent.size > RECENT_IDS) state.recent.delete(state.recent.values().next().value!);
      state.lastEventId = message.id;
    }
    for (const entry of [...state.subscriptions]) {
      if (!state.subscriptions.has(entry)) continue;
      if (message.event !== undefined && entry.events !== undefined && !entry.events.has(message.event)) continue;
      call(entry.handler, message);
    }
    this.emit('message', message);
  }

  /** A logged channel's signal: after a reset the client resumes from its new position. */
  private signal(kind: 'gap' | 'reset', event: WarrenSignalEvent): void {
    const state = this.channels.get(event.channel);
    if (state === undefined) return;
    if (kind === 'reset' && event.id !== '') state.lastEventId = event.id;
    for (const entry of [...state.subscriptions]) {
      const callback = kind === 'gap' ? entry.onGap : entry.onReset;
      if (callback !== undefined && state.subscriptions.has(entry)) call(callback, event);
    }
    this.emit(kind, event);
  }

  private emit<K extends keyof WarrenClientEventMap>(type: K, event: WarrenClientEventMap[K]): void {
    for (const listener of [...(this.listeners[type] as Set<Listener<K>>)]) call(listener, event);
  }
}

/** Calls user code; what it throws is reported like an uncaught error, not thrown into the client. */
function call<T>(fn: (value: T) => void, value: T): void {
  try {
    fn(value);
  } catch (err) {
    const report = (globalThis as { reportError?: (e: unknown) => void }).reportError;
    if (typeof report === 'function') report(err);
    else
      queueMicrotask(() => {
        throw err;
      });
  }
}

function positive(value: number, name: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0)
    throw new WarrenClientError('INVALID_OPTION', `${name} must be a positive number`);
  return value;
}

function resolveUrl(input: string | undefined): URL {
  const page = (globalThis as { location?: { href?: string } }).location?.href;
  let url: URL;
  try {
    url = page === undefined ? new URL(input ?? '') : new URL(input ?? '/', page);
  } catch {
    throw new WarrenClientError(
      'INVALID_OPTION',
      input === undefined ? 'url is required outside a browser' : `invalid url ${JSON.stringify(input)}`,
    );
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new WarrenClientError('INVALID_OPTION', 'url must be http: or https:');
  url.search = '';
  url.hash = '';
  return url;
}

function defaultStorage(): StorageLike | null {
  try {
    const storage = (globalThis as { localStorage?: StorageLike }).localStorage;
    return storage !== undefined && storage !== null && typeof storage.getItem === 'function' ? storage : null;
  } catch {
    // Access denied (sandboxed frame, storage disabled).
    return null;
  }
}

function resolveConsumerId(options: WarrenClientOptions): string | undefined {
  if (options.consumerId === null) return undefined;
  if (options.consumerId !== undefined) {
    if (!isConsumerId(options.consumerId))
      throw new WarrenClientError('INVALID_CONSUMER_ID', 'consumerId must be 1 to 64 characters of A-Z a-z 0-9 _ -');
    return options.consumerId;
  }
  const storage = options.storage === undefined ? defaultStorage() : options.storage;
  const key = options.storageKey ?? CONSUMER_ID_STORAGE_KEY;
  if (storage !== null) {
    try {
      const saved = storage.getItem(key);
      if (isConsumerId(saved)) return saved;
    } catch {
      // Unreadable storage: use a fresh id.
    }
  }
  const id = generateConsumerId();
  if (storage !== null) {
    try {
      storage.setItem(key, id);
    } catch {
      // Full or read-only storage: keep the id for this client only.
    }
  }
  return id;
}
