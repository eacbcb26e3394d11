import {
  DEFAULT_EXCHANGE,
  encodeMessage,
  parseChannel,
  RouteCounts,
  routingKey,
  WarrenError,
  type MessageData,
  type MessageOptions,
} from '@warren/protocol';
import { AmqpTransport } from './amqp-transport.js';
import { HttpTransport } from './http-transport.js';
import { readTokenFile, tokenFileFor } from './token-file.js';
import { countRoutes } from './route-count.js';
import type { PublishTransport } from './transport.js';

/**
 * Settings of a {@link Producer}. Each one may be left out: `url` and `token`
 * then come from the environment (see {@link Producer}), the rest have defaults.
 */
export interface ProducerOptions {
  /**
   * Where to publish. `amqp://` or `amqps://`: straight to RabbitMQ.
   * `http://` or `https://`: through a gateway's publish endpoint (the way to
   * reach the embedded broker, or for a backend without AMQP).
   * @default `WARREN_AMQP_URL`, else `WARREN_URL`
   */
  url?: string;
  /**
   * Publish token, for an `http(s)://` URL.
   * @default `WARREN_PUBLISH_TOKEN`, else, for a gateway on this machine, the
   * token file `warren serve` wrote ({@link tokenFileFor})
   */
  token?: string;
  /** Exchange, for an `amqp(s)://` URL. @default 'warren' */
  exchange?: string;
  /** Largest message accepted, checked before sending. @default 262144 */
  maxMessageBytes?: number;
  /**
   * Longest wait for a publish: the gateway's answer (`http(s)://`), or the
   * connection and the broker's confirm (`amqp(s)://`); past it the publish
   * rejects (`GATEWAY_UNREACHABLE`, or `BROKER_TIMEOUT`: it may still be
   * delivered, and may be retried). @default 10000
   */
  timeoutMs?: number;
  /**
   * AMQP heartbeat in seconds, for an `amqp(s)://` URL without `?heartbeat=`:
   * a connection silent for two intervals is taken for dead and the next
   * publish reconnects. @default 4
   */
  heartbeatSeconds?: number;
  /**
   * RabbitMQ's management HTTP API, for an `amqp(s)://` URL:
   * `http://user:pass@host:15672` (without credentials, those of `url`).
   * With it a publish says how many queues and logs took the message
   * ({@link PublishResult.queues}), counted from the exchange's bindings as
   * listed at most `routeCountMaxAgeMs` before. Over `http(s)://` the gateway
   * counts (its `--management-url`), so this option is refused there.
   * @default `WARREN_MANAGEMENT_URL` for an `amqp(s)://` URL, else none: no count
   */
  managementUrl?: string;
  /**
   * How long one listing of the exchange's bindings serves counts, with
   * `managementUrl`: the most a count can be out of date. @default 1000
   */
  routeCountMaxAgeMs?: number;
}

/** What a confirmed publish returns. */
export interface PublishResult {
  /** The message id (the given one, or the generated one). */
  id: string;
  /** The channels it was confirmed on, without duplicates. */
  channels: string[];
  /**
   * `true` when at least one channel's copy reached a queue or a channel log:
   * a consumer's queue (a consumer that polled the channel within its
   * retention, whether or not it is connected now), the fan-out queue of a
   * gateway with anonymous listeners on it, or the log of a logged channel.
   * `false`: nobody will get it; fall back (e-mail, push) if it matters.
   */
  routed: boolean;
  /** The channels whose copy reached no queue and no log, in the order of `channels` (empty when every copy was routed). */
  unrouted: string[];
  /**
   * How many queues and logs took the message, all channels together: 0 when
   * `routed` is false, at least 1 when it is true. Absent when unknown: over
   * AMQP without `managementUrl` (or when the management API cannot be
   * read), over HTTP from a gateway on RabbitMQ without `--management-url`.
   * From the embedded broker, exact; from RabbitMQ, counted from a listing of
   * the bindings at most `routeCountMaxAgeMs` (the gateway's
   * `--route-count-max-age`) old, bounded by `routed`.
   */
  queues?: number;
  /** The same per channel, `{ "/users/42": 3 }`: 0 exactly for the channels in `unrouted`. Absent with `queues`. */
  routes?: Record<string, number>;
}

/** The second half of `producer.publish(data).to(channel)`. */
export interface Publication {
  /**
   * Sends the message to one or several channels. Resolves once the broker
   * confirmed it on every channel, saying whether anything was bound to
   * receive it ({@link PublishResult.routed}); rejects with a {@link WarrenError} otherwise
   * (`BROKER_UNAVAILABLE`, `BROKER_TIMEOUT` and `GATEWAY_UNREACHABLE` mean "not
   * confirmed, may be retried"; the rest mean the message itself is at fault).
   */
  to(channels: string | readonly string[]): Promise<PublishResult>;
}

/**
 * Publishes messages to Warren channels.
 *
 * What is not given in the options comes from the environment, as for the
 * `warren` command (an empty variable counts as unset):
 * - the URL from `WARREN_AMQP_URL` (RabbitMQ), else `WARREN_URL` (a gateway);
 * - for an `http(s)://` URL, the token from `WARREN_PUBLISH_TOKEN`, else, when
 *   the gateway is on this machine, from the file `warren serve` writes when it
 *   generates one (`warren-<port>.token`, see {@link tokenFileFor}).
 *
 * @throws WarrenError `PRODUCER_NOT_CONFIGURED` when there is no URL, or no
 * token for an `http(s)://` URL; its message says what to set.
 * @throws TypeError when an option is malformed (a URL of another scheme).
 *
 * @example
 * // WARREN_AMQP_URL=amqp://localhost, or WARREN_URL=http://localhost:4000 beside `warren serve`
 * const producer = new Producer();
 * await producer.publish('hi there!').to('/greetings');
 * await producer.publish({ price: 42 }, { event: 'tick' }).to(['/stocks/ACME', '/stocks']);
 * await producer.close();
 */
export class Producer {
  private readonly transport: PublishTransport;
  private readonly routeCounts: RouteCounts | undefined;
  private readonly maxMessageBytes: number;
  private readonly inFlight = new Set<Promise<unknown>>();
  private closed = false;

  constructor(options: ProducerOptions = {}) {
    const env = process.env;
    const text = options.url ?? (env.WARREN_AMQP_URL || env.WARREN_URL || undefined);
    if (text === undefined) {
      throw new WarrenError(
        'PRODUCER_NOT_CONFIGURED',
        'Producer: no url: set WARREN_AMQP_URL (amqp://…) or WARREN_URL (http://…, a gateway), or pass { url }',
      );
    }
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      throw new TypeError(`Producer: url ${JSON.stringify(text)} is not a URL`);
    }
    this.maxMessageBytes = options.maxMessageBytes ?? 256 * 1024;
    if (!Number.isInteger(this.maxMessageBytes) || this.maxMessageBytes < 1)
      throw new TypeError('Producer: maxMessageBytes must be a positive integer');
    if (url.protocol === 'amqp:' || url.protocol === 'amqps:') {
      const exchange = options.exchange ?? DEFAULT_EXCHANGE;
      const timeoutMs = options.timeoutMs ?? 10_000;
      this.transport = new AmqpTransport(text, exchange, timeoutMs, options.heartbeatSeconds ?? 4);
      const managementUrl = options.managementUrl ?? (env.WARREN_MANAGEMENT_URL || undefined);
      this.routeCounts =
        managementUrl === undefined
          ? undefined
          : routeCountsFor(managementUrl, text, exchange, options.routeCountMaxAgeMs, Math.min(timeoutMs, 2000));
    } else if (url.protocol === 'http:' || url.protocol === 'https:') {
      const file = tokenFileFor(url);
      const token = options.token || env.WARREN_PUBLISH_TOKEN || (file === undefined ? undefined : readTokenFile(file));
      if (token === undefined) {
        const more = file === undefined ? '' : `, or run \`warren serve\` on this machine (it writes ${file})`;
        throw new WarrenError(
          'PRODUCER_NOT_CONFIGURED',
          `Producer: no publish token for ${text}: set WARREN_PUBLISH_TOKEN (the gateway's --publish-token) or pass { token }${more}`,
        );
      }
      if (options.managementUrl !== undefined) {
        throw new TypeError(
          'Producer: managementUrl is for an amqp(s):// url; through a gateway, the gateway counts (start it with --management-url)',
        );
      }
      this.transport = new HttpTransport(url, token, options.timeoutMs ?? 10_000);
    } else {
      throw new TypeError(`Producer: url must start with amqp://, amqps://, http:// or https://, got ${url.protocol}//`);
    }
  }

  /**
   * Prepares a message; nothing is sent until `.to()`. A string is sent as
   * UTF-8 text, bytes as `application/octet-stream`, anything else as JSON.
   */
  publish(data: MessageData, options: MessageOptions = {}): Publication {
    return { to: (channels) => this.send(data, options, channels) };
  }

  /** Waits for publishes in flight, then disconnects. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
    await this.transport.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private send(data: MessageData, options: MessageOptions, channels: string | readonly string[]): Promise<PublishResult> {
    const run = async (): Promise<PublishResult> => {
      if (this.closed) throw new WarrenError('PRODUCER_CLOSED', 'publish() after close()');
      const list = typeof channels === 'string' ? [channels] : [...channels];
      if (list.length === 0) throw new WarrenError('INVALID_CHANNEL', 'name at least one channel');
      const unique = [...new Set(list.map(parseChannel))];
      const message = encodeMessage(data, options);
      if (message.body.length > this.maxMessageBytes) {
        throw new WarrenError('MESSAGE_TOO_LARGE', `message is ${message.body.length} bytes; the limit is ${this.maxMessageBytes}`);
      }
      message.publishedAt = Date.now();
      // Counted while the broker confirms: a listing, when one is due, costs no extra wait.
      const counting = this.routeCounts === undefined ? undefined : Promise.all(unique.map((c) => this.routeCounts!.count(routingKey(c))));
      const { unrouted, routes } = await this.transport.send(unique, message);
      const result: PublishResult = { id: message.id, channels: unique, routed: unrouted.length < unique.length, unrouted };
      return countRoutes(result, routes ?? (await counting));
    };
    const promise = run();
    this.inFlight.add(promise);
    const forget = (): void => void this.inFlight.delete(promise);
    promise.then(forget, forget);
    return promise;
  }
}

function routeCountsFor(
  managementUrl: string,
  amqpUrl: string,
  exchange: string,
  maxAgeMs: number | undefined,
  timeoutMs: number,
): RouteCounts {
  try {
    return new RouteCounts({
      managementUrl,
      amqpUrl,
      exchange,
      ...(maxAgeMs === undefined ? {} : { maxAgeMs }),
      timeoutMs,
      // The producer has no log: a failing API is a process warning, once per outage.
      onStateChange: (state) => {
        if (!state.ok) {
          process.emitWarning(
            `cannot list the bindings of exchange ${exchange} from the RabbitMQ management API: ${state.error.message}; publishes carry no route count`,
            {
              code: 'WARREN_ROUTE_COUNT',
            },
          );
        }
      },
    });
  } catch (err) {
    throw new TypeError(`Producer: ${(err as Error).message}`);
  }
}
