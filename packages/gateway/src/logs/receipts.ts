import { RECEIPT_MS } from '../sources/queue-subscription.js';

/** Samples closer together than this share one slot (the later id, the later time): memory stays small in a flood. */
const GRAIN_MS = RECEIPT_MS / 16;

/**
 * Where a tracked stream of a logged channel has got to, by the same rule as
 * a consumer queue's acknowledgement (docs/delivery.md): an event written to
 * an SSE connection counts as received once the connection stayed open
 * {@link RECEIPT_MS} after the write; a WebSocket's pong confirms at once.
 * It keeps a few (id, time) samples of what was written, never more than
 * RECEIPT_MS / GRAIN_MS + 1.
 */
export class Receipts {
  private readonly ids: string[] = [];
  private readonly times: number[] = [];
  /** The last id known received. */
  private received: string | undefined;

  /** `id` was handed to the operating system now; `confirmed`: the client has it (a pong). */
  written(id: string, confirmed: boolean): void {
    if (confirmed) {
      this.received = id;
      this.ids.length = 0;
      this.times.length = 0;
      return;
    }
    const now = Date.now();
    const last = this.times.length - 1;
    if (last >= 0 && now - this.times[last]! < GRAIN_MS) {
      this.ids[last] = id;
      this.times[last] = now;
    } else {
      this.ids.push(id);
      this.times.push(now);
    }
  }

  /** Forgets what was written (the stream restarts at another place). */
  reset(): void {
    this.received = undefined;
    this.ids.length = 0;
    this.times.length = 0;
  }

  /** The id of the last event the client is known to have received: written at least RECEIPT_MS ago. */
  position(): string | undefined {
    const before = Date.now() - RECEIPT_MS;
    let n = 0;
    while (n < this.times.length && this.times[n]! <= before) n++;
    if (n > 0) {
      this.received = this.ids[n - 1];
      this.ids.splice(0, n);
      this.times.splice(0, n);
    }
    return this.received;
  }
}
