import { WarrenClientError, type WarrenMessage, type WebSocketConstructor, type WebSocketLike } from '../types.js';
import { parseServerFrame, type ClientFrame, type MessageFrame, type ServerFrame } from '../frames.js';
import { base64ToBytes, gatewayUrl } from '../util.js';
import { noop, type ClientTransport, type TransportHost } from './transport.js';

/** The subprotocol of the gateway's JSON frames. */
export const WARREN_PROTOCOL = 'warren.v1';
/** The gateway's multiplexing WebSocket endpoint. */
export const SOCKET_PATH = '/_warren/ws';

const CONNECTING = 0;
const OPEN = 1;
/** Errors after which the channel's stream is gone but a new connection may bring it back. */
const RETRYABLE = new Set(['BROKER_UNAVAILABLE', 'INTERNAL_ERROR']);

/**
 * One WebSocket to `/_warren/ws` with the `warren.v1` subprotocol carries
 * every channel: a `subscribe` frame per channel (with `lastEventId` to
 * resume), `unsubscribe` when one goes. It counts as open once the gateway
 * confirmed a subscription, so that, as with SSE and long-poll, `open` means
 * the consumer's queue is being received.
 */
export class WebSocketTransport implements ClientTransport {
  readonly name = 'websocket';
  private readonly ws: WebSocketLike;
  private readonly channels = new Set<string>();
  private done = false;
  private open = false;

  constructor(
    private readonly host: TransportHost,
    Impl: WebSocketConstructor | null | undefined,
    channels: Iterable<string>,
  ) {
    if (typeof Impl !== 'function')
      throw new WarrenClientError('TRANSPORT_UNAVAILABLE', 'no WebSocket implementation', { transport: 'websocket' });
    for (const channel of channels) this.channels.add(channel);
    const ws = new Impl(gatewayUrl(host.baseUrl, SOCKET_PATH, { consumer_id: host.consumerId }, 'ws'), WARREN_PROTOCOL);
    this.ws = ws;
    ws.onopen = () => this.onOpen();
    ws.onmessage = (event: { data?: unknown }) => this.onFrame(event.data);
    // Kept, not nulled: the `ws` package throws an 'error' event nobody listens to.
    ws.onerror = noop;
    ws.onclose = (event: { code?: number; reason?: string }) => {
      if (this.done) return;
      this.done = true;
      const code = typeof event?.code === 'number' ? event.code : undefined;
      const reason = typeof event?.reason === 'string' && event.reason !== '' ? event.reason : undefined;
      const message = `WebSocket ${this.open ? 'closed' : 'did not open'}${code === undefined ? '' : ` (${code}${reason === undefined ? '' : ` ${reason}`})`}`;
      this.host.fail(new WarrenClientError(this.open ? 'CONNECTION_LOST' : 'CONNECT_FAILED', message, { transport: 'websocket' }), {
        ...(code === undefined ? {} : { code }),
        ...(reason === undefined ? {} : { reason }),
      });
    };
  }

  add(channel: string): void {
    if (this.channels.has(channel)) return;
    this.channels.add(channel);
    if (this.open) this.subscribe(channel);
  }

  remove(channel: string): void {
    if (!this.channels.delete(channel)) return;
    if (this.open) this.send({ type: 'unsubscribe', channel });
  }

  close(): void {
    if (this.done) return;
    this.done = true;
    this.open = false;
    this.ws.onopen = noop;
    this.ws.onmessage = noop;
    this.ws.onclose = noop;
    if (this.ws.readyState === CONNECTING || this.ws.readyState === OPEN) {
      try {
        this.ws.close(1000);
      } catch {
        // Already closing.
      }
    }
  }

  private onOpen(): void {
    if (this.done) return;
    if (this.ws.protocol !== WARREN_PROTOCOL) {
      this.fail('CONNECT_FAILED', `the server did not accept the ${WARREN_PROTOCOL} subprotocol`);
      return;
    }
    // The transport counts as open once the gateway confirms a subscription (below).
    this.open = true;
    for (const channel of this.channels) this.subscribe(channel);
  }

  private subscribe(channel: string): void {
    const lastEventId = this.host.lastEventId(channel);
    this.send(lastEventId === undefined ? { type: 'subscribe', channel } : { type: 'subscribe', channel, lastEventId });
  }

  private send(frame: ClientFrame): void {
    try {
      this.ws.send(JSON.stringify(frame));
    } catch (err) {
      this.fail('CONNECTION_LOST', `WebSocket send failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  private fail(code: string, message: string): void {
    if (this.done) return;
    this.close();
    this.host.fail(new WarrenClientError(code, message, { transport: 'websocket' }));
  }

  private onFrame(data: unknown): void {
    if (this.done) return;
    let frame: ServerFrame | undefined;
    try {
      frame = parseServerFrame(typeof data === 'string' ? data : new TextDecoder().decode(data as ArrayBuffer | Uint8Array));
    } catch (err) {
      this.host.report(
        err instanceof WarrenClientError
          ? err
          : new WarrenClientError('INVALID_FRAME', 'the gateway sent a frame that is not text', { transport: 'websocket' }),
      );
      return;
    }
    // A frame type from a newer gateway.
    if (frame === undefined) return;
    switch (frame.type) {
      case 'message':
        this.onMessage(frame);
        return;
      case 'gap':
      case 'reset':
        if (!this.channels.has(frame.channel)) return;
        this.host.signal(frame.type, { channel: frame.channel, id: frame.id, reason: frame.reason, transport: 'websocket' });
        return;
      case 'subscribed':
        this.host.opened();
        this.host.healthy();
        return;
      case 'unsubscribed':
        return;
      case 'error': {
        const { code, channel } = frame;
        const error = new WarrenClientError(code, frame.message, { transport: 'websocket', ...(channel === undefined ? {} : { channel }) });
        // The channel's stream did not start for a passing reason: reconnect.
        if (channel !== undefined && this.channels.has(channel) && RETRYABLE.has(code)) {
          this.close();
          this.host.fail(error);
        } else {
          this.host.report(error);
        }
        return;
      }
      case 'reply':
      case 'presence':
      case 'join':
      case 'leave':
        // Answers to `send` and `presence` frames, and presence events, which this client does not ask for.
        return;
    }
  }

  private onMessage(frame: MessageFrame): void {
    const channel = frame.channel;
    // A pattern subscription's frames name the pattern they came through.
    if (!this.channels.has(frame.pattern ?? channel)) return;
    this.host.opened();
    this.host.healthy();
    const message: WarrenMessage = { channel, id: frame.id, contentType: frame.contentType, data: frame.data, transport: 'websocket' };
    if (frame.pattern !== undefined) message.pattern = frame.pattern;
    if (frame.event !== undefined) message.event = frame.event;
    if (frame.encoding === 'base64') {
      try {
        message.binary = base64ToBytes(frame.data);
      } catch {
        this.host.report(
          new WarrenClientError('INVALID_FRAME', 'a base64 message frame that is not base64', { transport: 'websocket', channel }),
        );
        return;
      }
    }
    this.host.deliver(message);
  }
}
