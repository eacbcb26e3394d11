import type { Death, LogLimits, WarrenMessage } from '@warren/protocol';
import type { LogEntry, LogPosition, ReadLogOptions, Subscription } from './broker.js';

interface LogRecord {
  offset: number;
  channel: string;
  message: WarrenMessage;
  death: Death | undefined;
  bytes: number;
  /** When it was appended (ms since the epoch). */
  at: number;
}

/** Bytes an entry counts for against `maxBytes`: its body and a little for its properties. */
const ENTRY_OVERHEAD = 64;

class MemoryLogReader {
  unacked = 0;
  cancelled = false;
  constructor(
    /** The offset of the next entry to hand over. */
    public position: number,
    readonly options: ReadLogOptions,
  ) {}
}

/**
 * A channel log of the embedded broker: a bounded array of entries with
 * contiguous offsets from 0, cut from its oldest end by age and size, read
 * by any number of readers each at its own offset (a RabbitMQ stream's
 * semantics, in process).
 */
export class MemoryLog {
  readonly channels = new Set<string>();
  private readonly entries: LogRecord[] = [];
  private readonly readers = new Set<MemoryLogReader>();
  private next = 0;
  private bytes = 0;
  private pumpScheduled = false;

  constructor(
    readonly name: string,
    private readonly limits: LogLimits,
  ) {}

  append(channel: string, message: WarrenMessage, death?: Death): void {
    const bytes = message.body.length + ENTRY_OVERHEAD;
    this.entries.push({ offset: this.next++, channel, message, death, bytes, at: Date.now() });
    this.bytes += bytes;
    this.trim();
    this.schedulePump();
  }

  read(options: ReadLogOptions): Subscription {
    this.trim();
    const reader = new MemoryLogReader(this.startOf(options.from), options);
    this.readers.add(reader);
    this.schedulePump();
    return {
      cancel: async () => {
        reader.cancelled = true;
        this.readers.delete(reader);
      },
    };
  }

  /** Ends every reader (the log was deleted). */
  dispose(): void {
    const readers = [...this.readers];
    this.readers.clear();
    this.entries.length = 0;
    queueMicrotask(() => {
      for (const reader of readers) {
        if (reader.cancelled) continue;
        reader.cancelled = true;
        reader.options.onEnd({ reason: 'queue-deleted' });
      }
    });
  }

  private first(): number {
    return this.entries[0]?.offset ?? this.next;
  }

  private startOf(from: LogPosition): number {
    if (from === 'first') return this.first();
    if (from === 'next') return this.next;
    if ('offset' in from) return Math.max(from.offset, this.first());
    const found = this.entries.find((entry) => entry.at >= from.time);
    return found === undefined ? this.next : found.offset;
  }

  /** Retention: whole entries from the oldest end, past `maxBytes` or older than `maxAgeMs`. */
  private trim(): void {
    const oldest = Date.now() - this.limits.maxAgeMs;
    while (this.entries.length > 0 && (this.bytes > this.limits.maxBytes || this.entries[0]!.at < oldest)) {
      this.bytes -= this.entries.shift()!.bytes;
    }
  }

  private schedulePump(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    queueMicrotask(() => {
      this.pumpScheduled = false;
      for (const reader of this.readers) this.pump(reader);
    });
  }

  private pump(reader: MemoryLogReader): void {
    while (!reader.cancelled && reader.unacked < reader.options.prefetch) {
      const first = this.first();
      // Entries cut by retention while the reader was behind are skipped, as on RabbitMQ.
      if (reader.position < first) reader.position = first;
      const record = this.entries[reader.position - first];
      if (record === undefined) return;
      reader.position++;
      reader.unacked++;
      reader.options.onEntry(this.entry(reader, record));
    }
  }

  private entry(reader: MemoryLogReader, record: LogRecord): LogEntry {
    let acked = false;
    return {
      offset: record.offset,
      channel: record.channel,
      message: record.message,
      death: record.death,
      ack: () => {
        if (acked) return;
        acked = true;
        reader.unacked--;
        this.schedulePump();
      },
    };
  }
}
