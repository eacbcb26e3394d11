import type { Logger } from '../logger.js';
import type { PositionRecord, Positions } from './positions.js';

/** An identified stream of a logged channel whose position is kept. */
interface Kept {
  readonly consumer: string;
  readonly channel: string;
  /** Where the stream is now: the event id of the last message written to its client. */
  position(open: boolean): string | undefined;
  /** The position last appended, and when. */
  recorded: string | undefined;
  recordedAt: number;
}

/** Most positions in one entry of the positions stream. */
const PER_ENTRY = 500;

/**
 * The positions of this process's identified SSE and WebSocket streams on
 * logged channels (docs/channel-logs.md, "Positions of streams"). A stream
 * writes nothing to the broker per message: every `intervalMs` the
 * positions that moved are appended together, a few hundred per entry, and
 * a stream's last position is appended when it ends. A gateway that dies
 * loses at most an interval: its consumers get those messages again, never
 * miss one.
 */
export class StreamPositions {
  private readonly kept = new Set<Kept>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;

  constructor(
    private readonly positions: Positions,
    private readonly log: Logger,
    private readonly options: { intervalMs: number; expiresMs: number },
  ) {}

  /** Keeps the position of `consumer` on `channel`, read from `position()`; `release()` records the last one. */
  keep(consumer: string, channel: string, position: (open: boolean) => string | undefined): { release(): Promise<void> } {
    const kept: Kept = { consumer, channel, position, recorded: undefined, recordedAt: 0 };
    this.kept.add(kept);
    if (this.timer === undefined) {
      this.timer = setInterval(() => void this.flush(), this.options.intervalMs);
      this.timer.unref();
    }
    return { release: () => this.release(kept) };
  }

  /** Appends the positions that moved since they were last appended (or that are half way to expiring). */
  flush(): Promise<void> {
    this.flushing ??= this.append(this.due()).finally(() => (this.flushing = undefined));
    return this.flushing;
  }

  /** The gateway closes: stops the interval and appends the positions that moved. */
  async close(): Promise<void> {
    this.stopTimer();
    await this.flushing;
    await this.append(this.due());
  }

  private stopTimer(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private async release(kept: Kept): Promise<void> {
    if (!this.kept.delete(kept)) return;
    if (this.kept.size === 0) this.stopTimer();
    const id = kept.position(false);
    if (id === undefined) return;
    try {
      await this.positions.save(kept.consumer, kept.channel, id);
    } catch (err) {
      // The consumer resumes from an older position: it gets some messages again.
      this.log.warn('position not recorded', { channel: kept.channel, error: String(err) });
    }
  }

  private due(): Array<[Kept, string]> {
    const now = Date.now();
    const due: Array<[Kept, string]> = [];
    for (const kept of this.kept) {
      const id = kept.position(true);
      if (id === undefined || (id === kept.recorded && now - kept.recordedAt < this.options.expiresMs / 2)) continue;
      due.push([kept, id]);
    }
    return due;
  }

  private async append(due: Array<[Kept, string]>): Promise<void> {
    for (let i = 0; i < due.length; i += PER_ENTRY) {
      const chunk = due.slice(i, i + PER_ENTRY);
      try {
        await this.positions.saveAll(chunk.map(([kept, id]): PositionRecord => [kept.consumer, kept.channel, id]));
      } catch (err) {
        // Tried again at the next interval.
        this.log.warn('positions not recorded', { count: due.length - i, error: String(err) });
        return;
      }
      const now = Date.now();
      for (const [kept, id] of chunk) {
        kept.recorded = id;
        kept.recordedAt = now;
      }
    }
  }
}
