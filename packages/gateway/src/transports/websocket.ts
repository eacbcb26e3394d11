import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer, type RawData, type Server } from 'ws';
import type { GapFrame, ResetFrame, WarrenMessage } from '@warren/protocol';
import type { LogSignal } from '../sources/sink.js';
import type { WriteOptions } from '../push/handler.js';
import { atEndOfTick, corkForTick, type EndOfTick } from './cork.js';
import { isTextual, messageFrameBytes } from './encoding.js';
import { Ticker } from './ticker.js';
import type { CloseReason, PushTransport, TransportEvents } from './transport.js';

/** The subprotocol of Warren's JSON frames. Without it a socket gets raw message bodies. */
export const WARREN_PROTOCOL = 'warren.v1';

/** WebSocket close codes Warren uses. */
export const CLOSE_CODES = {
  normal: 1000,
  goingAway: 1001,
  policyViolation: 1008,
  tooBig: 1009,
  internalError: 1011,
  serviceRestart: 1012,
  tryAgainLater: 1013,
  slowConsumer: 4008,
  superseded: 4009,
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
  private readonly wss: Server<typeof PushSocket>;
  /** One timer pings every socket; a socket that missed a pong and read nothing by the next ping is dropped. */
  private readonly pings: Ticker<WebSocketTransport>;

  constructor(private readonly options: WebSocketOptions) {
    this.pings = new Ticker<WebSocketTransport>(options.pingIntervalMs, (socket) => socket.ping());
    this.wss = new WebSocketServer({
      WebSocket: PushSocket,
      noServer: true,
      clientTracking: false,
      perMessageDeflate: false,
      maxPayload: options.maxPayload,
      handleProtocols: (protocols) => (protocols.has(WARREN_PROTOCOL) ? WARREN_PROTOCOL : false),
    });
  }

  /**
   * Sends the 101 (with `headers`) and resolves with the socket as a
   * {@link PushTransport}; rejects with `undefined` when the handshake failed
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

/** The transport of a socket, told directly what happens to it (no listener, no closure per socket). */
const TRANSPORT = Symbol('warren.websocket');

/**
 * ws's socket, reporting to its transport without listeners: four listeners
 * per socket (error, pong, message, close) grow each socket's table of
 * listeners past its first slots (about 100 bytes per idle connection,
 * bench/heap-per-connection.mjs). `ws` takes the class as its `WebSocket` option.
 */
class PushSocket extends WebSocket {
  [TRANSPORT]?: WebSocketTransport;

  override emit(event: string | symbol, ...args: unknown[]): boolean {
    // 'close' follows an error: nothing to do about the error itself (an emitter without a listener would throw).
    if (event === 'error') return true;
    const transport = this[TRANSPORT];
    if (transport !== undefined) {
      if (event === 'pong') {
        transport.ponged(args[0] as Buffer);
        return true;
      }
      if (event === 'message') {
        const [data, isBinary] = args as [RawData, boolean];
        transport.received(isBinary ? toBuffer(data) : toBuffer(data).toString('utf8'));
        return true;
      }
      if (event === 'close') transport.gone();
    }
    return super.emit(event, ...args);
  }
}

/** A delivery written to the socket, waiting for the pong that proves the client read it. */
interface Receipt {
  /** The ping whose pong covers it. */
  readonly ping: number;
  readonly done: (ok: boolean) => void;
}

/**
 * A WebSocket as a {@link PushTransport}: `warren.v1` sockets get broker
 * messages as JSON frames, raw ones as the message body (text for textual
 * content types, binary otherwise).
 *
 * A delivery that must be acknowledged (an identified stream) is reported
 * written only once the client has read it: after the frames of a tick, the
 * socket sends a ping numbered in sequence, and the client's pong (which
 * every WebSocket client sends by itself, RFC 6455 §5.5.2) can only come
 * after it read everything sent before that ping. Until then the message
 * stays unacknowledged in the broker; if the socket dies first it is
 * requeued, so nothing the kernel buffered for a client that never read it
 * is lost.
 *
 * Every `pingIntervalMs` the socket is pinged; one that neither answered a
 * ping nor drained bytes waiting for it since is dropped. An identified
 * stream has at most its prefetch of messages ahead of a receipt ping, so a
 * client that reads, however slowly, keeps answering.
 */
export class WebSocketTransport implements PushTransport, EndOfTick {
  readonly protocol: string | undefined;
  /** Answered a ping since the last keep-alive tick. */
  private alive = true;
  private events: TransportEvents | undefined;
  /** Number of the last ping sent. */
  private pings = 0;
  /** A receipt ping is scheduled for the end of this tick. */
  private pingOwed = false;
  /** Deliveries waiting for their pong, oldest first (none for most sockets). */
  private receipts: Receipt[] | undefined;
  /** Bytes the kernel had taken at the last keep-alive tick, if bytes were waiting for it then (else -1). */
  private backlogMark = -1;

  constructor(
    private readonly ws: PushSocket,
    private readonly keepAlive: Ticker<WebSocketTransport>,
  ) {
    this.protocol = ws.protocol === '' ? undefined : ws.protocol;
  }

  // On the prototype, not a field: one object per idle connection, every field counts.
  get kind(): 'websocket' {
    return 'websocket';
  }

  attach(events: TransportEvents): void {
    this.events = events;
    this.keepAlive.add(this);
    if (this.ws.readyState === WebSocket.CLOSED) {
      this.gone();
      return;
    }
    this.ws[TRANSPORT] = this;
  }

  /** A client message. */
  received(data: string | Buffer): void {
    this.events?.transportMessage(data);
  }

  /** The socket closed: what waits for a receipt was not received. */
  gone(): void {
    this.failReceipts();
    const events = this.events;
    if (events === undefined) return;
    this.events = undefined;
    this.keepAlive.delete(this);
    events.transportClosed();
  }

  /** Called by the shared keep-alive timer. */
  ping(): void {
    // Bytes waiting in the process that the kernel took since the last tick:
    // the client reads, slowly (its pong waits behind those bytes).
    const draining = this.backlogMark >= 0 && this.kernelBytes() > this.backlogMark;
    if (!this.alive && !draining) {
      // No pong and nothing read since the last tick: the client is gone.
      this.failReceipts();
      this.ws.terminate();
      return;
    }
    this.backlogMark = this.ws.bufferedAmount > 0 ? this.kernelBytes() : -1;
    this.alive = false;
    this.sendPing();
  }

  /** A pong: the client has read everything sent before the ping it answers. */
  ponged(data: Buffer): void {
    this.alive = true;
    const receipts = this.receipts;
    if (receipts === undefined || data.length !== 4) return;
    const answered = data.readUInt32BE(0);
    // A pong for a ping never sent proves nothing.
    if (answered > this.pings) return;
    let n = 0;
    while (n < receipts.length && receipts[n]!.ping <= answered) n++;
    if (n === 0) return;
    const done = receipts.splice(0, n);
    if (receipts.length === 0) this.receipts = undefined;
    for (const receipt of done) receipt.done(true);
  }

  /** After the frames of this tick: the ping that will confirm them. */
  endOfTick(): void {
    this.pingOwed = false;
    this.sendPing();
  }

  private sendPing(): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    const payload = Buffer.allocUnsafe(4);
    payload.writeUInt32BE(++this.pings >>> 0, 0);
    this.ws.ping(payload);
  }

  private failReceipts(): void {
    const receipts = this.receipts;
    if (receipts === undefined) return;
    this.receipts = undefined;
    for (const receipt of receipts) receipt.done(false);
  }

  /** Bytes of this socket the kernel has taken (written minus still buffered). */
  private kernelBytes(): number {
    const socket = (this.ws as unknown as { _socket?: Duplex & { bytesWritten?: number } })._socket;
    if (socket === undefined) return 0;
    return (socket.bytesWritten ?? 0) - socket.writableLength;
  }

  write(data: string | Buffer, _options: WriteOptions, done: (ok: boolean) => void): void {
    this.send(data, typeof data !== 'string', done);
  }

  deliver(channel: string, message: WarrenMessage, done?: (ok: boolean) => void, pattern?: string): void {
    const data = this.protocol === WARREN_PROTOCOL ? messageFrameBytes(channel, message, pattern) : message.body;
    const binary = this.protocol !== WARREN_PROTOCOL && !isTextual(message.contentType);
    if (done === undefined) {
      this.send(data, binary);
      return;
    }
    if (this.ws.readyState !== WebSocket.OPEN) {
      done(false);
      return;
    }
    this.send(data, binary);
    // Confirmed by the pong of the ping sent at the end of this tick (or of a keep-alive ping sent before it).
    (this.receipts ??= []).push({ ping: this.pings + 1, done });
    if (!this.pingOwed) {
      this.pingOwed = true;
      atEndOfTick(this);
    }
  }

  /** `warren.v1`: a `gap` or `reset` frame. A raw socket carries message bodies only: it gets nothing. */
  signal(channel: string, signal: LogSignal): void {
    if (this.protocol !== WARREN_PROTOCOL) return;
    const frame: GapFrame | ResetFrame = {
      type: signal.event === 'warren-gap' ? 'gap' : 'reset',
      channel,
      id: signal.id,
      reason: signal.reason,
    };
    this.send(JSON.stringify(frame), false);
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
      case 'restart':
        this.ws.close(CLOSE_CODES.serviceRestart, 'service restart');
        return;
      case 'revoked':
        this.ws.close(CLOSE_CODES.policyViolation, reason.reason ?? 'revoked');
        return;
      case 'broker-unavailable':
        this.ws.close(CLOSE_CODES.tryAgainLater, 'broker-unavailable');
        return;
      case 'superseded':
        this.ws.close(CLOSE_CODES.superseded, 'superseded');
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
