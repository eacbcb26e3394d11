import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import type { WarrenMessage } from '@warren/protocol';
import type { WriteOptions } from '../push/handler.js';
import { corkForTick } from './cork.js';
import { isTextual, messageFrameBytes } from './encoding.js';
import { Ticker } from './ticker.js';
import type { CloseReason, Transport, TransportEvents } from './transport.js';

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
}

/**
 * Completes WebSocket handshakes with the `ws` package (no compression,
 * `maxPayload` enforced with 1009, `warren.v1` offered as subprotocol).
 */
export class WebSocketAcceptor {
  private readonly wss: WebSocketServer;
  /** One timer pings every socket; a socket that missed a pong by the next ping is dropped. */
  private readonly pings: Ticker<WebSocketTransport>;

  constructor(private readonly options: WebSocketOptions) {
    this.pings = new Ticker<WebSocketTransport>(options.pingIntervalMs, (socket) => socket.ping());
    this.wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      perMessageDeflate: false,
      maxPayload: options.maxPayload,
      handleProtocols: (protocols) => (protocols.has(WARREN_PROTOCOL) ? WARREN_PROTOCOL : false),
    });
  }

  /**
   * Sends the 101 (with `headers`) and resolves with the socket as a
   * {@link Transport}; rejects with `undefined` when the handshake failed
   * (`ws` answered it with 400) or the client left.
   */
  accept(req: IncomingMessage, socket: Duplex, head: Buffer, headers: string[]): Promise<WebSocketTransport> {
    const addHeaders = (list: string[], request: IncomingMessage): void => {
      if (request === req) list.push(...headers);
    };
    if (headers.length > 0) this.wss.on('headers', addHeaders);
    return new Promise((resolve, reject) => {
      const failed = (): void => {
        this.wss.off('headers', addHeaders);
        reject(undefined);
      };
      socket.once('close', failed);
      this.wss.handleUpgrade(req, socket, head, (ws) => {
        socket.off('close', failed);
        this.wss.off('headers', addHeaders);
        resolve(new WebSocketTransport(ws, this.pings));
      });
    });
  }
}

/** The transport of a socket, for the listeners all sockets share (no closure per socket). */
const TRANSPORT = Symbol('warren.websocket');
type TaggedSocket = WebSocket & { [TRANSPORT]?: WebSocketTransport };

function ignore(): void {}

function onPong(this: TaggedSocket): void {
  const transport = this[TRANSPORT];
  if (transport !== undefined) transport.alive = true;
}

function onSocketMessage(this: TaggedSocket, data: RawData, isBinary: boolean): void {
  this[TRANSPORT]?.received(isBinary ? toBuffer(data) : toBuffer(data).toString('utf8'));
}

function onSocketClose(this: TaggedSocket): void {
  this[TRANSPORT]?.gone();
}

/**
 * A WebSocket as a {@link Transport}: pings every `pingIntervalMs` and drops
 * a socket that missed a pong; `warren.v1` sockets get broker messages as
 * JSON frames, raw ones as the message body (text for textual content
 * types, binary otherwise).
 */
export class WebSocketTransport implements Transport {
  readonly kind = 'websocket';
  readonly protocol: string | undefined;
  /** Answered the last ping. */
  alive = true;
  private events: TransportEvents | undefined;

  constructor(
    private readonly ws: WebSocket,
    private readonly pings: Ticker<WebSocketTransport>,
  ) {
    this.protocol = ws.protocol === '' ? undefined : ws.protocol;
    ws.on('error', ignore);
  }

  attach(events: TransportEvents): void {
    const ws = this.ws as TaggedSocket;
    this.events = events;
    this.pings.add(this);
    if (ws.readyState === WebSocket.CLOSED) {
      this.gone();
      return;
    }
    ws[TRANSPORT] = this;
    ws.on('pong', onPong);
    ws.on('message', onSocketMessage);
    ws.on('close', onSocketClose);
  }

  /** A client message. */
  received(data: string | Buffer): void {
    this.events?.transportMessage(data);
  }

  /** The socket closed. */
  gone(): void {
    const events = this.events;
    if (events === undefined) return;
    this.events = undefined;
    this.pings.delete(this);
    events.transportClosed();
  }

  /** Called by the shared ping timer. */
  ping(): void {
    if (!this.alive) {
      this.ws.terminate();
      return;
    }
    this.alive = false;
    if (this.ws.readyState === WebSocket.OPEN) this.ws.ping();
  }

  write(data: string | Buffer, _options: WriteOptions, done: (ok: boolean) => void): void {
    this.send(data, typeof data !== 'string', done);
  }

  deliver(channel: string, message: WarrenMessage, done?: (ok: boolean) => void): void {
    if (this.protocol === WARREN_PROTOCOL) this.send(messageFrameBytes(channel, message), false, done);
    else this.send(message.body, !isTextual(message.contentType), done);
  }

  private send(data: string | Buffer, binary: boolean, done?: (ok: boolean) => void): void {
    if (this.ws.readyState !== WebSocket.OPEN) {
      done?.(false);
      return;
    }
    // Frames sent in the same tick (a burst from the broker) leave in one writev.
    // `_socket` is ws's own field for the underlying socket (stable since ws 1).
    const socket = (this.ws as unknown as { _socket?: Duplex })._socket;
    if (socket !== undefined) corkForTick(socket);
    if (done === undefined) this.ws.send(data, { binary });
    else this.ws.send(data, { binary }, (err) => done(err == null));
  }

  bufferedBytes(): number {
    return this.ws.bufferedAmount;
  }

  end(reason: CloseReason): void {
    if (this.ws.readyState !== WebSocket.OPEN && this.ws.readyState !== WebSocket.CONNECTING) return;
    switch (reason.kind) {
      case 'slow-consumer':
        // It does not read: the close frame would sit behind the backlog.
        this.ws.terminate();
        return;
      case 'normal':
        this.ws.close(reason.code ?? CLOSE_CODES.normal, reason.reason);
        return;
      case 'shutdown':
        this.ws.close(CLOSE_CODES.goingAway, 'shutdown');
        return;
      case 'revoked':
        this.ws.close(CLOSE_CODES.policyViolation, reason.reason ?? 'revoked');
        return;
      case 'broker-unavailable':
        this.ws.close(CLOSE_CODES.tryAgainLater, 'broker-unavailable');
        return;
      case 'error':
        this.ws.close(CLOSE_CODES.internalError, 'internal error');
        return;
    }
  }
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}
