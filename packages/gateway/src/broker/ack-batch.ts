/** What an {@link AckBatch} sends on its channel. */
export interface AckSender {
  ack(deliveryTag: number, multiple: boolean): void;
  nack(deliveryTag: number): void;
}

const OPEN = 0;
const ACK_WANTED = 1;
const SETTLED = 2;

/**
 * The acknowledgements of one AMQP channel. A channel numbers its deliveries
 * 1, 2, 3… (consumers and `basic.get` alike) and `basic.ack` with
 * `multiple` settles every delivery up to a tag. Acks asked for during a
 * turn of the event loop are sent at its end ({@link flush}): the run of
 * consecutive settled deliveries from the oldest open one goes as one
 * `basic.ack multiple`, and acks past a delivery still open go one by one,
 * at once, so nothing waits longer than the turn. Requeues (`basic.nack`)
 * go at once.
 *
 * Every delivery of the channel must be {@link register}ed: a multiple ack
 * would settle one the batch does not know. If the tags it sees are not
 * consecutive, it stops batching on this channel for good and sends every
 * ack on its own.
 */
export class AckBatch {
  /** States of the deliveries from `base` on, in tag order; `states[head]` is delivery `base + head`. */
  private states: number[] = [];
  private head = 0;
  private base = 1;
  /** The last tag registered. */
  private last = 0;
  private batching = true;
  private wanted = 0;
  /** Frames sent: acks (single or multiple) and nacks. */
  frames = 0;

  constructor(private readonly sender: AckSender) {}

  /** A delivery arrived on the channel. */
  register(tag: number): void {
    if (tag !== this.last + 1) this.batching = false;
    this.last = tag;
    if (this.batching) this.states.push(OPEN);
  }

  /**
   * Asks to acknowledge `tag`. Returns `true` when it waits for {@link flush}
   * (call it at the end of the turn), `false` when it was sent now.
   */
  ack(tag: number): boolean {
    const i = this.index(tag);
    if (i === undefined) {
      this.frames++;
      this.sender.ack(tag, false);
      return false;
    }
    this.states[i] = ACK_WANTED;
    this.wanted++;
    return true;
  }

  /** Requeues `tag`, now. */
  nack(tag: number): void {
    const i = this.index(tag);
    if (i !== undefined) this.states[i] = SETTLED;
    this.frames++;
    this.sender.nack(tag);
  }

  /** Sends the acks asked for since the last flush. */
  flush(): void {
    if (this.wanted === 0) return;
    const { states } = this;
    let i = this.head;
    let lastAck = -1;
    let acks = 0;
    for (; i < states.length && states[i] !== OPEN; i++) {
      if (states[i] === ACK_WANTED) {
        lastAck = i;
        acks++;
      }
    }
    if (lastAck >= 0) {
      // Deliveries already settled inside the run are not outstanding any more: a multiple ack skips them.
      this.frames++;
      this.sender.ack(this.base + lastAck, acks > 1);
    }
    this.wanted -= acks;
    this.head = i;
    for (; this.wanted > 0 && i < states.length; i++) {
      if (states[i] !== ACK_WANTED) continue;
      states[i] = SETTLED;
      this.wanted--;
      this.frames++;
      this.sender.ack(this.base + i, false);
    }
    this.compact();
  }

  private index(tag: number): number | undefined {
    if (!this.batching) return undefined;
    const i = tag - this.base;
    return i >= this.head && i < this.states.length ? i : undefined;
  }

  private compact(): void {
    if (this.head === this.states.length) {
      this.base += this.head;
      this.states.length = 0;
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.states.length) {
      this.states = this.states.slice(this.head);
      this.base += this.head;
      this.head = 0;
    }
  }
}
