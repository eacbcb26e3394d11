import type { WarrenMessage } from '@warren/protocol';
import type { Broker, LogEntry, LogPosition, Subscription } from '../broker/broker.js';
import { signalMessage, type LogSignal, type Sink } from '../sources/sink.js';
import { entryCheck, eventId, parseEventId } from './event-id.js';
import type { LogTail, Mark, TailMember } from './log-tail.js';
import { Receipts } from './receipts.js';
import { Ticker } from '../transports/ticker.js';
import { RECEIPT_MS } from '../sources/queue-subscription.js';

/** SSE streams with an event sent and not yet seen leave the process: looked at a few times per receipt time. */
const leaving = new Ticker<LogSubscription>(RECEIPT_MS / 8, (sub) => sub.checkLeft());

/** Where a subscriber of a logged channel starts. */
export type LogStart =
  /** From now on. */
  | { kind: 'live' }
  /** A consumer with no position yet: from now on, its first position the end of the log. */
  | { kind: 'new' }
  /** After the entry whose event id the client sent (`Last-Event-ID`). */
  | { kind: 'resume'; id: string }
  /** The last `count` messages of the channel, then live. */
  | { kind: 'history'; count: number }
  /** Every message published from `time` on (ms since the epoch, to the second: AMQP timestamps are in seconds), then live. */
  | { kind: 'time'; time: number };

/** The events a logged stream may carry besides messages (docs/channel-logs.md, "Signals"). */
export const SIGNALS = { reset: 'warren-reset', gap: 'warren-gap' } as const;

export interface LogSubscriptionOptions {
  /** Bytes a subscriber may have waiting for its socket before it is closed as too slow. */
  maxPendingBytes: number;
  /** Most live entries held for a subscriber while it catches up. */
  maxBuffered: number;
  /** Prefetch of a catching-up subscriber's own reader. */
  prefetch: number;
  /** Longest catch-up before the stream is ended (the client reconnects and resumes). */
  catchUpTimeoutMs: number;
  onSlow(): void;
  /** Called once the subscriber is live: caught up, or at once when it starts live. */
  onCaughtUp?(): void;
  /** Keep {@link LogSubscription.position} (an identified consumer's): each write reports back when it left. */
  tracked?: boolean;
}

/**
 * One subscriber of a logged channel. Live, it is a member of its shard's
 * tail. Catching up, it reads the log from its own position with a reader of
 * its own, holding what the tail brings meanwhile, up to a mark it appends
 * to the log: at the mark the two meet, and each entry is sent once (by
 * offset), with no gap between them.
 */
export class LogSubscription implements TailMember {
  /** Offset of the last entry sent. */
  private lastSent = -1;
  /** What the client of a tracked subscription is known to have received. */
  private readonly receipts = new Receipts();
  /** The last live event sent to an SSE stream and not yet seen leave the process. */
  private sentId: string | undefined;
  /** Where a subscription that starts `new` was placed, until something is written. */
  private placed: string | undefined;
  /** Live entries held while catching up. */
  private held: Array<[number, WarrenMessage]> | undefined;
  private reader: Subscription | undefined;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  /** How it started: live, caught up from the tail's recent entries, or from a reader of its own. */
  catchUp: 'none' | 'memory' | 'log' = 'none';

  constructor(
    readonly channel: string,
    private readonly sink: Sink,
    private readonly tail: LogTail,
    private readonly broker: Broker,
    private readonly options: LogSubscriptionOptions,
  ) {}

  /** Joins the tail and, for a resume or a history, catches up first. Resolves once the stream is subscribed. */
  async start(start: LogStart): Promise<void> {
    if (start.kind === 'live' || start.kind === 'new') {
      this.tail.add(this);
      if (start.kind === 'new')
        void this.tail.mark().then(
          (mark) => (this.placed = eventId(mark.offset, mark.message)),
          () => undefined,
        );
      this.options.onCaughtUp?.();
      return;
    }
    if (this.fromMemory(start)) {
      this.catchUp = 'memory';
      return;
    }
    this.catchUp = 'log';
    this.held = [];
    this.tail.add(this);
    this.timer = setTimeout(() => this.lost(), this.options.catchUpTimeoutMs);
    this.timer.unref();
    const catchUp =
      start.kind === 'history'
        ? new History(this, start.count)
        : start.kind === 'time'
          ? new FromTime(this, start.time)
          : Resume.of(this, start.id);
    this.reader = await this.broker.readLog(this.tail.log, {
      from: catchUp.from,
      prefetch: this.options.prefetch,
      onEntry: (entry) => catchUp.entry(entry),
      onEnd: () => this.lost(),
    });
    void this.tail.mark().then(
      (mark) => catchUp.marked(mark),
      () => this.lost(),
    );
  }

  /**
   * The event id of the last entry the client is known to have received (an
   * SSE event a second after it left the process: docs/delivery.md), or where
   * a new consumer was placed: where its next stream resumes. `open`: the
   * connection is still open (a periodic check), so what no longer waits in
   * the process has left. Tracked subscriptions only.
   */
  position(open: boolean): string | undefined {
    if (open) this.checkpoint();
    return this.receipts.position() ?? this.placed;
  }

  /**
   * A resume from an id that the tail's recent entries hold is served from
   * them, joining the tail in the same turn: no reader, no mark. What the
   * tail has not read yet comes to it live, after them.
   */
  private fromMemory(start: Exclude<LogStart, { kind: 'live' | 'new' }>): boolean {
    // A history needs the end of the log, which the tail may not have read yet: it takes a mark (not from memory).
    if (start.kind !== 'resume') return false;
    const target = parseEventId(start.id);
    if (target === undefined) return false;
    const entries = this.tail.recent.after(start.id, target.offset, this.channel, this.options.maxPendingBytes / 2);
    if (entries === undefined) return false;
    this.tail.add(this);
    for (const [offset, message] of entries) this.write(offset, message);
    this.options.onCaughtUp?.();
    return true;
  }

  stop(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    this.stopped = true;
    clearTimeout(this.timer);
    leaving.delete(this);
    this.tail.remove(this);
    return this.endReader();
  }

  live(offset: number, message: WarrenMessage): void {
    if (this.held === undefined) {
      this.send(offset, message);
      return;
    }
    this.held.push([offset, message]);
    if (this.held.length > this.options.maxBuffered) this.slow();
  }

  lost(): void {
    if (this.stopped) return;
    void this.stop();
    this.sink.drop('broker-unavailable');
  }

  /** @internal A history entry of this channel, sent (acknowledged once written, for backpressure). */
  sendEntry(entry: LogEntry): void {
    if (this.stopped || entry.offset <= this.lastSent) {
      entry.ack();
      return;
    }
    this.lastSent = entry.offset;
    const message = { ...entry.message, id: eventId(entry.offset, entry.message) };
    this.sink.send(this.channel, message, (ok) => {
      entry.ack();
      if (ok && this.options.tracked === true) this.receipts.written(message.id, this.sink.confirmsReceipt?.() === true);
    });
  }

  /** @internal A signal event (`warren-reset`, `warren-gap`) with the id a reconnecting client should send. */
  signal(event: LogSignal['event'], id: string, reason: string): void {
    if (this.stopped) return;
    if (this.sink.signal !== undefined) this.sink.signal(this.channel, { event, id, reason });
    else this.sink.send(this.channel, signalMessage({ event, id, reason }));
  }

  /** @internal Caught up to `mark`: the held live entries after what was sent follow, then live ones. */
  caughtUp(mark: Mark, reset: boolean): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    if (reset) {
      this.lastSent = mark.offset;
      this.placed = eventId(mark.offset, mark.message);
      this.receipts.reset();
      this.signal(SIGNALS.reset, this.placed, 'unknown-position');
    }
    const held = this.held ?? [];
    this.held = undefined;
    void this.endReader();
    for (const [offset, message] of held) this.send(offset, message);
    this.options.onCaughtUp?.();
  }

  private send(offset: number, message: WarrenMessage): void {
    if (this.stopped || offset <= this.lastSent) return;
    if (this.sink.pendingBytes() > this.options.maxPendingBytes) {
      this.slow();
      return;
    }
    this.write(offset, message);
  }

  private write(offset: number, message: WarrenMessage): void {
    if (this.stopped || offset <= this.lastSent) return;
    this.lastSent = offset;
    if (this.options.tracked !== true) {
      this.sink.send(this.channel, message);
      return;
    }
    if (this.sink.confirmsReceipt?.() === true) {
      // A WebSocket: the write's callback is the pong that proves the client read it.
      this.sink.send(this.channel, message, (ok) => {
        if (ok) this.receipts.written(message.id, true);
      });
      return;
    }
    // SSE: no callback per write (the fan-out's path); what left is seen at the next write or check.
    this.checkpoint();
    this.sink.send(this.channel, message);
    if (this.sentId === undefined) leaving.add(this);
    this.sentId = message.id;
  }

  /** @internal {@link leaving}'s tick: what was sent left the process (the stream is still open). */
  checkLeft(): void {
    if (this.stopped) {
      leaving.delete(this);
      return;
    }
    this.checkpoint();
    if (this.sentId === undefined) leaving.delete(this);
  }

  /**
   * Nothing of this stream waits in the process any more: everything sent so
   * far reached the operating system by now (a receipt sample). Only asked
   * while the connection is open (a destroyed socket reports nothing waiting).
   */
  private checkpoint(): void {
    if (this.sentId !== undefined && this.sink.pendingBytes() === 0) {
      this.receipts.written(this.sentId, false);
      this.sentId = undefined;
    }
  }

  private slow(): void {
    if (this.stopped) return;
    this.options.onSlow();
    void this.stop();
    this.sink.drop('slow-consumer');
  }

  private async endReader(): Promise<void> {
    const reader = this.reader;
    this.reader = undefined;
    await reader?.cancel();
  }
}

/** A catch-up: where its reader starts, what it does with each entry, and what happens at the mark. */
interface CatchUp {
  readonly from: LogPosition;
  entry(entry: LogEntry): void;
  marked(mark: Mark): void;
}

/**
 * A catch-up that ends once its reader passed the mark it appended: the
 * entries up to the mark are history; `flush()` hands on what it held back.
 */
abstract class UpToMark implements CatchUp {
  abstract readonly from: LogPosition;
  protected done = false;
  private mark: Mark | undefined;
  private seen = -1;

  constructor(protected readonly sub: LogSubscription) {}

  entry(entry: LogEntry): void {
    this.seen = entry.offset;
    this.take(entry);
    this.maybeDone();
  }

  marked(mark: Mark): void {
    this.mark = mark;
    this.maybeDone();
  }

  /** One entry of the log before the mark (acknowledged, or sent, or held). */
  protected abstract take(entry: LogEntry): void;

  /** What was held back, sent once the mark is reached. */
  protected flush(): void {}

  private maybeDone(): void {
    if (this.done || this.mark === undefined || this.seen < this.mark.offset) return;
    this.done = true;
    this.flush();
    this.sub.caughtUp(this.mark, false);
  }
}

/** Catching up from the end of the log with the last `count` messages of the channel. */
class History extends UpToMark {
  readonly from = 'first';
  private readonly ring: LogEntry[] = [];

  constructor(
    sub: LogSubscription,
    private readonly count: number,
  ) {
    super(sub);
  }

  protected take(entry: LogEntry): void {
    if (!this.done && entry.channel === this.sub.channel) {
      this.ring.push(entry);
      if (this.ring.length > this.count) this.ring.shift()!.ack();
    } else {
      entry.ack();
    }
  }

  protected override flush(): void {
    for (const entry of this.ring.splice(0)) this.sub.sendEntry(entry);
  }
}

/** Catching up with every message of the channel published from a time on (to the second). */
class FromTime extends UpToMark {
  readonly from: LogPosition;
  private readonly second: number;

  constructor(sub: LogSubscription, time: number) {
    super(sub);
    this.second = Math.floor(time / 1000) * 1000;
    this.from = { time: this.second };
  }

  protected take(entry: LogEntry): void {
    // RabbitMQ starts at a chunk, which may hold older entries: those are skipped.
    const published = entry.message.publishedAt;
    if (!this.done && entry.channel === this.sub.channel && (published === undefined || published >= this.second))
      this.sub.sendEntry(entry);
    else entry.ack();
  }
}

/** Catching up after the entry a client names by its event id. */
class Resume implements CatchUp {
  private first = true;
  private mark: Mark | undefined;
  private seen = -1;
  /** The position is unknown: the stream restarts at the mark with a reset. */
  private reset = false;
  private done = false;

  private constructor(
    private readonly sub: LogSubscription,
    readonly from: LogPosition,
    private readonly id: string,
    private readonly target: { offset: number; check: string } | undefined,
  ) {}

  /** An id that is not an event id resumes nowhere: it is answered with a reset at the mark. */
  static of(sub: LogSubscription, id: string): Resume {
    const target = parseEventId(id);
    return new Resume(sub, target === undefined ? 'next' : { offset: target.offset }, id, target);
  }

  entry(entry: LogEntry): void {
    this.seen = entry.offset;
    if (this.done || this.reset) {
      entry.ack();
    } else if (this.first && this.target !== undefined && entry.offset === this.target.offset) {
      // The entry the client has: skip it, unless it is another one (the log was declared again).
      this.first = false;
      this.reset = entryCheck(entry.message) !== this.target.check;
      entry.ack();
    } else {
      // Reading from an offset starts at the oldest retained entry when the offset is older.
      if (this.first && this.target !== undefined) this.sub.signal(SIGNALS.gap, this.id, 'history-gone');
      this.first = false;
      if (entry.channel === this.sub.channel) this.sub.sendEntry(entry);
      else entry.ack();
    }
    this.maybeDone();
  }

  marked(mark: Mark): void {
    this.mark = mark;
    // Past the end of the log (it was deleted and declared again since), or not an event id at all.
    if (this.target === undefined || this.target.offset > mark.offset) this.reset = true;
    this.maybeDone();
  }

  private maybeDone(): void {
    if (this.done || this.mark === undefined || (!this.reset && this.seen < this.mark.offset)) return;
    this.done = true;
    this.sub.caughtUp(this.mark, this.reset);
  }
}
