/**
 * How many queues a publish reached, for RabbitMQ, which does not say: a
 * publisher confirm carries only a delivery tag, and `mandatory` only says
 * "none" ({@link Returns}). The count comes from the exchange's bindings,
 * listed through the management plugin's HTTP API
 * (`GET /api/exchanges/<vhost>/<exchange>/bindings/source`): the number of
 * distinct queues (consumer queues, fan-out queues, channel logs) bound with
 * a key that matches the routing key. One listing serves every count for
 * `maxAgeMs`; publishes that find it older share one new listing.
 */

/** Settings of {@link RouteCounts}. */
export interface RouteCountOptions {
  /**
   * Base URL of RabbitMQ's management HTTP API, `http://user:pass@host:15672`
   * (a path prefix is kept). Without credentials, those of `amqpUrl` are used.
   */
  managementUrl: string;
  /** The AMQP URL publishes go to: its virtual host (its path; `/` when empty) and, as a fallback, its credentials. */
  amqpUrl: string;
  /** The exchange whose bindings are counted. */
  exchange: string;
  /** How long one listing serves counts. @default 1000 */
  maxAgeMs?: number;
  /** Longest wait for one listing; past it the counts are unknown. @default 2000 */
  timeoutMs?: number;
  /**
   * Called when a listing fails after the previous one succeeded (or the
   * first fails), and when one succeeds again after a failure: a failing API
   * is reported once, not once per publish. @default ignore
   */
  onStateChange?(state: RouteCountState): void;
}

/** What {@link RouteCountOptions.onStateChange} reports. */
export type RouteCountState = { ok: false; error: Error; retryInMs: number } | { ok: true };

/** Counters of a {@link RouteCounts}, monotonic. */
export interface RouteCountStats {
  /** Listings asked of the management API. */
  listings: number;
  /** Listings that failed (error, timeout, a status other than 200, not the expected JSON). */
  failures: number;
  /** Bindings in the last listing that succeeded. */
  bindings: number;
  /** How long the last listing that succeeded took, in ms: keep `maxAgeMs` well above it. */
  lastListingMs: number;
}

export const DEFAULT_ROUTE_COUNT_MAX_AGE_MS = 1000;
const DEFAULT_TIMEOUT_MS = 2000;
/** A failing API is tried again after `maxAgeMs`, then twice as long each time, up to this. */
const MAX_RETRY_MS = 30_000;

interface Listing {
  /** When the listing was asked for (`Date.now()`): its counts are at most as old as this. */
  at: number;
  /** Until when it serves counts. */
  until: number;
  /** `undefined`: the listing failed, counts are unknown until `until`. */
  match: ((key: string) => number) | undefined;
}

interface Binding {
  destination: unknown;
  destination_type: unknown;
  routing_key: unknown;
}

/**
 * Counts, per routing key, the queues an exchange's bindings send a message
 * with that key to, from a listing of the bindings at most `maxAgeMs` old
 * (asked no earlier than `maxAgeMs` before the count was). A count is an
 * answer about the past: a queue bound or deleted since the listing is not
 * seen. Never throws: when the API cannot be read, the count is `undefined`.
 *
 * A count waits for a listing when the last one is too old (or there is
 * none yet), at most `timeoutMs`; counts asked meanwhile share it. A count
 * asked shortly before the listing expires (twice a listing's duration, at
 * most half of `maxAgeMs`) starts the next listing in the background, so
 * that a steady flow of publishes does not wait: listings are then between
 * `maxAgeMs / 2` and `maxAgeMs` apart, and none is made while nothing
 * counts. After a failed listing, nothing waits: counts are `undefined` at
 * once, and a new listing is tried in the background after `maxAgeMs`, then
 * twice as long each time it fails again (up to 30 s).
 *
 * @example
 * const counts = new RouteCounts({ managementUrl: 'http://guest:guest@localhost:15672', amqpUrl, exchange: 'warren' });
 * await counts.count('/users/42'); // 3, or undefined
 */
export class RouteCounts {
  private listing: Listing | undefined;
  private inFlight: Promise<Listing> | undefined;
  private readonly base: URL;
  private readonly authorization: string | undefined;
  private readonly vhost: string;
  private readonly maxAgeMs: number;
  private readonly timeoutMs: number;
  private retryMs: number;
  private failing = false;
  private exchangeType: string | undefined;
  private readonly counters: RouteCountStats = { listings: 0, failures: 0, bindings: 0, lastListingMs: 0 };

  /** @throws TypeError when a URL is malformed or a duration is not positive */
  constructor(private readonly options: RouteCountOptions) {
    let base: URL;
    let amqp: URL;
    try {
      base = new URL(options.managementUrl);
    } catch {
      throw new TypeError('the management URL is not a URL');
    }
    if (base.protocol !== 'http:' && base.protocol !== 'https:')
      throw new TypeError(`the management URL must start with http:// or https://, got ${base.protocol}//`);
    try {
      amqp = new URL(options.amqpUrl);
    } catch {
      throw new TypeError('the AMQP URL is not a URL');
    }
    const from = base.username !== '' ? base : amqp;
    // fetch refuses a URL with credentials: they go in the header.
    this.authorization =
      from.username === ''
        ? undefined
        : `Basic ${Buffer.from(`${decodeURIComponent(from.username)}:${decodeURIComponent(from.password)}`).toString('base64')}`;
    base.username = '';
    base.password = '';
    base.search = '';
    base.hash = '';
    if (!base.pathname.endsWith('/')) base.pathname += '/';
    this.base = base;
    // As amqplib reads it: no path or `/` is the vhost `/`.
    this.vhost = amqp.pathname.length > 1 ? decodeURIComponent(amqp.pathname.slice(1)) : '/';
    this.maxAgeMs = options.maxAgeMs ?? DEFAULT_ROUTE_COUNT_MAX_AGE_MS;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    for (const [name, value] of [
      ['maxAgeMs', this.maxAgeMs],
      ['timeoutMs', this.timeoutMs],
    ] as const) {
      if (!Number.isInteger(value) || value < 1) throw new TypeError(`${name} must be a positive whole number of milliseconds`);
    }
    this.retryMs = this.maxAgeMs;
  }

  /**
   * The number of queues bound to `routingKey`, from a listing asked for at
   * most `maxAgeMs` ago; `undefined` when the management API could not be
   * read (the failure was reported through `onStateChange`).
   */
  async count(routingKey: string): Promise<number | undefined> {
    return (await this.current()).match?.(routingKey);
  }

  /** Counters, for the gateway's stats. */
  stats(): RouteCountStats {
    return { ...this.counters };
  }

  private current(): Listing | Promise<Listing> {
    const listing = this.listing;
    const now = Date.now();
    if (listing !== undefined && now < listing.until) {
      // Listed again shortly before this one expires, in the background:
      // under a steady flow of publishes, none waits for a listing.
      if (listing.match !== undefined && this.inFlight === undefined && now >= listing.until - this.leadMs()) void this.refresh();
      return listing;
    }
    const next = this.refresh();
    // While the API fails, nobody waits for it: the next listing is tried in
    // the background, and counts stay unknown until one succeeds.
    if (listing !== undefined && listing.match === undefined) return listing;
    return next;
  }

  /** How long before a listing expires the next one is asked for: twice the last one's duration, at most half the age. */
  private leadMs(): number {
    return Math.min(2 * this.counters.lastListingMs, this.maxAgeMs / 2);
  }

  private refresh(): Promise<Listing> {
    return (this.inFlight ??= this.list().finally(() => (this.inFlight = undefined)));
  }

  private async list(): Promise<Listing> {
    const at = Date.now();
    this.counters.listings++;
    let listing: Listing;
    try {
      this.exchangeType ??= await this.type();
      const bindings = await this.get<Binding[]>(
        `api/exchanges/${encodeURIComponent(this.vhost)}/${encodeURIComponent(this.options.exchange)}/bindings/source?columns=destination,destination_type,routing_key`,
      );
      if (!Array.isArray(bindings)) throw new Error('the management API answered something other than a list of bindings');
      listing = { at, until: at + this.maxAgeMs, match: matcher(this.exchangeType, bindings) };
      this.counters.bindings = bindings.length;
      this.counters.lastListingMs = Date.now() - at;
      this.retryMs = this.maxAgeMs;
      if (this.failing) {
        this.failing = false;
        this.options.onStateChange?.({ ok: true });
      }
    } catch (err) {
      this.counters.failures++;
      const retryInMs = this.retryMs;
      listing = { at, until: Date.now() + retryInMs, match: undefined };
      this.retryMs = Math.min(this.retryMs * 2, MAX_RETRY_MS);
      if (!this.failing) {
        this.failing = true;
        this.options.onStateChange?.({ ok: false, error: err as Error, retryInMs });
      }
    }
    this.listing = listing;
    return listing;
  }

  /** The exchange's type; `direct` while it does not exist yet (nothing is bound to it then). */
  private async type(): Promise<string | undefined> {
    const exchange = await this.get<{ type?: unknown } | undefined>(
      `api/exchanges/${encodeURIComponent(this.vhost)}/${encodeURIComponent(this.options.exchange)}?columns=type`,
      true,
    );
    return typeof exchange?.type === 'string' ? exchange.type : undefined;
  }

  private async get<T>(path: string, missingOk = false): Promise<T> {
    const url = new URL(path, this.base);
    const res = await fetch(url, {
      headers: this.authorization === undefined ? {} : { authorization: this.authorization },
      signal: AbortSignal.timeout(this.timeoutMs),
    });
    if (res.status === 404 && missingOk) {
      await res.body?.cancel();
      return undefined as T;
    }
    if (res.status !== 200) {
      await res.body?.cancel();
      throw new Error(`the management API answered ${res.status} to GET ${url.pathname}`);
    }
    return (await res.json()) as T;
  }
}

/**
 * The count of one channel's copy of a publish, from `listed` (what a listing
 * of the bindings says) and `routed` (exact: the broker returned it or not):
 * `routed` wins, since a listing can be older than the publish. Not routed:
 * 0; routed: at least 1.
 */
export function routeCountOf(routed: boolean, listed: number): number {
  return routed ? Math.max(1, listed) : 0;
}

/**
 * How a listing's bindings count a routing key, by exchange type: a direct
 * exchange matches the key exactly, a fanout every binding, a topic by its
 * patterns (`*` one word, `#` zero or more, words split on `.`). Other types
 * (headers, plugins) route by what a listing cannot show: no count.
 * Bindings to other exchanges are not counted (Warren binds none).
 * A queue bound several times with matching keys gets one copy: counted once.
 */
function matcher(type: string | undefined, bindings: readonly Binding[]): ((key: string) => number) | undefined {
  const exact = new Map<string, Set<string>>();
  const patterns: Array<{ pattern: string; queue: string }> = [];
  const all = new Set<string>();
  for (const b of bindings) {
    if (b.destination_type !== 'queue' || typeof b.destination !== 'string' || typeof b.routing_key !== 'string') continue;
    all.add(b.destination);
    if (type === 'topic' && /(^|\.)[*#](\.|$)/.test(b.routing_key)) {
      patterns.push({ pattern: b.routing_key, queue: b.destination });
      continue;
    }
    let queues = exact.get(b.routing_key);
    if (queues === undefined) exact.set(b.routing_key, (queues = new Set()));
    queues.add(b.destination);
  }
  switch (type) {
    case undefined:
    case 'direct':
      return (key) => exact.get(key)?.size ?? 0;
    case 'fanout':
      return () => all.size;
    case 'topic':
      return (key) => {
        const queues = exact.get(key);
        if (patterns.length === 0) return queues?.size ?? 0;
        const found = new Set(queues);
        for (const { pattern, queue } of patterns) if (!found.has(queue) && topicMatches(pattern, key)) found.add(queue);
        return found.size;
      };
    default:
      return undefined;
  }
}

/** Whether a topic binding `pattern` matches `key` (AMQP 0-9-1 topic rules). */
export function topicMatches(pattern: string, key: string): boolean {
  // As RabbitMQ splits them: an empty key or pattern has no words.
  const p = pattern === '' ? [] : pattern.split('.');
  const k = key === '' ? [] : key.split('.');
  // can[j]: the pattern's first i words can match the key's first j words.
  let can = [true, ...k.map(() => false)];
  for (const word of p) {
    const next = new Array<boolean>(k.length + 1).fill(false);
    if (word === '#') {
      let any = false;
      for (let j = 0; j <= k.length; j++) next[j] = any ||= can[j]!;
    } else {
      for (let j = 1; j <= k.length; j++) next[j] = can[j - 1]! && (word === '*' || word === k[j - 1]);
    }
    can = next;
  }
  return can[k.length]!;
}
