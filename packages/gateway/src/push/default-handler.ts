import type { IncomingMessage } from 'node:http';
import {
  ClientFrameError,
  HEADERS,
  isPattern,
  parseClientFrame,
  PATHS,
  parseSince,
  WarrenError,
  type SubscribeFrame,
  type ClientFrame,
  type ReplyFrame,
  type ServerFrame,
} from '@warren/protocol';
import type { AppReply, Identity } from '../upstream.js';
import { findLastEventId } from '../consumer-id.js';
import type { Admission } from '../admission.js';
import { parseHistory } from '../logs/channel-logs.js';
import type { Logger } from '../logger.js';
import { isTextual } from '../transports/encoding.js';
import { WARREN_PROTOCOL } from '../transports/websocket.js';
import type { Presence, PresenceChange, PresenceTicket } from '../presence/presence.js';
import { refusePattern, type WildcardRoutes } from '../wildcards.js';
import { NO_REQUEST, viewOf, type RequestView } from '../request-view.js';
import type { PushConnection, PushHandler, PushUpgrade, SubscribeOptions, UpgradeDecider } from './handler.js';

/** What the standalone gateway's handler needs from the gateway around it. */
export interface DefaultHandlerDeps {
  log: Logger;
  /** Who reads (identify, tokens), whether the gateway is open, and what counts as a refusal. */
  admission: Admission;
  /** Subscriptions are authorized again every `reauthIntervalMs` (with `--auth-url` or tokens). */
  reauthIntervalMs: number;
  /** Declares the consumer's queue, or starts the channel's fan-out (nothing while the broker is away). */
  prepareStream(req: IncomingMessage, channel: string, consumerId: string | undefined): Promise<void>;
  /** Most channels one socket may subscribe to (`--ws-max-subscriptions`). */
  maxSubscriptions: number;
  /** Which channels may be subscribed by pattern (`--wildcard-routes`). */
  wildcards: WildcardRoutes;
  /** Whether a channel is logged (`--log-routes`): `?history=` means something there only. */
  isLogged(channel: string): boolean;
  /** Presence on the channels under `--presence-routes`; absent without them. */
  presence: Presence | undefined;
  /** Sends a client's message to the application; absent without one. */
  sendToApp: ((req: RequestView, channel: string, who: Identity, body: Buffer, contentType: string) => Promise<AppReply>) | undefined;
}

/** Most client messages waiting for the application's answer, per socket. */
export const MAX_IN_FLIGHT = 16;

/** Most subscribes per socket the application is asked about at once; the others wait their turn. */
export const MAX_AUTH_IN_FLIGHT = 16;

/**
 * The handler of `warren serve`: a stream on `/<channel>` reads that
 * channel (as the consumer the request identifies); a `warren.v1` socket
 * (on a channel or on `/_warren/ws`) subscribes and unsubscribes with JSON
 * frames; client messages go to the application over HTTP.
 *
 * WebSocket frames with `warren.v1` are the `ClientFrame`s and `ServerFrame`s
 * of `@warren/protocol` (docs/protocol.md, "Frames").
 *
 * Without the subprotocol each message is one frame (text for textual
 * content types, binary otherwise), and each client frame goes to the
 * application at the socket's channel path.
 */
export function createDefaultDecider(deps: DefaultHandlerDeps): UpgradeDecider {
  return (upgrade) => (upgrade.kind === 'sse' ? decideSse(deps, upgrade) : decideWebSocket(deps, upgrade));
}

async function decideSse(deps: DefaultHandlerDeps, upgrade: PushUpgrade): Promise<PushHandler> {
  const { request: req, query } = upgrade;
  const channel = deps.wildcards.parse(upgrade.path);
  const requested = upgrade.consumerId;
  const lastEventId = findLastEventId(req, query);
  const token = deps.admission.findToken(req, query);
  const watch = presenceFlag(deps, channel, query);
  const { consumerId, identity } = await deps.admission.identify(req, token, channel, requested);
  // An EventSource closes for good on any answer but 200, so during a broker
  // outage the stream opens (with heartbeats) and subscribes once the broker is back.
  deps.admission.checkOpen(true);
  const from = startOf(deps, channel, query, lastEventId);
  upgrade.consumerId = consumerId;
  // The id the client can send back (not the identity prefix, which is the app's to give).
  if (requested !== undefined) upgrade.setHeader(HEADERS.consumerId, requested);
  // A stream nobody asks about again (most of them): the least state an idle stream can hold.
  if (!deps.admission.reauthorizing && deps.presence?.isPresenceChannel(channel) !== true) return new PlainStream(deps, channel, from);
  // Kept only to be authorized again: an idle stream holds no request.
  const kept = deps.admission.reauthorizing ? viewOf(req) : NO_REQUEST;
  return new StreamSession(deps, kept, token, requested, channel, consumerId, from, identity, watch);
}

async function decideWebSocket(deps: DefaultHandlerDeps, upgrade: PushUpgrade): Promise<PushHandler> {
  const { request: req, query } = upgrade;
  const channel = upgrade.path === PATHS.socket ? undefined : deps.wildcards.parse(upgrade.path);
  const requested = upgrade.consumerId;
  const lastEventId = findLastEventId(req, query);
  const token = deps.admission.findToken(req, query);
  deps.admission.checkOpen();
  const watch = channel === undefined ? false : presenceFlag(deps, channel, query);
  const who =
    channel === undefined ? { consumerId: requested, identity: undefined } : await deps.admission.identify(req, token, channel, requested);
  const from = channel === undefined ? {} : startOf(deps, channel, query, lastEventId);
  upgrade.consumerId = who.consumerId;
  // Kept only to ask the application again (authorization, client messages): an idle socket holds no request.
  const kept = deps.admission.reauthorizing || deps.sendToApp !== undefined ? viewOf(req) : NO_REQUEST;
  return new SocketSession(deps, kept, token, requested, channel, who.consumerId, from, who.identity, watch);
}

/**
 * Whether a stream asks for its channel's joins and leaves (`?presence=1`).
 * @throws WarrenError `INVALID_REQUEST` for another value, or a channel without presence
 */
function presenceFlag(deps: DefaultHandlerDeps, channel: string, query: URLSearchParams): boolean {
  const value = query.get('presence');
  if (value === null || value === '0' || value === 'false') return false;
  if (value !== '1' && value !== 'true') throw new WarrenError('INVALID_REQUEST', 'presence is 1 (or true) to receive joins and leaves');
  refusePattern(channel, 'presence');
  if (deps.presence?.isPresenceChannel(channel) !== true) {
    throw new WarrenError('INVALID_REQUEST', `${channel} is not a presence channel (under --presence-routes)`);
  }
  return true;
}

/** A subscription's part in presence: counted as its identity's (when vouched for), and its listener of joins and leaves. */
class PresenceHold {
  ticket: PresenceTicket | undefined;
  unwatch: (() => void) | undefined;

  release(): void {
    this.ticket?.leave();
    this.ticket = undefined;
    this.unwatch?.();
    this.unwatch = undefined;
  }
}

/**
 * Counts a live subscription on a presence channel as its identity's, and
 * (when it asked) sends it the channel's joins and leaves with `send`.
 * Does nothing on other channels, or for an identity nobody vouched for.
 */
function holdPresence(
  deps: DefaultHandlerDeps,
  hold: PresenceHold,
  channel: string,
  identity: string | undefined,
  watch: boolean,
  send: (change: PresenceChange) => void,
): void {
  const presence = deps.presence;
  if (presence === undefined || isPattern(channel) || !presence.isPresenceChannel(channel)) return;
  if (identity !== undefined && hold.ticket === undefined) hold.ticket = presence.enter(channel, identity);
  if (watch && hold.unwatch === undefined) hold.unwatch = presence.watch(channel, send);
}

/** Where a stream starts: `Last-Event-ID`, and on a logged channel `?history=` and `?since=`. */
type StreamStart = Pick<SubscribeOptions, 'lastEventId' | 'history' | 'since'>;

/** A stream that starts now: one object for all of them. */
const FROM_NOW: StreamStart = Object.freeze({});

/**
 * The start a request asks for (`?history=` and `?since=` mean something on logged channels only).
 * @throws WarrenError `INVALID_REQUEST`, `INVALID_MESSAGE_ID`
 */
function startOf(deps: DefaultHandlerDeps, channel: string, query: URLSearchParams, lastEventId: string | undefined): StreamStart {
  if (isPattern(channel)) {
    // Live only: an EventSource's Last-Event-ID is ignored, history asked for is refused.
    if (query.has('history') || query.has('since')) refusePattern(channel, 'history (?history=, ?since=)');
    return FROM_NOW;
  }
  const from: StreamStart = lastEventId === undefined ? FROM_NOW : { lastEventId };
  if (!deps.isLogged(channel)) return from;
  const history = parseHistory(query.get('history'));
  const since = query.get('since') ?? undefined;
  if (since !== undefined) parseSince(since);
  return { ...from, ...(history === undefined ? {} : { history }), ...(since === undefined ? {} : { since }) };
}

// The handlers are classes, not object literals of closures: one object per
// connection, the callbacks on the prototype (bench/heap-per-connection.mjs).

/** What both default handlers hold: who asks, for which channel, and from where the stream resumes. */
abstract class DefaultSession<C extends string | undefined> implements PushHandler {
  [key: string]: unknown;
  protected reauth: NodeJS.Timeout | undefined;

  constructor(
    protected readonly deps: DefaultHandlerDeps,
    /** What the application is sent of the request when asked again ({@link NO_REQUEST} when it never is). */
    protected readonly req: RequestView,
    protected readonly token: string | undefined,
    protected readonly requested: string | undefined,
    /** The channel of the URL path (none for `/_warren/ws`). */
    protected readonly channel: C,
    protected readonly consumerId: string | undefined,
    /** Where the path's channel starts (`Last-Event-ID`, `?history=`, `?since=`). */
    protected readonly from: StreamStart,
    /** The identity the app or a token vouched for on the path's channel, if any. */
    protected readonly identity: string | undefined = undefined,
    /** The path's channel asked for joins and leaves (`?presence=1`). */
    protected readonly watch = false,
  ) {}

  prepare(upgrade: PushUpgrade): Promise<void> {
    // A stream on a channel's path reads it from the start; `/_warren/ws` subscribes by frames.
    return this.channel === undefined ? Promise.resolve() : this.deps.prepareStream(upgrade.request, this.channel, this.consumerId);
  }

  onClose(): void {
    clearInterval(this.reauth);
  }
}

/**
 * Declares what a default SSE stream reads. An EventSource closes for good
 * on any answer but 200: when the broker goes away while the queue is being
 * declared, the stream opens anyway and subscribes once the broker is back.
 */
async function prepareSse(deps: DefaultHandlerDeps, upgrade: PushUpgrade, channel: string): Promise<void> {
  try {
    await deps.prepareStream(upgrade.request, channel, upgrade.consumerId);
  } catch (err) {
    if (!(err instanceof WarrenError && (err.code === 'BROKER_UNAVAILABLE' || err.code === 'BROKER_TIMEOUT'))) throw err;
  }
}

/**
 * Subscribes a default SSE stream to its channel, as the connection's
 * consumer. @returns whether it is subscribed (a stream that could not
 * start is closed: EventSource reconnects by itself and sends Last-Event-ID)
 */
async function subscribeSse(deps: DefaultHandlerDeps, conn: PushConnection, channel: string, from: StreamStart): Promise<boolean> {
  try {
    await conn.subscribe(channel, { consumerId: conn.consumerId ?? null, ...from });
    return true;
  } catch (err) {
    if (!conn.open) return false;
    deps.log.warn('stream could not start', { error: err instanceof Error ? err.message : String(err) });
    conn.drop('broker-unavailable');
    return false;
  }
}

/**
 * A default SSE stream nobody asks about again: no re-authorization (no
 * `--auth-url` or tokens), not on a presence channel. Ten thousand idle
 * streams hold ten thousand of these: three fields.
 */
class PlainStream implements PushHandler {
  [key: string]: unknown;

  constructor(
    private readonly deps: DefaultHandlerDeps,
    private readonly channel: string,
    private readonly from: StreamStart,
  ) {}

  prepare(upgrade: PushUpgrade): Promise<void> {
    return prepareSse(this.deps, upgrade, this.channel);
  }

  async onOpen(conn: PushConnection): Promise<void> {
    await subscribeSse(this.deps, conn, this.channel, this.from);
  }
}

/** One default SSE stream that is re-authorized from time to time, or counted in its channel's presence. */
class StreamSession extends DefaultSession<string> {
  /** Made only on a presence channel (one object per connection is what an idle stream costs). */
  private hold: PresenceHold | undefined;

  override prepare(upgrade: PushUpgrade): Promise<void> {
    return prepareSse(this.deps, upgrade, this.channel);
  }

  async onOpen(conn: PushConnection): Promise<void> {
    const deps = this.deps;
    // Authorized again from time to time: a stream the app (or the token) no longer allows is closed.
    if (deps.admission.reauthorizing) {
      this.reauth = setInterval(() => {
        deps.admission.identify(this.req, this.token, this.channel, this.requested, true).catch((err: unknown) => {
          if (deps.admission.isRefusal(err)) conn.drop('revoked');
          else deps.log.warn('re-authorization failed; the stream stays open', { error: (err as Error).message });
        });
      }, deps.reauthIntervalMs);
      this.reauth.unref();
    }
    if (!(await subscribeSse(deps, conn, this.channel, this.from))) return;
    if (!conn.open || isPattern(this.channel) || deps.presence?.isPresenceChannel(this.channel) !== true) return;
    this.hold = new PresenceHold();
    // Events named apart (as the signals are), so that `onmessage` never mistakes one for data.
    holdPresence(deps, this.hold, this.channel, this.identity, this.watch, (change) =>
      conn.write(JSON.stringify({ channel: change.channel, identity: change.identity }), { event: `warren-${change.type}` }),
    );
  }

  override onClose(): void {
    super.onClose();
    this.hold?.release();
  }
}

/** One default WebSocket: its `warren.v1` commands, re-authorization and messages to the app. */
class SocketSession extends DefaultSession<string | undefined> {
  private conn!: PushConnection;
  private json = false;
  private inFlight = 0;
  /** Subscribes not yet done, by channel: counted against the cap before the app is asked (made with the first). */
  private pending: Map<string, Promise<void>> | undefined;
  /** Subscribes asking the app now, and those waiting for their turn (made with the first to wait). */
  private asking = 0;
  private turns: Array<() => void> | undefined;
  /** Presence per subscribed presence channel (made with the first). */
  private holds: Map<string, PresenceHold> | undefined;
  /** `presence` frames waiting for their answer. */
  private presenceAsks = 0;

  onOpen(conn: PushConnection): void {
    this.conn = conn;
    this.json = conn.protocol === WARREN_PROTOCOL;
    if (this.deps.admission.reauthorizing) {
      this.reauth = setInterval(() => {
        for (const channel of conn.channels) {
          void this.deps.admission.identify(this.req, this.token, channel, this.requested, true).then(
            () => undefined,
            (err: unknown) => {
              if (!this.deps.admission.isRefusal(err) || !conn.channels.includes(channel)) return;
              // No longer allowed: a raw socket (one channel) is closed; a warren.v1 one loses the channel.
              if (!this.json) {
                conn.drop('revoked');
                return;
              }
              this.release(channel);
              conn.unsubscribe(channel).catch((err: unknown) => this.deps.log.warn('unsubscribe failed', { error: String(err) }));
              this.error(new WarrenError('FORBIDDEN', 'no longer allowed on this channel'), channel);
            },
          );
        }
      }, this.deps.reauthIntervalMs);
      this.reauth.unref();
    }
    if (this.channel !== undefined) void this.subscribe(this.channel, this.from, false, this.watch, this.consumerId, this.identity);
  }

  override onClose(): void {
    super.onClose();
    for (const hold of this.holds?.values() ?? []) hold.release();
    this.holds = undefined;
  }

  /** The channel's presence is no longer this socket's (unsubscribed, or no longer allowed). */
  private release(channel: string): void {
    this.holds?.get(channel)?.release();
    this.holds?.delete(channel);
  }

  /**
   * Subscribes `channel` as the consumer the app vouches for (`known` when
   * already identified). The cap is checked before the app is asked, a
   * channel already on its way is not asked about again, and at most
   * {@link MAX_AUTH_IN_FLIGHT} questions per socket are open at once.
   */
  async subscribe(
    channel: string,
    from: StreamStart,
    reply: boolean,
    watch: boolean,
    known?: string,
    knownIdentity?: string,
  ): Promise<void> {
    const conn = this.conn;
    let identity = knownIdentity;
    try {
      // A pattern this gateway does not serve is refused before the app is asked about it.
      this.deps.wildcards.parse(channel);
      if (watch) presenceFlag(this.deps, channel, new URLSearchParams('presence=1'));
      const earlier = this.pending?.get(channel);
      if (earlier !== undefined) {
        await earlier;
        if (!conn.channels.includes(channel)) return; // the first subscribe said why
      } else {
        if (
          !conn.channels.includes(channel) &&
          new Set([...conn.channels, ...(this.pending?.keys() ?? [])]).size >= this.deps.maxSubscriptions
        ) {
          throw new WarrenError('TOO_MANY_SUBSCRIPTIONS', `at most ${this.deps.maxSubscriptions} channels per connection`);
        }
        const attempt = this.attach(channel, from, known);
        const pending = (this.pending ??= new Map());
        pending.set(
          channel,
          attempt.then(
            () => undefined,
            () => undefined,
          ),
        );
        try {
          identity ??= await attempt;
        } finally {
          pending.delete(channel);
          if (pending.size === 0 && this.pending === pending) this.pending = undefined;
        }
      }
    } catch (err) {
      if (!conn.open) return;
      if (this.json) this.error(err, channel);
      else if (err instanceof WarrenError && (err.code === 'UNAUTHORIZED' || err.code === 'FORBIDDEN')) conn.drop('revoked', err.code);
      else conn.drop('broker-unavailable');
      return;
    }
    if (conn.open && conn.channels.includes(channel) && !isPattern(channel) && this.deps.presence?.isPresenceChannel(channel) === true) {
      this.holds ??= new Map();
      let hold = this.holds.get(channel);
      if (hold === undefined) this.holds.set(channel, (hold = new PresenceHold()));
      // A raw socket carries message bodies only: no join or leave frames.
      holdPresence(this.deps, hold, channel, identity, watch && this.json, (change) =>
        this.frame({ type: change.type, channel: change.channel, identity: change.identity }),
      );
    }
    if (reply || this.json) this.frame({ type: 'subscribed', channel });
  }

  /** Subscribes `channel`, asking the app who reads unless known. @returns the identity it vouched for, if it was asked */
  private async attach(channel: string, from: StreamStart, known: string | undefined): Promise<string | undefined> {
    const conn = this.conn;
    let consumerId = known;
    let identity: string | undefined;
    if (known === undefined && !conn.channels.includes(channel)) {
      await this.turn();
      try {
        if (!conn.open) throw new WarrenError('CONNECTION_CLOSED', 'the connection is closed');
        const who = await this.identify(channel);
        consumerId = who.consumerId;
        identity = who.identity;
      } finally {
        this.nextTurn();
      }
    }
    await conn.subscribe(channel, { consumerId: consumerId ?? null, ...from });
    return identity;
  }

  /** Resolves when this socket may ask the app one more question. */
  private turn(): Promise<void> {
    if (this.asking < MAX_AUTH_IN_FLIGHT) {
      this.asking++;
      return Promise.resolve();
    }
    return new Promise((resolve) => (this.turns ??= []).push(resolve));
  }

  /** Hands a finished question's turn to the next waiting subscribe. */
  private nextTurn(): void {
    const next = this.turns?.shift();
    if (next !== undefined) next();
    else this.asking--;
  }

  private identify(channel: string): Promise<Identity> {
    return this.deps.admission.identify(this.req, this.token, channel, this.requested);
  }

  onMessage(_conn: PushConnection, data: string | Buffer): void {
    if (!this.json) {
      // A raw socket's message goes to the application at its channel's path.
      if (this.channel === undefined) return;
      const binary = typeof data !== 'string';
      void this.toApp(
        this.channel,
        binary ? data : Buffer.from(data),
        binary ? 'application/octet-stream' : 'text/plain; charset=utf-8',
        undefined,
      );
      return;
    }
    if (typeof data !== 'string') {
      this.error(new WarrenError('INVALID_FRAME', 'warren.v1 frames are JSON text'));
      return;
    }
    let frame: ClientFrame;
    try {
      frame = parseClientFrame(data);
    } catch (err) {
      // A refused frame's error names its channel and (a send's) id, as its reply would.
      const echo = err instanceof ClientFrameError ? err : undefined;
      this.error(err, echo?.channel, echo?.id === undefined ? {} : { id: echo.id });
      return;
    }
    if (frame.type === 'subscribe') {
      void this.subscribe(frame.channel, frameStart(frame), true, frame.presence === true);
    } else if (frame.type === 'presence') {
      void this.answerPresence(frame.channel, frame.id);
    } else if (frame.type === 'unsubscribe') {
      const channel = frame.channel;
      this.release(channel);
      this.conn.unsubscribe(channel).then(
        () => this.frame({ type: 'unsubscribed', channel }),
        (err: unknown) => this.error(err, channel),
      );
    } else {
      const payload = frame.data;
      const body = typeof payload === 'string' ? Buffer.from(payload) : Buffer.from(JSON.stringify(payload));
      void this.toApp(frame.channel, body, typeof payload === 'string' ? 'text/plain; charset=utf-8' : 'application/json', frame.id);
    }
  }

  /**
   * Answers a `presence` frame: who is on `channel`, once the client is
   * allowed to read it (asked as a subscribe is, in turn).
   */
  private async answerPresence(channel: string, id: string | undefined): Promise<void> {
    const tag = id === undefined ? {} : { id };
    if (this.presenceAsks >= MAX_IN_FLIGHT) {
      this.error(new WarrenError('TOO_MANY_REQUESTS', `at most ${MAX_IN_FLIGHT} presence questions may wait`), channel, tag);
      return;
    }
    this.presenceAsks++;
    try {
      const presence = this.deps.presence;
      if (presence === undefined || !presence.isPresenceChannel(channel)) {
        throw new WarrenError('INVALID_REQUEST', `${channel} is not a presence channel (under --presence-routes)`);
      }
      await this.turn();
      try {
        await this.identify(channel);
      } finally {
        this.nextTurn();
      }
      if (!this.conn.open) return;
      this.frame({ type: 'presence', ...tag, channel, members: presence.members(channel) });
    } catch (err) {
      if (this.conn.open) this.error(err, channel, tag);
    } finally {
      this.presenceAsks--;
    }
  }

  /**
   * Sends a client's message to the application and pushes its answer back
   * to this client: in `warren.v1`, a `reply` frame (no `data` for 204); on a
   * raw socket, the answer's body as one frame (nothing for 204). Failures
   * are error frames; the socket stays open.
   */
  private async toApp(channel: string, body: Buffer, contentType: string, id: string | undefined): Promise<void> {
    const send = this.deps.sendToApp;
    const tag = id === undefined ? {} : { id };
    if (send === undefined) {
      this.error(new WarrenError('NO_APP_CONFIGURED', 'messages from clients go to the application, and none is configured'), channel, tag);
      return;
    }
    if (this.inFlight >= MAX_IN_FLIGHT) {
      this.error(new WarrenError('TOO_MANY_REQUESTS', `at most ${MAX_IN_FLIGHT} messages may wait for the application`), channel, tag);
      return;
    }
    this.inFlight++;
    try {
      const reply = await send(this.req, channel, await this.identify(channel), body, contentType);
      if (!this.conn.open) return;
      if (this.json) {
        const frame: ReplyFrame = { type: 'reply', ...tag, channel, status: reply.status };
        if (reply.status !== 204) {
          const textual = reply.contentType === undefined || isTextual(reply.contentType);
          frame.contentType = reply.contentType;
          frame.data = textual ? reply.body.toString('utf8') : reply.body.toString('base64');
          if (!textual) frame.encoding = 'base64';
        }
        this.frame(frame);
      } else if (reply.status !== 204 && reply.body.length > 0) {
        const binary = reply.contentType !== undefined && !isTextual(reply.contentType);
        this.conn.write(binary ? reply.body : reply.body.toString('utf8'));
      }
    } catch (err) {
      this.error(err, channel, tag);
    } finally {
      this.inFlight--;
    }
  }

  private error(err: unknown, channel?: string, extra: { id?: string } = {}): void {
    const error = err instanceof WarrenError ? err : new WarrenError('INTERNAL_ERROR', 'internal error');
    if (!(err instanceof WarrenError)) this.deps.log.error('websocket error', { error: String(err) });
    this.frame({ type: 'error', ...extra, code: error.code, message: error.message, ...(channel === undefined ? {} : { channel }) });
  }

  private frame(frame: ServerFrame): void {
    this.conn.write(JSON.stringify(frame));
  }
}

/** Where a `subscribe` frame starts: `since` (or its older name `lastEventId`), `history`. */
function frameStart(frame: SubscribeFrame): StreamStart {
  const from: StreamStart = {};
  if (frame.lastEventId !== undefined) from.lastEventId = frame.lastEventId;
  if (frame.since !== undefined) from.since = frame.since;
  if (frame.history !== undefined) from.history = frame.history;
  return from;
}
