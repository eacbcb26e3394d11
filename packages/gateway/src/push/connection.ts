import type { IncomingMessage } from 'node:http';
import { parseConsumerId, WarrenError, type MessageData, type MessageOptions, type WarrenMessage } from '@warren/protocol';
import type { Duplex } from 'node:stream';
import { noteEntry, type AccessEntry } from '../access-log.js';
import type { Slot } from '../admission.js';
import type { Logger } from '../logger.js';
import { UNVOUCHED_PREFIX } from '../consumer-id.js';
import { signalMessage, type LogSignal, type Sink, type SinkCloseReason } from '../sources/sink.js';
import type { SourceHandle, Sources } from '../sources/sources.js';
import type { CloseReason, PushTransport, TransportEvents } from '../transports/transport.js';
import type { PushConnection, PushHandler, SubscribeOptions, UpgradeKind, WriteOptions } from './handler.js';
import type { PublishAnswer } from '../publish-endpoint.js';

/** What a connection needs from the gateway around it. */
export interface ConnectionContext {
  readonly streams: Sources;
  /**
   * What a subscription names: a channel, or a wildcard pattern this gateway serves.
   * @throws WarrenError `INVALID_CHANNEL`, `INVALID_PATTERN`, `WILDCARD_NOT_ALLOWED`
   */
  parseTarget(channel: string): string;
  readonly log: Logger;
  /** Most channels one connection may subscribe to. */
  readonly maxSubscriptions: number;
  /** Bytes a client may leave unread before it is dropped as too slow. */
  readonly maxPendingBytes: number;
  publish(channel: string, data: MessageData, options?: MessageOptions): Promise<PublishAnswer>;
  /**
   * Resolves once the broker is connected (at once when it is): a
   * subscription made while it is away waits for it instead of failing.
   * @throws WarrenError `BROKER_UNAVAILABLE` when the gateway closes first
   */
  brokerReady(): Promise<void>;
  /**
   * Admits one more queue for this connection's client when the
   * subscription needs one the gateway does not know yet.
   * @throws WarrenError `QUEUE_BUDGET_EXCEEDED`, `QUEUE_LIMIT_REACHED`
   */
  admitQueue(clientAddress: string, channel: string, consumerId: string | undefined): void;
  /** The connection closed (called once, before `onClose`). */
  closed(conn: Connection): void;
  /** The connection is being closed as a slow consumer (counted once per connection). */
  closedSlow(conn: Connection): void;
}

export interface ConnectionInit {
  consumerId: string | undefined;
  /** Where the connection caps counted it (its client's address among them): given back once it closes. */
  slot: Slot;
  /** The client's TCP socket, for the bytes it carried. */
  socket: Duplex & { readonly bytesWritten?: number };
  /** Its line in the access log (`undefined` when the log is off). */
  access: AccessEntry | undefined;
}

/** What an {@link AppConnection} keeps of the request it came from. */
export interface AppConnectionInit extends ConnectionInit {
  request: IncomingMessage;
  path: string;
  query: URLSearchParams;
}

/** One subscription of a connection: its handle once started, the promise of it while it starts. */
interface Subscribed {
  readonly channel: string;
  handle: SourceHandle | undefined;
  starting: Promise<SourceHandle | undefined> | undefined;
}

const RESOLVED = Promise.resolve();

type Callback = 'onOpen' | 'onMessage' | 'onDrained' | 'onShutdown' | 'onClose';

/**
 * A push connection: a {@link PushTransport} (the socket), the application's
 * {@link PushHandler} (the callbacks) and the connection's subscriptions.
 * It is the `Sink` its subscriptions deliver to, and it keeps the callback
 * order the handler is promised: `onOpen` first, `onMessage` one at a time,
 * `onClose` last and alone.
 *
 * A connection of the default handler keeps nothing of the request it came
 * from (the handler read what it needs when it took the connection):
 * `request`, `path` and `query` throw `REQUEST_NOT_KEPT`. An application's
 * handlers (`onUpgrade`) get an {@link AppConnection}, which keeps them.
 */
export class Connection implements PushConnection, Sink, TransportEvents, Slot {
  // Ten thousand idle connections hold ten thousand of these: every field
  // counts (bench/heap-per-connection.mjs), so no closure, promise or map
  // is made per connection unless it is used, and the request (its header
  // maps and raw headers, a kilobyte and more) is not kept.
  readonly consumerId: string | undefined;
  // The connection is its own place under the caps (a Slot, given back as is): no object of its own.
  /** The client's address, as the connection caps count it. */
  readonly address: string;
  /** Its key under the per-identity cap. */
  readonly key: string | undefined;
  /** The client's socket: what it carried counts in the bytes out, at open and at close. */
  readonly socket: Duplex & { readonly bytesWritten?: number };
  private readonly access: AccessEntry | undefined;
  private state: 'new' | 'open' | 'closing' | 'closed' = 'new';
  private writes = 0;
  /** `pending()` returned more than 0: `onDrained` is owed once the count is 0. */
  private drainOwed = false;
  /** Callbacks run one after another on this chain (back to the shared resolved promise when idle). */
  private chain: Promise<void> = RESOLVED;
  /** One subscription, or a map of them once there are more (most connections have one). */
  private subs: Subscribed | Map<string, Subscribed> | undefined;
  /** `onClose` has run. */
  private finished = false;
  /** Made only when `settled` is asked for before `onClose` has run. */
  private settling: { promise: Promise<void>; resolve: () => void } | undefined;

  constructor(
    private readonly transport: PushTransport,
    private readonly handler: PushHandler,
    private readonly context: ConnectionContext,
    init: ConnectionInit,
  ) {
    this.consumerId = init.consumerId;
    this.address = init.slot.address;
    this.key = init.slot.key;
    this.socket = init.socket;
    this.access = init.access;
  }

  /** The request the connection came from: kept by an {@link AppConnection} only. */
  get request(): IncomingMessage {
    throw notKept('request');
  }

  get path(): string {
    throw notKept('path');
  }

  get query(): URLSearchParams {
    throw notKept('query');
  }

  get kind(): UpgradeKind {
    return this.transport.kind;
  }

  get protocol(): string | undefined {
    return this.transport.protocol;
  }

  /** Resolves once `onClose` has run. */
  get settled(): Promise<void> {
    if (this.finished) return RESOLVED;
    if (this.settling === undefined) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.settling = { promise, resolve };
    }
    return this.settling.promise;
  }

  private isClosed(): boolean {
    return this.state === 'closed';
  }

  get open(): boolean {
    return this.state === 'open';
  }

  get channels(): readonly string[] {
    return this.allSubscriptions().map((sub) => sub.channel);
  }

  /** Starts events and calls `onOpen`. */
  start(): void {
    this.state = 'open';
    // run() never rejects: call() catches and reports every callback's failure.
    void this.run('onOpen', [], (err) => {
      this.context.log.error('onOpen failed; closing the connection', { error: String(err) });
      this.end({ kind: 'error' });
    });
    this.transport.attach(this);
  }

  // TransportEvents: what the transport reports.

  transportMessage(data: string | Buffer): void {
    if (this.state === 'open') void this.run('onMessage', [data]);
  }

  transportClosed(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    const all = this.allSubscriptions();
    this.subs = undefined;
    for (const sub of all)
      stopSubscription(sub).catch((err: unknown) => this.context.log.warn('stopping a subscription failed', { error: String(err) }));
    this.context.closed(this);
    void this.run('onClose', []).finally(() => {
      this.finished = true;
      this.settling?.resolve();
    });
  }

  write(data: MessageData, options: WriteOptions = {}): boolean {
    if (this.state !== 'open') return false;
    const payload = toPayload(data);
    if (this.transport.bufferedBytes() > this.context.maxPendingBytes) {
      this.end({ kind: 'slow-consumer' });
      return false;
    }
    try {
      this.writes++;
      this.transport.write(payload, options, () => this.written());
    } catch (err) {
      this.writes--;
      throw new WarrenError('INVALID_MESSAGE', (err as Error).message);
    }
    return true;
  }

  pending(): number {
    if (this.state === 'closed') return -1;
    if (this.writes > 0) this.drainOwed = true;
    return this.writes;
  }

  close(code?: number, reason?: string): void {
    if (code !== undefined && !(code === 1000 || (Number.isInteger(code) && code >= 3000 && code <= 4999))) {
      throw new RangeError('a close code is 1000 or from 3000 to 4999');
    }
    if (reason !== undefined && Buffer.byteLength(reason) > 123) throw new RangeError('a close reason is at most 123 bytes');
    this.end({ kind: 'normal', ...(code === undefined ? {} : { code }), ...(reason === undefined ? {} : { reason }) });
  }

  async subscribe(channel: string, options: SubscribeOptions = {}): Promise<void> {
    channel = this.context.parseTarget(channel);
    const consumerId =
      options.consumerId === null
        ? undefined
        : options.consumerId === undefined
          ? this.consumerId
          : parseOwnedConsumerId(options.consumerId);
    if (this.state !== 'open') throw new WarrenError('CONNECTION_CLOSED', 'the connection is closed');
    const existing = this.findSubscription(channel);
    if (existing !== undefined) {
      if (existing.handle !== undefined || (await existing.starting) !== undefined) return;
      throw new WarrenError('BROKER_UNAVAILABLE', 'the subscription could not start');
    }
    if (this.subscriptionCount() >= this.context.maxSubscriptions) {
      throw new WarrenError('TOO_MANY_SUBSCRIPTIONS', `at most ${this.context.maxSubscriptions} channels per connection`);
    }
    this.context.admitQueue(this.address, channel, consumerId);
    let failure: unknown;
    const sub: Subscribed = { channel, handle: undefined, starting: undefined };
    sub.starting = this.context
      .brokerReady()
      .then(() => {
        if (this.isClosed() || this.findSubscription(channel) !== sub) throw new WarrenError('CONNECTION_CLOSED', 'the connection closed');
        return this.context.streams.open({
          channel,
          consumerId,
          lastEventId: options.lastEventId,
          since: options.since,
          history: options.history,
          sink: this,
          onEnd: (end) => {
            this.context.log.info('stream ended', { channel, reason: end.reason });
            this.end({ kind: 'broker-unavailable' });
          },
        });
      })
      .catch((err: unknown) => {
        failure = err;
        this.removeSubscription(sub);
        return undefined;
      });
    this.addSubscription(sub);
    const handle = await sub.starting;
    if (handle === undefined) throw failure;
    sub.handle = handle;
    sub.starting = undefined;
    // Closed or unsubscribed while starting: stop it again.
    if (this.isClosed() || this.findSubscription(channel) !== sub) {
      await handle.stop();
      if (this.isClosed()) throw new WarrenError('CONNECTION_CLOSED', 'the connection closed');
    }
  }

  async unsubscribe(channel: string): Promise<void> {
    const sub = this.findSubscription(channel);
    if (sub === undefined) return;
    this.removeSubscription(sub);
    await stopSubscription(sub);
  }

  private findSubscription(channel: string): Subscribed | undefined {
    const subs = this.subs;
    if (subs instanceof Map) return subs.get(channel);
    return subs?.channel === channel ? subs : undefined;
  }

  private subscriptionCount(): number {
    const subs = this.subs;
    return subs instanceof Map ? subs.size : subs === undefined ? 0 : 1;
  }

  private allSubscriptions(): Subscribed[] {
    const subs = this.subs;
    return subs instanceof Map ? [...subs.values()] : subs === undefined ? [] : [subs];
  }

  private addSubscription(sub: Subscribed): void {
    const subs = this.subs;
    if (subs === undefined) this.subs = sub;
    else if (subs instanceof Map) subs.set(sub.channel, sub);
    else
      this.subs = new Map([
        [subs.channel, subs],
        [sub.channel, sub],
      ]);
  }

  /** Removes `sub` if it is still the channel's subscription. */
  private removeSubscription(sub: Subscribed): void {
    const subs = this.subs;
    if (subs === sub) this.subs = undefined;
    else if (subs instanceof Map && subs.get(sub.channel) === sub) subs.delete(sub.channel);
  }

  publish(channel: string, data: MessageData, options?: MessageOptions): Promise<PublishAnswer> {
    return this.context.publish(channel, data, options);
  }

  // Sink: what subscriptions deliver to.

  send(channel: string, message: WarrenMessage, written?: (ok: boolean) => void, pattern?: string): void {
    if (this.state === 'closed') {
      written?.(false);
      return;
    }
    this.transport.deliver(channel, message, written, pattern);
  }

  signal(channel: string, signal: LogSignal): void {
    if (this.state === 'closed') return;
    if (this.transport.signal !== undefined) this.transport.signal(channel, signal);
    else this.transport.deliver(channel, signalMessage(signal));
  }

  pendingBytes(): number {
    return this.transport.bufferedBytes();
  }

  /** A WebSocket confirms each delivery with the pong of a ping sent after it. */
  confirmsReceipt(): boolean {
    return this.transport.kind === 'websocket';
  }

  /** Ends the connection for `reason` (the subscription machinery: slow consumer, broker lost, superseded; handlers: revoked). */
  drop(reason: SinkCloseReason, detail?: string): void {
    this.end(reason === 'revoked' && detail !== undefined ? { kind: 'revoked', reason: detail } : { kind: reason });
  }

  /** The gateway is stopping: `onShutdown`, then close for `reason` ("going away", or "service restart" when draining). */
  async shutdown(timeoutMs: number, reason: CloseReason = { kind: 'shutdown' }): Promise<void> {
    if (this.state !== 'open') return;
    if (this.handler.onShutdown !== undefined) {
      const done = this.run('onShutdown', []);
      await Promise.race([done, new Promise((resolve) => setTimeout(resolve, timeoutMs).unref())]);
    }
    this.end(reason);
  }

  /** Closes the socket for `reason` (once). */
  end(reason: CloseReason): void {
    if (this.state === 'closed') return;
    if (reason.kind === 'slow-consumer' && this.state !== 'closing') this.context.closedSlow(this);
    if (this.state !== 'closing') this.state = 'closing';
    noteEntry(this.access, { reason: reason.kind });
    this.transport.end(reason);
  }

  private written(): void {
    this.writes--;
    if (this.writes === 0 && this.drainOwed && this.state !== 'closed') {
      this.drainOwed = false;
      // Not chained behind onMessage: a handler may wait in onMessage for the drain.
      void this.call('onDrained', []);
    }
  }

  /** Queues a callback behind the ones before it. */
  private run(name: Callback, args: unknown[], onError?: (err: unknown) => void): Promise<void> {
    const next = this.chain.then(() => this.call(name, args, onError));
    this.chain = next;
    // Idle again: drop the settled promise rather than keep it per connection.
    void next.then(() => {
      if (this.chain === next) this.chain = RESOLVED;
    });
    return next;
  }

  private async call(name: Callback, args: unknown[], onError?: (err: unknown) => void): Promise<void> {
    const callback = this.handler[name];
    if (typeof callback !== 'function') return;
    try {
      await (callback as (...a: unknown[]) => unknown).call(this.handler, this, ...args);
    } catch (err) {
      if (onError !== undefined) onError(err);
      else this.context.log.error(`${name} failed`, { error: String(err) });
    }
  }
}

/**
 * The connection of an application's handler (`onUpgrade`): it keeps the
 * request it came from, with its path and query (Rack's `env`).
 */
export class AppConnection extends Connection {
  private readonly keptRequest: IncomingMessage;
  private readonly keptPath: string;
  private readonly keptQuery: URLSearchParams;

  constructor(transport: PushTransport, handler: PushHandler, context: ConnectionContext, init: AppConnectionInit) {
    super(transport, handler, context, init);
    this.keptRequest = init.request;
    this.keptPath = init.path;
    this.keptQuery = init.query;
  }

  override get request(): IncomingMessage {
    return this.keptRequest;
  }

  override get path(): string {
    return this.keptPath;
  }

  override get query(): URLSearchParams {
    return this.keptQuery;
  }
}

function notKept(what: 'request' | 'path' | 'query'): WarrenError {
  return new WarrenError(
    'REQUEST_NOT_KEPT',
    `conn.${what}: the default handler's connections keep no request once open; read it in onUpgrade, or take the connection with an onUpgrade handler (its connections keep conn.request, conn.path and conn.query)`,
  );
}

/** Stops a subscription, once it has started if it is still starting. */
async function stopSubscription(sub: Subscribed): Promise<void> {
  const handle = sub.handle ?? (await sub.starting);
  await handle?.stop();
}

/**
 * A consumer id, `<identity>/<consumer id>` (how the gateway keeps a
 * client's own ids under the identity the app vouched for), or
 * `anon.<consumer id>` (an id nobody vouched for, where identities are vouched for).
 * @throws WarrenError `INVALID_CONSUMER_ID`
 */
function parseOwnedConsumerId(input: string): string {
  const owned = typeof input === 'string' && input.startsWith(UNVOUCHED_PREFIX) ? input.slice(UNVOUCHED_PREFIX.length) : input;
  const parts = typeof owned === 'string' ? owned.split('/') : [];
  if (parts.length === 0 || parts.length > 2) parseConsumerId(undefined);
  for (const part of parts) parseConsumerId(part);
  return input;
}

/** What `write()` hands the transport: text or bytes. */
function toPayload(data: MessageData): string | Buffer {
  if (typeof data === 'string') return data;
  if (Buffer.isBuffer(data)) return data;
  if (data instanceof Uint8Array) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (data instanceof ArrayBuffer) return Buffer.from(data);
  let json: string | undefined;
  try {
    json = JSON.stringify(data);
  } catch (err) {
    throw new WarrenError('INVALID_MESSAGE', `the value cannot be encoded as JSON: ${(err as Error).message}`);
  }
  if (json === undefined) throw new WarrenError('INVALID_MESSAGE', 'the value cannot be encoded as JSON');
  return json;
}
