import { consumerQueueName } from '@warren/protocol';
import { QueueNotFoundError, type Broker, type ConsumerEnd, type Delivery, type Subscription } from '../broker/broker.js';
import type { ConsumerQueues } from '../consumer-queues.js';
import type { Logger } from '../logger.js';
import { Ticker } from '../transports/ticker.js';
import type { Limiter } from './limiter.js';
import type { Sink } from './sink.js';

export interface QueueSubscriptionOptions {
  /** Most messages in flight to the client (unacknowledged) at once. */
  prefetch: number;
  /**
   * The id of the last message the client received (SSE `Last-Event-ID`). The
   * messages at the head of the queue that came back unacknowledged from an
   * earlier connection, up to and including this one, are acknowledged
   * without being sent again.
   */
  lastEventId?: string;
  /** Bounds consumer starts in flight; a stream whose client left while waiting never starts. */
  starts: Limiter;
  /** Called once when the subscription cannot go on (broker lost, queue gone twice). */
  onEnd(end: ConsumerEnd | { reason: 'error'; error: unknown }): void;
}

/** How long to hold redelivered messages while looking for `lastEventId` among them. */
const RESUME_WINDOW_MS = 100;

/**
 * How long a written message stays unacknowledged: the connection must stay
 * open this long after the write for the message to count as received.
 */
export const RECEIPT_MS = 1000;

/**
 * One timer looks for due receipts in every subscription, every eighth of
 * {@link RECEIPT_MS}: an idle stream holds no timer of its own, and the acks
 * of many streams leave in the same turn, so that a channel's run of them
 * goes as one `basic.ack multiple`. A message is acknowledged between
 * RECEIPT_MS and 1.125 × RECEIPT_MS after its write.
 */
const receipts = new Ticker<QueueSubscription>(RECEIPT_MS / 8, (subscription) => subscription.ackReceived());

/**
 * An identified consumer's stream: its own queue consumed with a bounded
 * prefetch, each message acknowledged only once the transport handed it to
 * the operating system and the connection stayed open {@link RECEIPT_MS}
 * after that (a write into a connection that is already dying succeeds too:
 * such a message goes back to the queue when the stream ends). A client that
 * stops reading stops its acks, so the broker stops delivering: the backlog
 * stays in the queue, not in memory.
 */
export class QueueSubscription {
  readonly queue: string;
  private subscription: Subscription | undefined;
  private stopped = false;
  private ended = false;
  /** Redelivered messages held while looking for `lastEventId`. */
  private held: Delivery[] | undefined;
  private heldTimer: NodeJS.Timeout | undefined;
  /** Deliveries handed to the sink and not settled yet. */
  private inFlight = 0;
  /** Written deliveries waiting for their receipt time, oldest first, and when each was written. */
  private readonly written: Delivery[] = [];
  private readonly writtenAt: number[] = [];
  private whenSettled: (() => void) | undefined;

  constructor(
    private readonly broker: Broker,
    private readonly queues: ConsumerQueues,
    private readonly log: Logger,
    private readonly consumerId: string,
    readonly channel: string,
    private readonly sink: Sink,
    private readonly options: QueueSubscriptionOptions,
  ) {
    this.queue = consumerQueueName(consumerId, channel);
    if (options.lastEventId !== undefined) this.held = [];
  }

  /** Declares (once) and starts consuming. Rejects if the broker refuses. */
  async start(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      await this.queues.ensure(this.consumerId, this.channel);
      if (this.stopped) return;
      try {
        // Reconnecting clients can ask for consumers faster than the broker
        // starts them: queue here (bounded in flight), and skip the ones whose
        // client is gone by their turn, instead of piling RPCs up in amqplib.
        const started = await this.options.starts.run(async () => {
          if (this.stopped) return false;
          this.queues.acquire(this.queue);
          this.subscription = await this.broker.consume(this.queue, {
            prefetch: this.options.prefetch,
            onMessage: (delivery) => this.onMessage(delivery),
            onEnd: (end) => this.end(end),
          });
          return true;
        });
        if (!started) return;
      } catch (err) {
        this.queues.release(this.queue);
        if (err instanceof QueueNotFoundError && attempt < 2) {
          this.queues.invalidate(this.queue);
          continue;
        }
        throw err;
      }
      // Stopped while the consumer was starting: stop() found no subscription to cancel.
      if (this.stopped && this.subscription !== undefined) {
        const subscription = this.subscription;
        this.subscription = undefined;
        await subscription.cancel();
        this.queues.release(this.queue);
      }
      return;
    }
  }

  /** Stops consuming. Messages still being written settle through their write callbacks. Idempotent. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.flushHeld(false);
    const subscription = this.subscription;
    this.subscription = undefined;
    if (subscription !== undefined) {
      await subscription.cancel();
      this.queues.release(this.queue);
    }
    // Not known to be received: back to the queue (after the cancel, so that they do not come back to this consumer).
    this.requeueWritten();
  }

  /**
   * Resolves once every delivery handed to the sink is settled (acknowledged
   * or requeued), or after `timeoutMs`: a newer stream of the same consumer
   * starts after that, so that requeued messages keep their place.
   */
  async settled(timeoutMs: number): Promise<void> {
    if (this.inFlight === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((resolve) => (this.whenSettled = resolve)),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs))),
    ]);
    clearTimeout(timer);
  }

  private end(end: ConsumerEnd | { reason: 'error'; error: unknown }): void {
    if (this.ended || this.stopped) return;
    this.ended = true;
    this.flushHeld(false);
    // The channel is gone: the broker requeued what was unacknowledged.
    this.written.length = 0;
    this.writtenAt.length = 0;
    receipts.delete(this);
    if (this.subscription !== undefined) this.queues.release(this.queue);
    this.subscription = undefined;
    this.options.onEnd(end);
  }

  private onMessage(delivery: Delivery): void {
    if (this.stopped) {
      delivery.requeue();
      return;
    }
    if (this.held !== undefined) {
      if (delivery.redelivered) {
        this.held.push(delivery);
        if (delivery.message.id === this.options.lastEventId) {
          // The client has everything up to here: acknowledge, do not resend.
          for (const seen of this.held) seen.ack();
          this.held = undefined;
          clearTimeout(this.heldTimer);
        } else {
          clearTimeout(this.heldTimer);
          this.heldTimer = setTimeout(() => this.flushHeld(true), RESUME_WINDOW_MS);
        }
        return;
      }
      // A message never delivered before: the redelivered ones (if any) were not seen.
      this.flushHeld(true);
    }
    this.write(delivery);
  }

  private flushHeld(send: boolean): void {
    const held = this.held;
    this.held = undefined;
    clearTimeout(this.heldTimer);
    if (held === undefined) return;
    for (const delivery of held) {
      if (send && !this.stopped) this.write(delivery);
      else delivery.requeue();
    }
  }

  private write(delivery: Delivery): void {
    this.inFlight++;
    try {
      this.sink.send(this.channel, delivery.message, (ok) => {
        if (ok) this.received(delivery);
        else delivery.requeue();
        this.settle();
      });
    } catch (err) {
      delivery.requeue();
      this.settle();
      this.log.error('stream write failed', { error: (err as Error).message });
    }
  }

  /**
   * Written: acknowledged at its receipt time, or at once when half the
   * prefetch waits (the broker keeps delivering). A transport that confirms
   * receipt (a WebSocket's pong) has already: acknowledged at once.
   */
  private received(delivery: Delivery): void {
    if (this.sink.confirmsReceipt?.() === true) {
      delivery.ack();
      return;
    }
    if (this.stopped) {
      delivery.requeue();
      return;
    }
    this.written.push(delivery);
    this.writtenAt.push(Date.now());
    if (this.written.length > this.options.prefetch / 2) this.ackWritten(Infinity);
    if (this.written.length > 0) receipts.add(this);
  }

  /** @internal Acknowledges what was written at least {@link RECEIPT_MS} ago (the shared ticker calls it). */
  ackReceived(): void {
    this.ackWritten(Date.now() - RECEIPT_MS);
    if (this.written.length === 0) receipts.delete(this);
  }

  /** Acknowledges the written deliveries written at or before `before` (and, with `Infinity`, the oldest one). */
  private ackWritten(before: number): void {
    if (before === Infinity) {
      this.written.shift()!.ack();
      this.writtenAt.shift();
      return;
    }
    let n = 0;
    while (n < this.written.length && this.writtenAt[n]! <= before) this.written[n++]!.ack();
    this.written.splice(0, n);
    this.writtenAt.splice(0, n);
  }

  /** Requeues every written delivery not acknowledged yet. */
  private requeueWritten(): void {
    receipts.delete(this);
    for (const delivery of this.written.splice(0)) delivery.requeue();
    this.writtenAt.length = 0;
  }

  private settle(): void {
    if (--this.inFlight > 0) return;
    const resolve = this.whenSettled;
    this.whenSettled = undefined;
    resolve?.();
  }
}
