import {
  auditExchangeName,
  auditInboxName,
  auditLogName,
  BINARY_CONTENT_TYPE,
  generateMessageId,
  isTextual,
  parseChannel,
  parseConsumerId,
  parseConsumerQueueName,
  WarrenError,
  type DeathReason,
  type LogLimits,
} from '@warren/protocol';
import {
  brokerTimeout,
  brokerUnavailable,
  type Broker,
  type Delivery,
  type LogEntry,
  type LogPosition,
  type Subscription,
} from './broker/broker.js';
import type { Logger } from './logger.js';

/** Most entries one query answers. */
export const MAX_MISSED_LIMIT = 1000;
/** Entries one query answers without `limit`. */
export const DEFAULT_MISSED_LIMIT = 100;
/** Most dead letters the inbox keeps while no gateway moves them into the stream. */
const INBOX_MAX_LENGTH = 100_000;
/** Marks appended to the stream to find its end carry this id prefix (they are never answered). */
const MARK_PREFIX = 'warren-audit-mark:';

export interface AuditOptions {
  /** Path prefixes of the audited channels (`--audit-routes`). */
  routes: readonly string[];
  /** The exchange channels are published to (`--exchange`): names the audit's exchange, inbox and stream. */
  exchange: string;
  /** Retention of the audit stream. */
  limits: LogLimits;
  /** Longest a query reads the stream. */
  queryTimeoutMs: number;
}

/** One message a consumer missed, as `GET /_warren/missed` answers it. */
export interface MissedEntry {
  /** Its place in the audit stream (page on with `after`). */
  offset: number;
  consumer: string;
  channel: string;
  /** `maxlen`: the consumer's queue overflowed and dropped it (oldest first). */
  reason: DeathReason;
  /** When the queue dropped it (ISO 8601; RabbitMQ gives whole seconds). */
  time: string;
  id: string;
  event?: string;
  contentType: string;
  publishedAt?: string;
  /** The body: text for textual content types, else base64. */
  body: string;
  encoding: 'utf8' | 'base64';
}

export interface MissedQuery {
  consumerId?: string | undefined;
  channel?: string | undefined;
  /** Entries after this offset only. */
  after?: number | undefined;
  /** Entries dropped at or after this time (ms since the epoch) only; the stream is searched from about then. */
  since?: number | undefined;
  limit: number;
}

export interface MissedPage {
  missed: MissedEntry[];
  /** Present when `limit` entries were found: ask again with `after=<next>` for more. */
  next?: number;
}

/**
 * The audit of what identified consumers of audited channels missed
 * (docs/audit.md): their consumer queues dead-letter what they drop to the
 * audit exchange, whose inbox this class moves, in order, into the audit
 * stream that queries and `warren listen --missed` read.
 */
export class Audit {
  readonly deadLetterExchange: string;
  readonly inbox: string;
  readonly log: string;
  private prepared: Promise<void> | undefined;
  private relay: Subscription | undefined;
  private wanted = false;
  private closed = false;
  readonly stats = { moved: 0, queries: 0 };

  constructor(
    private readonly broker: Broker,
    private readonly logger: Logger,
    private readonly options: AuditOptions,
  ) {
    this.deadLetterExchange = auditExchangeName(options.exchange);
    this.inbox = auditInboxName(options.exchange);
    this.log = auditLogName(options.exchange);
    broker.on('lost', () => {
      this.prepared = undefined;
      this.relay = undefined;
    });
    broker.on('ready', () => {
      // Dead letters may be waiting in the inbox: move them even before the next declaration.
      if (this.wanted && !this.closed)
        this.prepare().catch((err: unknown) => this.logger.warn('audit: cannot prepare', { error: String(err) }));
    });
  }

  /** Whether `channel`'s consumer queues are audited. */
  isAudited(channel: string): boolean {
    return this.options.routes.some((prefix) => channel.startsWith(prefix));
  }

  /** The dead-letter exchange for `channel`'s consumer queues, or `undefined` for an unaudited channel. */
  deadLetterExchangeFor(channel: string): string | undefined {
    return this.isAudited(channel) ? this.deadLetterExchange : undefined;
  }

  /** Declares the audit's exchange, inbox and stream (once per broker connection) and starts moving the inbox. */
  prepare(): Promise<void> {
    this.wanted = true;
    if (this.prepared !== undefined) return this.prepared;
    const prepared = this.broker
      .declareAudit({
        exchange: this.deadLetterExchange,
        inbox: this.inbox,
        inboxMaxLength: INBOX_MAX_LENGTH,
        log: this.log,
        limits: this.options.limits,
      })
      .then(() => this.startRelay());
    this.prepared = prepared;
    prepared.catch(() => {
      if (this.prepared === prepared) this.prepared = undefined;
    });
    return prepared;
  }

  private async startRelay(): Promise<void> {
    if (this.relay !== undefined || this.closed) return;
    this.relay = await this.broker.consume(this.inbox, {
      prefetch: 64,
      onMessage: (delivery) => this.move(delivery),
      onEnd: (end) => {
        this.relay = undefined;
        this.logger.warn('audit: inbox reader ended', { reason: end.reason });
        // A lost broker is prepared again on `ready`; a lost channel or queue now.
        if (end.reason !== 'broker-lost' && !this.closed) {
          this.prepared = undefined;
          this.prepare().catch((err: unknown) => this.logger.warn('audit: cannot prepare', { error: String(err) }));
        }
      },
    });
  }

  private move(delivery: Delivery): void {
    if (delivery.death === undefined) {
      // Not a dead letter (someone published to the exchange): nothing to audit.
      delivery.ack();
      return;
    }
    this.broker.appendLog(this.log, delivery.message, delivery.death).then(
      () => {
        this.stats.moved++;
        delivery.ack();
      },
      (err: unknown) => {
        this.logger.warn('audit: cannot append to the audit stream; will retry', { error: String(err) });
        delivery.requeue();
      },
    );
  }

  /**
   * The entries of the audit stream matching `query`, oldest first: the
   * stream is read from its start (or `after`, or `since`) up to a mark
   * appended once the reader is attached, so that everything audited before
   * the call is seen. With `after`, a second reader from the end learns the
   * mark's offset: an `after` at or past it answers an empty page at once.
   * @throws WarrenError `BROKER_UNAVAILABLE`, `BROKER_TIMEOUT`
   */
  async query(query: MissedQuery): Promise<MissedPage> {
    this.stats.queries++;
    await this.prepare();
    const markId = `${MARK_PREFIX}${generateMessageId()}`;
    const from: LogPosition =
      query.after !== undefined ? { offset: query.after + 1 } : query.since !== undefined ? { time: query.since } : 'first';
    const readers: Subscription[] = [];
    const missed: MissedEntry[] = [];
    let done = false;
    let timer: NodeJS.Timeout | undefined;
    let settle!: (result: MissedPage | Error) => void;
    const result = new Promise<MissedPage>((resolve, reject) => {
      settle = (outcome) => (outcome instanceof Error ? reject(outcome) : resolve(outcome));
    });
    const finish = (outcome: MissedPage | Error): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      for (const reader of readers) void reader.cancel().catch(() => undefined);
      settle(outcome);
    };
    const read = async (position: LogPosition, onEntry: (entry: LogEntry) => void): Promise<void> => {
      const reader = await this.broker.readLog(this.log, {
        from: position,
        prefetch: 256,
        onEntry: (entry) => {
          entry.ack();
          if (!done) onEntry(entry);
        },
        onEnd: () => finish(brokerUnavailable('lost the audit stream while reading it; retry')),
      });
      readers.push(reader);
      if (done) void reader.cancel().catch(() => undefined);
    };
    try {
      await read(from, (entry) => {
        if (entry.message.id === markId) return finish({ missed });
        const found = this.match(entry, query);
        if (found === undefined) return;
        missed.push(found);
        if (missed.length >= query.limit) finish({ missed, next: found.offset });
      });
      const after = query.after;
      if (after !== undefined) {
        await read('next', (entry) => {
          if (entry.message.id === markId && entry.offset <= after) finish({ missed: [] });
        });
      }
      timer = setTimeout(
        () => finish(brokerTimeout(`the audit stream was not read to its end within ${this.options.queryTimeoutMs} ms`)),
        this.options.queryTimeoutMs,
      );
      await this.broker.appendLog(this.log, { id: markId, contentType: BINARY_CONTENT_TYPE, body: Buffer.alloc(0) });
    } catch (err) {
      finish(err instanceof Error ? err : new Error(String(err)));
    }
    return result;
  }

  private match(entry: LogEntry, query: MissedQuery): MissedEntry | undefined {
    const death = entry.death;
    if (death === undefined) return undefined;
    if (query.after !== undefined && entry.offset <= query.after) return undefined;
    if (query.since !== undefined && death.time < query.since - 999) return undefined;
    const owner = parseConsumerQueueName(death.queue);
    if (owner === undefined) return undefined;
    if (query.consumerId !== undefined && owner.consumerId !== query.consumerId) return undefined;
    if (query.channel !== undefined && death.channel !== query.channel) return undefined;
    const { message } = entry;
    const textual = isTextual(message.contentType);
    const found: MissedEntry = {
      offset: entry.offset,
      consumer: owner.consumerId,
      channel: death.channel,
      reason: death.reason,
      time: new Date(death.time).toISOString(),
      id: message.id,
      contentType: message.contentType,
      body: message.body.toString(textual ? 'utf8' : 'base64'),
      encoding: textual ? 'utf8' : 'base64',
    };
    if (message.event !== undefined) found.event = message.event;
    if (message.publishedAt !== undefined) found.publishedAt = new Date(message.publishedAt).toISOString();
    return found;
  }

  async close(): Promise<void> {
    this.closed = true;
    const relay = this.relay;
    this.relay = undefined;
    await relay?.cancel().catch(() => undefined);
  }
}

/**
 * The query of `GET /_warren/missed`: `consumer`, `channel`, `after` (an
 * offset), `since` (ISO 8601 or ms since the epoch), `limit` (1 to
 * {@link MAX_MISSED_LIMIT}, default {@link DEFAULT_MISSED_LIMIT}).
 * @throws WarrenError `INVALID_CONSUMER_ID`, `INVALID_CHANNEL`, `INVALID_REQUEST`
 */
export function parseMissedQuery(params: URLSearchParams): MissedQuery {
  const one = (name: string): string | undefined => {
    const all = params.getAll(name);
    if (all.length > 1) throw new WarrenError('INVALID_REQUEST', `give ${name} at most once`);
    return all[0];
  };
  const consumer = one('consumer');
  const channel = one('channel');
  const query: MissedQuery = {
    consumerId: consumer === undefined ? undefined : parseConsumerId(consumer),
    channel: channel === undefined ? undefined : parseChannel(channel),
    limit: DEFAULT_MISSED_LIMIT,
  };
  const limit = one('limit');
  if (limit !== undefined) {
    if (!/^\d{1,4}$/.test(limit) || Number(limit) < 1 || Number(limit) > MAX_MISSED_LIMIT) {
      throw new WarrenError('INVALID_REQUEST', `limit must be a whole number from 1 to ${MAX_MISSED_LIMIT}`);
    }
    query.limit = Number(limit);
  }
  const after = one('after');
  if (after !== undefined) {
    if (!/^\d{1,15}$/.test(after))
      throw new WarrenError('INVALID_REQUEST', 'after must be an offset (a whole number from 0), the next of a page');
    query.after = Number(after);
  }
  const since = one('since');
  if (since !== undefined) {
    const time = /^\d{1,15}$/.test(since) ? Number(since) : since.length <= 40 ? Date.parse(since) : NaN;
    if (!Number.isFinite(time)) throw new WarrenError('INVALID_REQUEST', 'since must be a time: ISO 8601 or milliseconds since the epoch');
    query.since = time;
  }
  return query;
}
