import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { parseChannel, parseMessageId, WarrenError, type WarrenMessage } from '@warren/protocol';
import type { Logger } from '../logger.js';
import type { Sink, SinkCloseReason } from '../streams/sink.js';
import type { StreamHandle, Streams } from '../streams/streams.js';
import { isTextual, messageFrame } from './encoding.js';
import type { AppReply, Identity } from '../app.js';

/** The subprotocol of Warren's JSON frames. Without it a socket gets raw message bodies. */
export const WARREN_PROTOCOL = 'warren.v1';

/** WebSocket close codes Warren uses. */
export const CLOSE_CODES = {
  normal: 1000,
  goingAway: 1001,
  policyViolation: 1008,
  tooBig: 1009,
  internalError: 1011,
  tryAgainLater: 1013,
  slowConsumer: 4008,
} as const;

export interface WebSocketOptions {
  maxPayload: number;
  pingIntervalMs: number;
  maxSubscriptions: number;
}

export interface SocketRequest {
  /** The channel of the URL path, or none for `/_warren/ws`. */
  channel: string | undefined;
  lastEventId: string | undefined;
  /** Authorizes a channel for this socket and says which consumer reads it (none: anonymous). */
  identify(channel: string): Promise<Identity>;
  /** Authorizes a channel again; resolves `false` when it is no longer allowed. Absent without auth. */
  reauthorize: ((channel: string) => Promise<boolean>) | undefined;
  reauthIntervalMs: number;
  /** Called once when the socket closes. */
  onClose(): void;
  /** Sends a client's message to the application; absent without an application. */
  sendToApp: ((channel: string, who: Identity, body: Buffer, contentType: string) => Promise<AppReply>) | undefined;
}

/** Most client messages waiting for the application's answer, per socket. */
export const MAX_IN_FLIGHT = 16;

/**
 * WebSocket streams with the `ws` package. A socket on a channel path
 * receives that channel. With the `warren.v1` subprotocol, frames are JSON
 * and the socket can subscribe to and unsubscribe from more channels:
 *
 * - client → server: `{"type":"subscribe","channel":"/a","lastEventId"?:"…"}`,
 *   `{"type":"unsubscribe","channel":"/a"}`
 * - server → client: `{"type":"message","channel","id","event"?,"contentType","data","encoding"?}`,
 *   `{"type":"subscribed","channel"}`, `{"type":"unsubscribed","channel"}`,
 *   `{"type":"error","code","message","channel"?}`
 *
 * Without the subprotocol each message is one frame: text for textual content
 * types, binary otherwise. Any other client message is answered with an
 * error frame `NO_APP_CONFIGURED` (a later version sends it to the app).
 */
export class WebSocketTransport {
  private readonly wss: WebSocketServer;
  private readonly connections = new Set<WebSocketConnection>();

  constructor(
    private readonly streams: Streams,
    private readonly log: Logger,
    private readonly options: WebSocketOptions,
  ) {
    this.wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      perMessageDeflate: false,
      maxPayload: options.maxPayload,
      handleProtocols: (protocols) => (protocols.has(WARREN_PROTOCOL) ? WARREN_PROTOCOL : false),
    });
  }

  get size(): number {
    return this.connections.size;
  }

  /** Completes the upgrade of a request the gateway already checked. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, request: SocketRequest): void {
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      const connection = new WebSocketConnection(ws, this.streams, this.log, this.options, request, request.identify);
      this.connections.add(connection);
      ws.once('close', () => {
        this.connections.delete(connection);
        request.onClose();
      });
      if (request.channel !== undefined) void connection.subscribe(request.channel, request.lastEventId, false);
    });
  }

  /** Closes every socket with 1001 (going away). */
  shutdown(): void {
    for (const connection of this.connections) connection.close('shutdown');
  }
}

class WebSocketConnection implements Sink {
  private readonly json: boolean;
  private readonly subscriptions = new Map<string, Promise<StreamHandle | undefined>>();
  private alive = true;
  private inFlight = 0;
  private readonly pinger: NodeJS.Timeout;

  constructor(
    private readonly ws: WebSocket,
    private readonly streams: Streams,
    private readonly log: Logger,
    private readonly options: WebSocketOptions,
    private readonly request: SocketRequest,
    private readonly identify: (channel: string) => Promise<Identity>,
  ) {
    this.json = ws.protocol === WARREN_PROTOCOL;
    ws.on('pong', () => (this.alive = true));
    this.pinger = setInterval(() => {
      if (!this.alive) {
        ws.terminate();
        return;
      }
      this.alive = false;
      ws.ping();
    }, options.pingIntervalMs);
    this.pinger.unref();
    ws.on('message', (data, isBinary) => this.onMessage(data, isBinary));
    const reauthorize = request.reauthorize;
    const reauth =
      reauthorize === undefined
        ? undefined
        : setInterval(() => {
            for (const channel of this.subscriptions.keys()) {
              void reauthorize(channel).then((allowed) => {
                if (allowed || !this.subscriptions.has(channel)) return;
                // No longer allowed: a raw socket (one channel) is closed; a warren.v1 one loses the channel.
                if (!this.json) {
                  this.close('revoked');
                  return;
                }
                void this.unsubscribe(channel, false);
                this.error(new WarrenError('FORBIDDEN', 'no longer allowed on this channel'), channel);
              });
            }
          }, request.reauthIntervalMs);
    reauth?.unref();
    ws.once('close', () => clearInterval(reauth));
    ws.on('error', (err) => this.log.debug('websocket error', { error: err.message }));
    ws.once('close', () => {
      clearInterval(this.pinger);
      const all = [...this.subscriptions.values()];
      this.subscriptions.clear();
      for (const handle of all) void handle.then((h) => h?.stop());
    });
  }

  send(channel: string, message: WarrenMessage, written: (ok: boolean) => void): void {
    if (this.ws.readyState !== WebSocket.OPEN) {
      written(false);
      return;
    }
    const done = (err?: Error): void => written(err == null);
    if (this.json) this.ws.send(JSON.stringify(messageFrame(channel, message)), done);
    else this.ws.send(message.body, { binary: !isTextual(message.contentType) }, done);
  }

  pendingBytes(): number {
    return this.ws.bufferedAmount;
  }

  close(reason: SinkCloseReason): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    if (reason === 'slow-consumer') {
      // It does not read: the close frame would sit behind the backlog.
      this.ws.terminate();
      return;
    }
    const code = reason === 'shutdown' ? CLOSE_CODES.goingAway : reason === 'revoked' ? CLOSE_CODES.policyViolation : CLOSE_CODES.tryAgainLater;
    this.ws.close(code, reason);
  }

  async subscribe(channel: string, lastEventId: string | undefined, reply: boolean): Promise<void> {
    if (this.subscriptions.has(channel)) {
      if (reply) this.frame({ type: 'subscribed', channel });
      return;
    }
    if (this.subscriptions.size >= this.options.maxSubscriptions) {
      this.error(new WarrenError('TOO_MANY_SUBSCRIPTIONS', `at most ${this.options.maxSubscriptions} channels per socket`), channel);
      return;
    }
    const opening = this.identify(channel)
      .then(({ consumerId }) =>
        this.streams.open({
          channel,
          consumerId,
        lastEventId,
        sink: this,
          onEnd: (end) => {
            this.log.info('websocket stream ended', { reason: end.reason });
            this.close('broker-unavailable');
          },
        }),
      )
      .catch((err: unknown) => {
        this.subscriptions.delete(channel);
        if (this.json) this.error(err, channel);
        else if (err instanceof WarrenError && (err.code === 'UNAUTHORIZED' || err.code === 'FORBIDDEN')) this.ws.close(CLOSE_CODES.policyViolation, err.code);
        else this.ws.close(CLOSE_CODES.tryAgainLater, 'broker unavailable');
        return undefined;
      });
    this.subscriptions.set(channel, opening);
    const handle = await opening;
    if (handle === undefined) return;
    if (this.ws.readyState !== WebSocket.OPEN) {
      await handle.stop();
      return;
    }
    if (reply || this.json) this.frame({ type: 'subscribed', channel });
  }

  private async unsubscribe(channel: string, reply = true): Promise<void> {
    const handle = this.subscriptions.get(channel);
    this.subscriptions.delete(channel);
    await (await handle)?.stop();
    if (reply) this.frame({ type: 'unsubscribed', channel });
  }

  private onMessage(data: RawData, isBinary: boolean): void {
    if (!this.json) {
      // A raw socket's message goes to the application at its channel's path.
      if (this.request.channel === undefined) return;
      void this.toApp(this.request.channel, toBuffer(data), isBinary ? 'application/octet-stream' : 'text/plain; charset=utf-8', undefined);
      return;
    }
    if (isBinary) {
      this.error(new WarrenError('INVALID_FRAME', 'warren.v1 frames are JSON text'));
      return;
    }
    let command: { type?: unknown; channel?: unknown; lastEventId?: unknown };
    try {
      command = JSON.parse(data.toString()) as typeof command;
      if (command === null || typeof command !== 'object') throw new Error('not an object');
    } catch {
      this.error(new WarrenError('INVALID_FRAME', 'a warren.v1 frame is a JSON object with a "type"'));
      return;
    }
    try {
      if (command.type === 'subscribe') {
        const channel = parseChannel(command.channel);
        const lastEventId = command.lastEventId === undefined ? undefined : parseMessageId(command.lastEventId);
        void this.subscribe(channel, lastEventId, true);
      } else if (command.type === 'unsubscribe') {
        void this.unsubscribe(parseChannel(command.channel));
      } else if (command.type === 'send') {
        const { id, data } = command as { id?: unknown; data?: unknown };
        if (id !== undefined && (typeof id !== 'string' || id.length > 128)) throw new WarrenError('INVALID_FRAME', 'a send id is a string of at most 128 characters');
        const body = typeof data === 'string' ? Buffer.from(data) : Buffer.from(JSON.stringify(data ?? null));
        void this.toApp(parseChannel(command.channel), body, typeof data === 'string' ? 'text/plain; charset=utf-8' : 'application/json', id as string | undefined);
      } else {
        throw new WarrenError('INVALID_FRAME', 'type must be subscribe, unsubscribe or send');
      }
    } catch (err) {
      this.error(err, typeof command.channel === 'string' ? command.channel : undefined);
    }
  }

  /**
   * Sends a client's message to the application and pushes its answer back
   * to this client: in `warren.v1`, `{"type":"reply","id","status","contentType","data"}`
   * (no `data` for 204); on a raw socket, the answer's body as one frame
   * (nothing for 204). Failures are error frames; the socket stays open.
   */
  private async toApp(channel: string, body: Buffer, contentType: string, id: string | undefined): Promise<void> {
    const send = this.request.sendToApp;
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
      const reply = await send(channel, await this.identify(channel), body, contentType);
      if (this.ws.readyState !== WebSocket.OPEN) return;
      if (this.json) {
        const frame: Record<string, unknown> = { type: 'reply', ...tag, channel, status: reply.status };
        if (reply.status !== 204) {
          const textual = reply.contentType === undefined || isTextual(reply.contentType);
          frame.contentType = reply.contentType;
          frame.data = textual ? reply.body.toString('utf8') : reply.body.toString('base64');
          if (!textual) frame.encoding = 'base64';
        }
        this.frame(frame);
      } else if (reply.status !== 204 && reply.body.length > 0) {
        this.ws.send(reply.body, { binary: reply.contentType !== undefined && !isTextual(reply.contentType) });
      }
    } catch (err) {
      this.error(err, channel, tag);
    } finally {
      this.inFlight--;
    }
  }

  private error(err: unknown, channel?: string, extra: Record<string, unknown> = {}): void {
    const error = err instanceof WarrenError ? err : new WarrenError('INTERNAL_ERROR', 'internal error');
    if (!(err instanceof WarrenError)) this.log.error('websocket error', { error: String(err) });
    this.frame({ type: 'error', ...extra, code: error.code, message: error.message, ...(channel === undefined ? {} : { channel }) });
  }

  private frame(frame: object): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(frame));
  }
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}
