import type { WarrenMessage } from '@warren/protocol';
import { eventId } from './event-id.js';

/** An entry of a shard as its tail read it: a message of `channel`, or a mark (`channel` is the log). */
export interface RecentEntry {
  readonly offset: number;
  readonly channel: string;
  /** The message; its id is the event id once `named` (given lazily: most entries are never asked for). */
  message: WarrenMessage;
  named: boolean;
  /** When the tail read it (ms epoch). */
  readonly at: number;
}

/** An entry handed to a subscriber: its offset and its message, the id its event id. */
export type NamedEntry = readonly [offset: number, message: WarrenMessage];

/** What an entry is counted for besides its body (the broker stores its properties and headers too). */
const ENTRY_OVERHEAD = 256;

/**
 * The last entries a tail read, every channel of the shard and the marks,
 * in offset order and without a hole (a tail reads the whole shard from
 * where it started). A subscriber that resumes from an id among them is
 * served from here: no reader of its own,
 * no mark, no broker round trip. Bounded by count, bytes and age, each set
 * well inside the log's retention: what is served from here is what the
 * log itself would give, on any gateway.
 */
export class RecentEntries {
  private readonly ring: Array<RecentEntry | undefined>;
  private head = 0;
  private length = 0;
  private bytes = 0;

  constructor(
    private readonly capacity: number,
    private readonly maxBytes: number,
    private readonly maxAgeMs: number,
  ) {
    this.ring = new Array<RecentEntry | undefined>(capacity);
  }

  push(entry: RecentEntry): void {
    if (this.length === this.capacity) this.evict();
    this.ring[(this.head + this.length) % this.capacity] = entry;
    this.length++;
    this.bytes += size(entry);
    while (this.bytes > this.maxBytes && this.length > 1) this.evict();
  }

  /** Forgets everything (the tail starts again elsewhere). */
  clear(): void {
    this.ring.fill(undefined);
    this.head = 0;
    this.length = 0;
    this.bytes = 0;
  }

  /**
   * The entries of `channel` after the one whose event id is `id`, or
   * `undefined` when `id` is not among the entries held (older, newer, or
   * not an id of this log), or when they add up to more than `maxBytes`.
   */
  after(id: string, offset: number, channel: string, maxBytes: number): NamedEntry[] | undefined {
    this.expire();
    const at = this.indexOf(offset);
    if (at < 0 || named(this.entry(at)).id !== id) return undefined;
    return this.collect(at + 1, channel, maxBytes);
  }

  private collect(from: number, channel: string, maxBytes: number): NamedEntry[] | undefined {
    const out: NamedEntry[] = [];
    let bytes = 0;
    for (let i = from; i < this.length; i++) {
      const entry = this.entry(i);
      if (entry.channel !== channel) continue;
      bytes += entry.message.body.length;
      if (bytes > maxBytes) return undefined;
      out.push([entry.offset, named(entry)]);
    }
    return out;
  }

  /** Index (0 = oldest) of the entry at `offset`, or -1. */
  private indexOf(offset: number): number {
    let lo = 0;
    let hi = this.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const at = this.entry(mid).offset;
      if (at === offset) return mid;
      if (at < offset) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  private entry(index: number): RecentEntry {
    return this.ring[(this.head + index) % this.capacity]!;
  }

  private evict(): void {
    const oldest = this.ring[this.head]!;
    this.ring[this.head] = undefined;
    this.head = (this.head + 1) % this.capacity;
    this.length--;
    this.bytes -= size(oldest);
  }

  private expire(): void {
    const oldest = Date.now() - this.maxAgeMs;
    while (this.length > 0 && this.entry(0).at < oldest) this.evict();
  }
}

/** The entry's message with its event id as its id (computed once). */
function named(entry: RecentEntry): WarrenMessage {
  if (!entry.named) {
    entry.message = { ...entry.message, id: eventId(entry.offset, entry.message) };
    entry.named = true;
  }
  return entry.message;
}

function size(entry: RecentEntry): number {
  return entry.message.body.length + ENTRY_OVERHEAD;
}
