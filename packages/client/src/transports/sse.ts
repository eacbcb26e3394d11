import { WarrenClientError, type EventSourceConstructor, type EventSourceLike, type WarrenMessage } from '../types.js';
import { base64ToBytes, gatewayUrl, isPattern } from '../util.js';
import { noop, type ClientTransport, type TransportHost } from './transport.js';

interface Stream {
  es: EventSourceLike;
  /** Event names with a listener. */
  names: Set<string>;
  opened: boolean;
}

/** The events of a logged channel's signals (docs/channel-logs.md). */
const SIGNALS = ['warren-gap', 'warren-reset'] as const;
/**
 * One EventSource per channel, `GET /<channel>?consumer_id=…&last_event_id=…`.
 * The EventSource's own reconnection is not used: on any error the client
 * closes it and reconnects with its backoff and the latest `last_event_id`.
 */
export class SseTransport implements ClientTransport {
  readonly name = 'sse';
  private readonly streams = new Map<string, Stream>();
  private done = false;

  constructor(
    private readonly host: TransportHost,
    private readonly Impl: EventSourceConstructor | null | undefined,
    channels: Iterable<string>,
  ) {
    if (typeof Impl !== 'function')
      throw new WarrenClientError('TRANSPORT_UNAVAILABLE', 'no EventSource implementation', { transport: 'sse' });
    try {
      for (const channel of channels) this.open(channel);
    } catch (err) {
      this.close();
      throw err;
    }
  }

  add(channel: string): void {
    if (this.done) return;
    const stream = this.streams.get(channel);
    if (stream === undefined) {
      try {
        this.open(channel);
      } catch (err) {
        const error = new WarrenClientError('CONNECTION_LOST', `EventSource failed: ${err instanceof Error ? err.message : String(err)}`, {
          transport: 'sse',
          channel,
        });
        queueMicrotask(() => this.fail(error));
      }
      return;
    }
    this.listen(channel, stream);
  }

  remove(channel: string): void {
    const stream = this.streams.get(channel);
    if (stream === undefined) return;
    this.streams.delete(channel);
    this.release(stream);
  }

  close(): void {
    this.done = true;
    for (const stream of this.streams.values()) this.release(stream);
    this.streams.clear();
  }

  private open(channel: string): void {
    const url = gatewayUrl(this.host.baseUrl, channel, {
      consumer_id: this.host.consumerId,
      last_event_id: this.host.lastEventId(channel),
    });
    const es = new this.Impl!(url);
    const stream: Stream = { es, names: new Set(), opened: false };
    this.streams.set(channel, stream);
    es.onopen = (event: { data?: unknown }) => {
      if (typeof event?.data === 'string') return this.onEvent(channel, 'open', event);
      if (this.done || this.streams.get(channel) !== stream) return;
      stream.opened = true;
      this.host.opened();
      this.host.healthy();
    };
    es.onmessage = (event: unknown) => this.onEvent(channel, undefined, event);
    es.onerror = (event: { data?: unknown; code?: unknown; message?: unknown }) => {
      // A message whose event name is "error" arrives here too.
      if (typeof event?.data === 'string') return this.onEvent(channel, 'error', event);
      if (this.done || this.streams.get(channel) !== stream) return;
      const status = typeof event?.code === 'number' ? event.code : undefined;
      const detail = typeof event?.message === 'string' && event.message !== '' ? `: ${event.message}` : '';
      this.fail(
        new WarrenClientError(
          stream.opened ? 'CONNECTION_LOST' : 'CONNECT_FAILED',
          `EventSource for ${channel} ${stream.opened ? 'closed' : 'did not open'}${detail}`,
          {
            transport: 'sse',
            channel,
            ...(status === undefined ? {} : { status }),
          },
        ),
      );
    };
    this.listen(channel, stream);
  }

  private listen(channel: string, stream: Stream): void {
    if (!stream.names.has(SIGNALS[0])) {
      for (const name of SIGNALS) {
        stream.names.add(name);
        stream.es.addEventListener(name, (event: unknown) => this.onSignal(channel, name, event));
      }
    }
    for (const name of this.host.eventNames(channel)) {
      if (stream.names.has(name) || name === 'message' || name === 'open' || name === 'error') continue;
      stream.names.add(name);
      stream.es.addEventListener(name, (event: unknown) => this.onEvent(channel, name, event));
    }
  }

  private onEvent(channel: string, name: string | undefined, event: unknown): void {
    if (this.done || !this.streams.has(channel)) return;
    if (name !== undefined && (name === 'open' || name === 'error') && !this.host.eventNames(channel).includes(name)) return;
    const { data, lastEventId } = (event ?? {}) as { data?: unknown; lastEventId?: unknown };
    this.host.healthy();
    if (isPattern(channel)) {
      this.onPatternEvent(channel, name, String(data));
      return;
    }
    this.host.deliver({
      channel,
      id: typeof lastEventId === 'string' ? lastEventId : '',
      ...(name === undefined ? {} : { event: name }),
      data: typeof data === 'string' ? data : String(data),
      transport: 'sse',
    });
  }

  /** On a wildcard pattern, an event's data is the `warren.v1` message frame, which names the channel (docs/wildcards.md). */
  private onPatternEvent(pattern: string, name: string | undefined, data: string): void {
    let frame: { channel?: unknown; id?: unknown; contentType?: unknown; data?: unknown; encoding?: unknown };
    try {
      frame = JSON.parse(data) as typeof frame;
    } catch {
      frame = {};
    }
    const { channel, id, contentType, data: body, encoding } = frame;
    if (typeof channel !== 'string' || typeof id !== 'string' || typeof body !== 'string') {
      this.host.report(
        new WarrenClientError('INVALID_FRAME', 'a pattern event whose data is not a message frame', { transport: 'sse', channel: pattern }),
      );
      return;
    }
    const message: WarrenMessage = { channel, pattern, id, data: body, transport: 'sse' };
    if (name !== undefined) message.event = name;
    if (typeof contentType === 'string') message.contentType = contentType;
    if (encoding === 'base64') {
      try {
        message.binary = base64ToBytes(body);
      } catch {
        this.host.report(
          new WarrenClientError('INVALID_FRAME', 'a base64 message that is not base64', { transport: 'sse', channel: pattern }),
        );
        return;
      }
    }
    this.host.deliver(message);
  }

  /** A logged channel's signal: an event `warren-gap` or `warren-reset` with data `{"reason":…}`. */
  private onSignal(channel: string, name: (typeof SIGNALS)[number], event: unknown): void {
    if (this.done || !this.streams.has(channel)) return;
    const { data, lastEventId } = (event ?? {}) as { data?: unknown; lastEventId?: unknown };
    let reason = '';
    try {
      reason = String((JSON.parse(String(data)) as { reason?: unknown }).reason ?? '');
    } catch {
      // Not JSON: the reason stays unknown.
    }
    const id = typeof lastEventId === 'string' ? lastEventId : '';
    this.host.signal(name === 'warren-gap' ? 'gap' : 'reset', { channel, id, reason, transport: 'sse' });
  }

  private fail(error: WarrenClientError): void {
    if (this.done) return;
    this.close();
    this.host.fail(error);
  }

  private release(stream: Stream): void {
    stream.es.onopen = noop;
    stream.es.onmessage = noop;
    stream.es.onerror = noop;
    const close = (): void => {
      try {
        stream.es.close();
      } catch {
        // Nothing to release.
      }
    };
    close();
    // The `eventsource` package arms its reconnect timer after calling
    // onerror, so a close() from onerror leaves that timer running: close
    // again once the error dispatch is over.
    queueMicrotask(close);
  }
}
