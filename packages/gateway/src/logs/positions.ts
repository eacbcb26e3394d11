import { generateMessageId, WarrenError, type LogLimits } from '@warren/protocol';
import type { Broker, LogEntry, Subscription } from '../broker/broker.js';
import type { Logger } from '../logger.js';
import { SharedRun } from './shared-run.js';

export interface PositionsOptions {
  /** The stream's name (`warren:positions`). */
  log: string;
  limits: LogLimits;
  /** A position not recorded again for this long is forgotten (`--queue-expires`, as a consumer queue). */
  expiresMs: number;
}

/** A position as it is appended: consumer, channel, event id. */
export type PositionRecord = readonly [consumer: string, channel: string, id: string];

/**
 * One entry of the positions stream: a position, several (the positions
 * streams recorded at an interval), or a mark a gateway reads back to know it is up to date.
 */
type Record = { c: string; ch: string; id: string } | { p: PositionRecord[] } | { mark: string };

interface Position {
  id: string;
  /** When it was recorded (ms epoch, the recording gateway's clock). */
  at: number;
}

/**
 * The positions of identified consumers on logged channels: the event id of
 * the last message delivered to each (consumer, channel). They live in one
 * stream on the broker that every gateway process appends to and reads from
 * its start into a map, so that any process can serve any consumer
 * (docs/channel-logs.md, "Positions").
 */
export class Positions {
  private readonly map = new Map<string, Position>();
  private readonly marks = new Map<string, { resolve(): void; reject(err: Error): void }>();
  private readonly pending = new Set<Promise<void>>();
  private reader: Subscription | undefined;
  private starting: Promise<void> | undefined;
  private readonly sharedSync = new SharedRun<void>(() => this.appendMark());

  constructor(
    private readonly broker: Broker,
    private readonly log: Logger,
    private readonly options: PositionsOptions,
  ) {
    broker.on('lost', () => this.lost('the broker connection was lost'));
  }

  /**
   * Resolves once the map holds every position recorded (on any gateway)
   * before the call: a mark appended after the call was read back. Callers
   * that come while a mark is being appended share the next one.
   */
  sync(): Promise<void> {
    return this.sharedSync.call();
  }

  private appendMark(): { issued: Promise<void>; done: Promise<void> } {
    this.prune();
    const id = generateMessageId();
    const read = new Promise<void>((resolve, reject) => this.marks.set(id, { resolve, reject }));
    // What this process is appending goes before the mark.
    const issued = this.start()
      .then(() => this.appended())
      .then(() => this.append({ mark: id }));
    const done = issued.then(
      () => read,
      (err: unknown) => {
        this.marks.delete(id);
        throw err;
      },
    );
    return { issued, done };
  }

  /** The last position recorded for `consumer` on `channel`, unless it expired. Call {@link sync} first. */
  get(consumer: string, channel: string): string | undefined {
    const position = this.map.get(key(consumer, channel));
    return position === undefined || Date.now() - position.at > this.options.expiresMs ? undefined : position.id;
  }

  /** Records `id` as the position of `consumer` on `channel`; resolves once the broker has it. */
  save(consumer: string, channel: string, id: string): Promise<void> {
    return this.appending({ c: consumer, ch: channel, id });
  }

  /** Records several positions in one entry; resolves once the broker has them. */
  saveAll(records: PositionRecord[]): Promise<void> {
    return this.appending({ p: records });
  }

  /** Appends `record`, counted among what {@link appended} waits for. */
  private appending(record: Record): Promise<void> {
    const appended = this.append(record);
    const done = appended.catch(() => undefined);
    this.pending.add(done);
    void done.finally(() => this.pending.delete(done));
    return appended;
  }

  /** {@link save} without waiting (a failure is logged: the consumer gets that message again). */
  record(consumer: string, channel: string, id: string): void {
    this.save(consumer, channel, id).catch((err: unknown) => this.log.warn('position not recorded', { channel, error: String(err) }));
  }

  /** Records the position again when it is half way to expiring (a consumer that polls but gets nothing keeps it). */
  refresh(consumer: string, channel: string): void {
    const position = this.map.get(key(consumer, channel));
    if (position !== undefined && Date.now() - position.at > this.options.expiresMs / 2) this.record(consumer, channel, position.id);
  }

  /** Resolves once every position being appended was appended (or failed). */
  async appended(): Promise<void> {
    await Promise.allSettled([...this.pending]);
  }

  /** Waits for the positions being appended, then stops reading. */
  async close(): Promise<void> {
    await this.appended();
    const reader = this.reader;
    this.reader = undefined;
    await reader?.cancel();
  }

  private start(): Promise<void> {
    if (this.reader !== undefined) return Promise.resolve();
    this.starting ??= this.read().finally(() => (this.starting = undefined));
    return this.starting;
  }

  private async read(): Promise<void> {
    const { log, limits } = this.options;
    await this.broker.declareLog(log, limits);
    this.reader = await this.broker.readLog(log, {
      from: 'first',
      prefetch: 1000,
      onEntry: (entry) => this.onEntry(entry),
      onEnd: (end) => {
        this.log.warn('positions reader ended', { reason: end.reason });
        this.lost(`the positions reader ended (${end.reason})`);
      },
    });
  }

  /** Read again from the start on the next sync (the map stays: the stream replays it in order); waiting syncs fail. */
  private lost(why: string): void {
    this.reader = undefined;
    const waiting = [...this.marks.values()];
    this.marks.clear();
    for (const mark of waiting) mark.reject(new WarrenError('BROKER_UNAVAILABLE', why));
  }

  /** Records a position, keeping the map in the order positions were recorded (oldest first) for {@link prune}. */
  private put(k: string, position: Position): void {
    this.map.delete(k);
    this.map.set(k, position);
  }

  /** Forgets the positions that expired: the oldest come first. */
  private prune(): void {
    const oldest = Date.now() - this.options.expiresMs;
    for (const [k, position] of this.map) {
      if (position.at >= oldest) return;
      this.map.delete(k);
    }
  }

  /** Positions known (expired ones are forgotten at each sync). */
  get size(): number {
    return this.map.size;
  }

  private onEntry(entry: LogEntry): void {
    entry.ack();
    let record: Record;
    try {
      record = JSON.parse(entry.message.body.toString('utf8')) as Record;
    } catch {
      return;
    }
    if ('mark' in record) {
      this.marks.get(record.mark)?.resolve();
      this.marks.delete(record.mark);
    } else if ('p' in record) {
      if (!Array.isArray(record.p)) return;
      const at = entry.message.publishedAt ?? Date.now();
      for (const item of record.p) {
        if (Array.isArray(item) && item.length === 3 && item.every((part) => typeof part === 'string'))
          this.put(key(item[0], item[1]), { id: item[2], at });
      }
    } else if (typeof record.c === 'string' && typeof record.ch === 'string' && typeof record.id === 'string') {
      this.put(key(record.c, record.ch), { id: record.id, at: entry.message.publishedAt ?? Date.now() });
    }
  }

  private async append(record: Record): Promise<void> {
    const body = Buffer.from(JSON.stringify(record));
    // The stream is declared (and read) before anything is appended to it: a
    // `?since=` poll records a position without having looked one up.
    await this.start();
    return this.broker.appendLog(this.options.log, {
      id: generateMessageId(),
      contentType: 'application/json',
      body,
      publishedAt: Date.now(),
    });
  }
}

function key(consumer: string, channel: string): string {
  return `${consumer}\n${channel}`;
}
