/**
 * The sequenced producer of a fault run: `{"seq": n}` bodies with unique
 * message ids at a steady rate through `@warren/producer` (AMQP, straight to
 * the node), recording which publishes the broker confirmed and which failed,
 * by error code. At most `maxInFlight` publishes wait for a confirm; a tick
 * that would exceed it records its messages as `NOT_SENT` instead of queueing
 * without bound.
 */
import { Producer } from '@warren/producer';
import type { History } from './history.js';

export interface SequencedProducerOptions {
  url: string;
  channel: string;
  runId: string;
  history: History;
  /** Messages per second. @default 200 */
  rate?: number;
  /** @default 400 */
  maxInFlight?: number;
  /** Filler characters added to each body (`pad`), so that a slow reader's backlog outgrows the socket buffers. @default 0 */
  padBytes?: number;
}

export class SequencedProducer {
  private readonly producer: Producer;
  private timer: NodeJS.Timeout | undefined;
  private seq = 0;
  private inFlight = new Set<Promise<unknown>>();
  private startedAt = 0;

  private readonly pad: string;

  constructor(private readonly o: SequencedProducerOptions) {
    this.producer = new Producer({ url: o.url });
    this.pad = 'x'.repeat(o.padBytes ?? 0);
  }

  get sent(): number {
    return this.seq;
  }

  start(): void {
    const rate = this.o.rate ?? 200;
    const max = this.o.maxInFlight ?? 400;
    this.startedAt = Date.now();
    // Ticks of 20 ms catch up to rate × elapsed, so a late timer does not lower the rate.
    this.timer = setInterval(() => {
      const due = Math.floor(((Date.now() - this.startedAt) * rate) / 1000);
      const burst = Math.min(due - this.seq, 50);
      for (let k = 0; k < burst; k++) this.publishOne(max);
      if (due - this.seq > 50) this.startedAt = Date.now() - (this.seq * 1000) / rate; // far behind: never burst
    }, 20);
  }

  private publishOne(max: number): void {
    const seq = this.seq++;
    const h = this.o.history;
    h.sent(seq);
    if (this.inFlight.size >= max) {
      h.settled(seq, 'NOT_SENT');
      return;
    }
    const p = this.producer
      .publish(this.pad === '' ? { seq } : { seq, pad: this.pad }, { id: `m-${this.o.runId}-${seq}` })
      .to(this.o.channel)
      .then(
        () => h.settled(seq, 'confirmed'),
        (err: { code?: string }) => h.settled(seq, err.code ?? 'UNKNOWN'),
      );
    this.inFlight.add(p);
    void p.finally(() => this.inFlight.delete(p));
  }

  /** Stops publishing and waits (up to `waitMs`) for the publishes in flight to settle. */
  async stop(waitMs = 20_000): Promise<void> {
    clearInterval(this.timer);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((r) => (timer = setTimeout(r, waitMs)));
    await Promise.race([Promise.allSettled([...this.inFlight]), late]);
    clearTimeout(timer);
    await Promise.race([this.producer.close(), new Promise((r) => setTimeout(r, 2000).unref())]).catch(() => undefined);
  }
}
