import { generateMessageId, type LogLimits, type WarrenMessage } from '@warren/protocol';
import type { Broker, LogEntry, Subscription } from '../broker/broker.js';
import type { Logger } from '../logger.js';
import { eventId } from './event-id.js';
import { RecentEntries } from './recent-entries.js';
import { SharedRun } from './shared-run.js';

/** How many of the last entries a tail keeps for catch-ups from memory, and their most bytes (within half the log's retention). */
const RECENT = { entries: 4096, bytes: 4 * 1024 * 1024 };

/** What a tail hands each entry of a channel to (a subscriber, live or catching up). */
export interface TailMember {
  readonly channel: string;
  /** A live entry, its message carrying its event id (one object for every member). */
  live(offset: number, message: WarrenMessage): void;
  /** The tail stopped (the broker or the log went away): end the stream. */
  lost(): void;
}

/** A mark appended to the log, as the tail read it back. */
export interface Mark {
  offset: number;
  message: WarrenMessage;
}

/**
 * One reader of one log shard per gateway process, from the end: each entry
 * is given its event id once and handed to every local member of its
 * channel (the fan-out's encode-once path: one message object for all).
 * It also finds the marks subscribers append to learn where the log ends.
 */
export class LogTail {
  private readonly members = new Map<string, Set<TailMember>>();
  private readonly marks = new Map<string, (mark: Mark) => void>();
  /** The last entries read (docs/channel-logs.md, "Catch-ups from memory"). */
  readonly recent: RecentEntries;
  private readonly sharedMark = new SharedRun<Mark>(() => this.appendMark());
  private subscription: Subscription | undefined;
  private starting: Promise<void> | undefined;
  private lingerTimer: NodeJS.Timeout | undefined;
  size = 0;

  constructor(
    readonly log: string,
    private readonly broker: Broker,
    private readonly logger: Logger,
    private readonly options: {
      prefetch: number;
      lingerMs: number;
      /** The log's retention: what the tail keeps in memory stays well inside it. */
      limits: LogLimits;
      onIdle(tail: LogTail): void;
      onLost(tail: LogTail): void;
    },
  ) {
    const { maxBytes, maxAgeMs } = options.limits;
    this.recent = new RecentEntries(RECENT.entries, Math.min(RECENT.bytes, maxBytes / 2), maxAgeMs / 2);
  }

  /** Starts reading from the end if it is not reading. */
  start(): Promise<void> {
    if (this.subscription !== undefined) return Promise.resolve();
    this.starting ??= this.broker
      .readLog(this.log, {
        from: 'next',
        prefetch: this.options.prefetch,
        onEntry: (entry) => this.onEntry(entry),
        onEnd: (end) => {
          this.subscription = undefined;
          this.logger.warn('log tail ended', { log: this.log, reason: end.reason });
          this.dropAll();
          this.options.onLost(this);
        },
      })
      .then((subscription) => {
        this.subscription = subscription;
      })
      .finally(() => {
        this.starting = undefined;
      });
    return this.starting;
  }

  add(member: TailMember): void {
    clearTimeout(this.lingerTimer);
    let set = this.members.get(member.channel);
    if (set === undefined) this.members.set(member.channel, (set = new Set()));
    set.add(member);
    this.size++;
  }

  remove(member: TailMember): void {
    const set = this.members.get(member.channel);
    if (set === undefined || !set.delete(member)) return;
    this.size--;
    if (set.size === 0) this.members.delete(member.channel);
    if (this.size === 0) this.linger();
  }

  /**
   * Resolves with a mark appended to the log after the call, once this tail
   * reads it back: everything before it in the log was there before the
   * call. Callers that come while a mark is being appended share the next one.
   */
  mark(): Promise<Mark> {
    return this.sharedMark.call();
  }

  private appendMark(): { issued: Promise<void>; done: Promise<Mark> } {
    const id = generateMessageId();
    const read = new Promise<Mark>((resolve) => this.marks.set(id, resolve));
    const issued = this.broker.appendLog(this.log, { id, contentType: 'application/octet-stream', body: Buffer.alloc(0) });
    const done = issued.then(
      () => read,
      (err: unknown) => {
        this.marks.delete(id);
        throw err;
      },
    );
    return { issued, done };
  }

  /** Ends every member (the broker connection was lost). */
  dropAll(): void {
    this.subscription = undefined;
    this.recent.clear();
    const all = [...this.members.values()].flatMap((set) => [...set]);
    this.members.clear();
    this.size = 0;
    for (const member of all) member.lost();
  }

  async close(): Promise<void> {
    clearTimeout(this.lingerTimer);
    const subscription = this.subscription;
    this.subscription = undefined;
    await subscription?.cancel();
  }

  private onEntry(entry: LogEntry): void {
    entry.ack();
    if (entry.channel === this.log) {
      this.recent.push({ offset: entry.offset, channel: entry.channel, message: entry.message, named: false, at: Date.now() });
      const resolve = this.marks.get(entry.message.id);
      if (resolve === undefined) return;
      this.marks.delete(entry.message.id);
      resolve({ offset: entry.offset, message: entry.message });
      return;
    }
    const set = this.members.get(entry.channel);
    if (set === undefined) {
      this.recent.push({ offset: entry.offset, channel: entry.channel, message: entry.message, named: false, at: Date.now() });
      return;
    }
    const message = { ...entry.message, id: eventId(entry.offset, entry.message) };
    this.recent.push({ offset: entry.offset, channel: entry.channel, message, named: true, at: Date.now() });
    for (const member of set) member.live(entry.offset, message);
  }

  private linger(): void {
    clearTimeout(this.lingerTimer);
    this.lingerTimer = setTimeout(() => {
      if (this.size > 0) return;
      void this.close();
      this.options.onIdle(this);
    }, this.options.lingerMs);
    this.lingerTimer.unref();
  }
}
