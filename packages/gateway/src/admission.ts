import type { IncomingMessage } from 'node:http';
import { isPattern, tokenAllows, WarrenError } from '@warren/protocol';
import type { ChannelLogs } from './logs/channel-logs.js';
import type { ConsumerKind } from './access-log.js';
import type { Upstream, Identity } from './upstream.js';
import type { Broker } from './broker/broker.js';
import type { ConsumerQueues } from './consumer-queues.js';
import type { Cors } from './cors.js';
import { UNVOUCHED_PREFIX } from './consumer-id.js';
import type { RequestView } from './request-view.js';
import type { ConnectionLimits, QueueBudget } from './limits.js';
import type { NormalizedOptions } from './options.js';
import type { FanOut } from './sources/fan-out.js';
import type { WildcardFanOut } from './sources/wildcard-fan-out.js';
import type { ChannelTokens } from './tokens.js';

/** What admission needs from the gateway around it. */
export interface AdmissionDeps {
  options: NormalizedOptions;
  upstream: Upstream;
  /** Verifies `v1` tokens and JWTs (`enabled` once any key is configured). */
  tokens: ChannelTokens;
  cors: Cors;
  broker: Broker;
  queues: ConsumerQueues;
  fanOut: FanOut;
  /** Pattern subscriptions; absent without `--wildcard-routes`. */
  wildcard: WildcardFanOut | undefined;
  /** Logged channels keep no queue per consumer: a new binding to a log is what they cost. */
  logs: Pick<ChannelLogs, 'isLogged' | 'isBound'>;
  limits: ConnectionLimits;
  queueBudget: QueueBudget;
  /** `true` once the gateway is closing. */
  closing(): boolean;
}

/** A counted place under the caps: where it was counted, to give it back. */
export interface Slot {
  readonly address: string;
  readonly key: string | undefined;
}

/** Prefixes the per-identity cap's key of an id nobody vouched for (a newline is in no consumer id). */
const UNVOUCHED_KEY = '\n';

/** Errors that mean "this client may not read this channel (any more)". */
const REFUSALS = new Set(['UNAUTHORIZED', 'FORBIDDEN', 'TOKEN_EXPIRED', 'INVALID_TOKEN']);

/**
 * The one way in, for every transport. A subscription is admitted in this
 * order, each step a method here: the gateway is open → the origin may open
 * a WebSocket ({@link checkSocketOrigin}) → who reads ({@link identify}: a
 * signed token, the app's auth endpoint, or an id nobody vouched for, in its
 * own namespace) → the caps ({@link take}: per address and per identity) →
 * the queue budget ({@link admitQueue}: a queue the gateway does not know
 * yet costs the client address a token, and none is made past the ceiling).
 * Long-poll, SSE and WebSocket then only open and stream.
 */
export class Admission {
  /** Whether long-lived streams must be authorized again from time to time. */
  readonly reauthorizing: boolean;
  /** The app or tokens can vouch for identities: ids nobody vouched for must never name one's queue. */
  private readonly vouching: boolean;
  /** The identity {@link identify} found vouched for in a request (a token or the app's answer). */
  private readonly vouchedFor = new WeakMap<RequestView, string>();

  constructor(private readonly deps: AdmissionDeps) {
    this.vouching = deps.upstream.authorizing || deps.tokens.enabled;
    this.reauthorizing = this.vouching;
  }

  /**
   * @param waitForBroker the subscription may open while the broker is away (it subscribes once it is back)
   * @throws WarrenError `BROKER_UNAVAILABLE` while closing, or disconnected unless `waitForBroker`
   */
  checkOpen(waitForBroker = false): void {
    if (this.deps.closing()) throw new WarrenError('BROKER_UNAVAILABLE', 'the gateway is shutting down');
    if (!this.deps.broker.ready && !waitForBroker) throw new WarrenError('BROKER_UNAVAILABLE', 'the broker is not connected');
  }

  /**
   * Cross-site WebSocket hijacking: browsers send cookies with a WebSocket
   * from any page. With `--cors-origins`, only the exact origins listed
   * (and the gateway's own) may open one, never any origin for `*`; with
   * `--auth-url` and no list, only the gateway's own origin.
   * @throws WarrenError `ORIGIN_NOT_ALLOWED`
   */
  checkSocketOrigin(req: IncomingMessage): void {
    const origin = req.headers.origin;
    // Not `*`: a WebSocket carries the page's cookies whatever CORS says, so only named origins count.
    if (origin === undefined) return;
    if (this.isOwnOrigin(req, origin) || this.deps.cors.allows(origin)) return;
    if (this.deps.cors.configured || this.deps.upstream.authorizing)
      throw new WarrenError('ORIGIN_NOT_ALLOWED', 'this origin may not open a WebSocket here');
  }

  /**
   * The consumer a subscription reads as. Without `--auth-url` or tokens,
   * the id the client named (if any). With them, the application (or the
   * token) decides: it may refuse (401/403 relayed), and the identity it
   * vouches for owns the queue: a client-chosen id lives under it
   * (`<identity>/<client id>`), and an id nobody vouched for lives apart
   * (`anon.<id>`), so that no client can read another identity's queues.
   */
  async identify(
    req: RequestView,
    token: string | undefined,
    channel: string,
    requested: string | undefined,
    fresh = false,
  ): Promise<Identity> {
    const { tokens, upstream } = this.deps;
    let identity: string | undefined;
    if (tokens.enabled && token !== undefined) {
      // A signed token (v1 or JWT) stands in for the round trip to the app.
      const claims = await tokens.verify(token);
      if (!tokenAllows(claims, channel)) throw new WarrenError('FORBIDDEN', 'the token does not cover this channel');
      identity = claims.consumerId;
    } else if (upstream.authorizing) {
      identity = (await upstream.authorize(req, channel, requested, fresh)).identity;
    } else if (tokens.enabled) {
      throw new WarrenError('UNAUTHORIZED', 'a signed channel token is required (?token= or Authorization: Bearer)');
    }
    if (identity === undefined) return { consumerId: this.unvouched(requested), identity: undefined };
    this.vouchedFor.set(req, identity);
    return { consumerId: requested === undefined ? identity : `${identity}/${requested}`, identity };
  }

  /** A consumer id nobody vouched for, in its own namespace when identities can be vouched for. */
  unvouched<T extends string | undefined>(id: T): T {
    return (this.vouching && id !== undefined ? `${UNVOUCHED_PREFIX}${id}` : id) as T;
  }

  /** The signed token a subscription carries, when tokens are on. */
  findToken(req: IncomingMessage, query: URLSearchParams): string | undefined {
    if (!this.deps.tokens.enabled) return undefined;
    const fromQuery = query.get('token');
    if (fromQuery !== null) return fromQuery;
    const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    return m === null ? undefined : m[1];
  }

  /** Errors that mean "this client may not read this channel (any more)". */
  isRefusal(err: unknown): boolean {
    return err instanceof WarrenError && REFUSALS.has(err.code);
  }

  /**
   * Counts one more open subscription of `req` against the caps: its client
   * address, and its identity (the one the app or a token vouched for; an id
   * nobody vouched for apart, so that `?consumer_id=alice` cannot use up the
   * real alice's share). `key` overrides the identity (an embedding app's
   * handler that named the consumer vouched for it).
   * @throws WarrenError `TOO_MANY_CONNECTIONS`
   */
  take(req: IncomingMessage, consumerId: string | undefined, key: string | undefined = this.capKey(req, consumerId)): Slot {
    const slot: Slot = { address: this.deps.upstream.clientAddress(req), key };
    this.deps.limits.take(slot.address, slot.key);
    return slot;
  }

  /** Who reads, for the access log: nobody named, an id nobody vouched for, or one the app or a token vouched for. */
  consumerKind(req: IncomingMessage, consumerId: string | undefined): ConsumerKind {
    if (consumerId === undefined) return 'anonymous';
    const identity = this.vouchedFor.get(req);
    return identity !== undefined && (consumerId === identity || consumerId.startsWith(`${identity}/`)) ? 'vouched' : 'identified';
  }

  /** Gives back what {@link take} counted (exactly once). */
  give(slot: Slot): void {
    this.deps.limits.give(slot.address, slot.key);
  }

  /**
   * Every new queue a client causes is admitted here, whatever the
   * transport: a consumer queue this gateway does not know yet, or a channel
   * new to its anonymous fan-out, costs the client address one token of
   * `--queue-budget`, and none is made past `--max-queues`.
   * @throws WarrenError `QUEUE_BUDGET_EXCEEDED`, `QUEUE_LIMIT_REACHED`
   */
  admitQueue(clientAddress: string, channel: string, consumerId: string | undefined): void {
    const { fanOut, queues, options, logs, wildcard } = this.deps;
    if (isPattern(channel)) {
      // One queue per process for every pattern, but each message is matched against every pattern held:
      // a pattern new to this process costs a token, as a new channel does, and there are at most --max-queues.
      if (wildcard === undefined || wildcard.has(channel)) return;
      if (wildcard.size >= options.maxQueues) {
        throw new WarrenError('QUEUE_LIMIT_REACHED', `this gateway serves ${options.maxQueues} wildcard patterns already`);
      }
      this.deps.queueBudget.take(clientAddress);
      return;
    }
    if (logs.isLogged(channel)) {
      // No queue: a channel new to its log is bound, once.
      if (!logs.isBound(channel)) this.deps.queueBudget.take(clientAddress);
      return;
    }
    if (consumerId === undefined ? fanOut.has(channel) : queues.seen(consumerId, channel)) return;
    const kept = consumerId === undefined ? fanOut.size : queues.size;
    if (kept >= options.maxQueues) {
      throw new WarrenError(
        'QUEUE_LIMIT_REACHED',
        `this gateway keeps ${options.maxQueues} ${consumerId === undefined ? 'anonymous channels' : 'consumer queues'} already`,
      );
    }
    this.deps.queueBudget.take(clientAddress);
  }

  /** The client address the caps and the budget count `req` under. */
  clientAddress(req: RequestView): string {
    return this.deps.upstream.clientAddress(req);
  }

  private capKey(req: IncomingMessage, consumerId: string | undefined): string | undefined {
    if (consumerId === undefined) return undefined;
    const identity = this.vouchedFor.get(req);
    if (identity !== undefined && (consumerId === identity || consumerId.startsWith(`${identity}/`))) return identity;
    return `${UNVOUCHED_KEY}${consumerId}`;
  }

  /**
   * Whether `origin` is the site the client reached: its `Host`, or behind a
   * trusted proxy (which may rewrite `Host`, e.g. nginx's `$host` drops the
   * port) the `X-Forwarded-Host` and `X-Forwarded-Proto` it sets.
   */
  private isOwnOrigin(req: IncomingMessage, origin: string): boolean {
    try {
      const page = new URL(origin);
      const forwardedHost = firstHop(req.headers['x-forwarded-host']);
      if (forwardedHost !== undefined && this.deps.upstream.fromTrustedProxy(req)) {
        const scheme = firstHop(req.headers['x-forwarded-proto'])?.toLowerCase() ?? page.protocol.slice(0, -1);
        return new URL(`${scheme}://${forwardedHost}`).origin === page.origin;
      }
      return page.host === req.headers.host;
    } catch {
      return false; // an Origin (or a forwarded host) that is not a URL is not the same site
    }
  }
}

/** The first value of a forwarding header (`a, b` when proxies appended: `a` is the outermost). */
function firstHop(value: string | string[] | undefined): string | undefined {
  const first = (Array.isArray(value) ? value[0] : value)?.split(',')[0]?.trim();
  return first === undefined || first === '' ? undefined : first;
}
