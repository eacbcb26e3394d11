import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { HEADERS, WarrenError } from '@warren/protocol';
import { QueueNotFoundError, type Broker, type ConsumerEnd, type Delivery, type Subscription } from './broker/broker.js';
import type { ConsumerQueues } from './consumer-queues.js';
import { sendError } from './http.js';
import type { Logger } from './logger.js';

export interface LongPollStats {
  active: number;
  started: number;
  delivered: number;
  timedOut: number;
  superseded: number;
  clientGone: number;
  failed: number;
}

type AbortReason = 'client-gone' | 'superseded' | 'shutdown';

type WaitResult =
  | { type: 'delivery'; delivery: Delivery }
  | { type: 'timeout' }
  | { type: 'aborted'; why: AbortReason }
  | { type: 'end'; end: ConsumerEnd }
  | { type: 'error'; error: unknown };

interface Poll {
  /** Set while the poll waits on a consumer. */
  abort?: (why: AbortReason) => void;
  /** Resolves once the poll holds nothing: consumer cancelled, every delivery acked or requeued. */
  settled: Promise<void>;
}

/** How often one poll may re-attach after its consumer was lost under it. */
const MAX_ATTEMPTS = 3;
/** Longest wait for a superseded poll to settle (a stuck write to a dead client). */
const TAKEOVER_WAIT_MS = 5000;

/**
 * `GET /<channel>` without streaming headers: answer the next message of this
 * consumer on this channel, and only then acknowledge it.
 *
 * A poll first takes a waiting message (`basic.get`): one broker round trip,
 * no consumer. Only when the queue is empty does it attach a consumer
 * (prefetch 1) and wait, up to its timeout.
 *
 * Two polls for the same consumer and channel on one gateway: the newer one
 * takes over. The older one, if still waiting, is answered
 * `409 POLL_SUPERSEDED` without a message; the newer one starts only once the
 * older one has settled (its consumer cancelled, anything it held acked or
 * requeued), so messages keep their order. Across gateways, the queue's
 * single-active-consumer argument lets one waiting poll at a time hold a
 * consumer. Either way a message goes to one poll.
 */
export class LongPoll {
  readonly stats: LongPollStats = { active: 0, started: 0, delivered: 0, timedOut: 0, superseded: 0, clientGone: 0, failed: 0 };
  private readonly current = new Map<string, Poll>();
  private readonly polls = new Set<Poll>();

  constructor(
    private readonly broker: Broker,
    private readonly queues: ConsumerQueues,
    private readonly log: Logger,
  ) {}

  async handle(res: ServerResponse, consumerId: string, channel: string, timeoutMs: number, headers: OutgoingHttpHeaders): Promise<void> {
    let markSettled!: () => void;
    const poll: Poll = { settled: new Promise<void>((resolve) => (markSettled = resolve)) };
    this.stats.started++;
    this.stats.active++;
    this.polls.add(poll);
    let queue: string | undefined;
    let gone = false;
    const onClose = (): void => {
      gone = true;
      poll.abort?.('client-gone');
    };
    res.once('close', onClose);
    try {
      const deadline = Date.now() + timeoutMs;
      for (let attempt = 1; ; attempt++) {
        if (!this.broker.ready) throw new WarrenError('BROKER_UNAVAILABLE', 'the broker is not connected');
        queue = await this.queues.ensure(consumerId, channel);
        if (attempt === 1) await this.takeOver(queue, poll);
        if (gone) {
          this.stats.clientGone++;
          return;
        }
        if (this.current.get(queue) !== poll) {
          // An even newer poll arrived while this one waited for its turn.
          this.stats.superseded++;
          sendError(res, new WarrenError('POLL_SUPERSEDED', 'a newer poll for this consumer and channel took over'), this.log, headers);
          return;
        }
        let result: WaitResult;
        try {
          const waiting = await this.broker.get(queue);
          if (waiting !== undefined) result = { type: 'delivery', delivery: waiting };
          else if (Date.now() >= deadline) result = { type: 'timeout' };
          else result = await this.wait(poll, queue, deadline);
        } catch (error) {
          result = { type: 'error', error };
        }
        if (result.type === 'delivery') {
          await this.deliver(res, result.delivery, headers);
          return;
        }
        if (result.type === 'timeout') {
          this.stats.timedOut++;
          res.writeHead(204, headers).end();
          return;
        }
        if (result.type === 'aborted') {
          if (gone) {
            this.stats.clientGone++;
          } else if (result.why === 'superseded') {
            this.stats.superseded++;
            sendError(res, new WarrenError('POLL_SUPERSEDED', 'a newer poll for this consumer and channel took over'), this.log, headers);
          } else {
            sendError(res, new WarrenError('BROKER_UNAVAILABLE', 'the gateway is shutting down'), this.log, headers);
          }
          return;
        }
        const retry =
          (result.type === 'end' && result.end.reason !== 'broker-lost') ||
          (result.type === 'error' && result.error instanceof QueueNotFoundError);
        if (retry && attempt < MAX_ATTEMPTS && Date.now() < deadline) {
          this.queues.invalidate(queue);
          continue;
        }
        if (result.type === 'error') throw result.error;
        throw new WarrenError('BROKER_UNAVAILABLE', `lost the consumer (${result.end.reason})`);
      }
    } catch (err) {
      this.stats.failed++;
      if (!gone) sendError(res, err, this.log, headers);
    } finally {
      res.off('close', onClose);
      this.stats.active--;
      this.polls.delete(poll);
      if (queue !== undefined && this.current.get(queue) === poll) this.current.delete(queue);
      markSettled();
    }
  }

  /** Answers every waiting poll (503) so that the gateway can stop. */
  shutdown(): void {
    for (const poll of this.polls) poll.abort?.('shutdown');
  }

  /** Makes `poll` the current one for `queue`, and waits until the previous one holds nothing. */
  private async takeOver(queue: string, poll: Poll): Promise<void> {
    const previous = this.current.get(queue);
    this.current.set(queue, poll);
    if (previous === undefined) return;
    previous.abort?.('superseded');
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([previous.settled, new Promise<void>((resolve) => (timer = setTimeout(resolve, TAKEOVER_WAIT_MS)))]);
    clearTimeout(timer);
  }

  /**
   * Waits on a consumer until a message, the deadline, an abort or the
   * consumer's end. Resolves only after the consumer is cancelled and
   * anything that reached it too late is requeued.
   */
  private async wait(poll: Poll, queue: string, deadline: number): Promise<WaitResult> {
    const late: Delivery[] = [];
    let done = false;
    let subscription: Promise<Subscription | undefined> = Promise.resolve(undefined);
    const result = await new Promise<WaitResult>((resolve) => {
      const finish = (r: WaitResult): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        poll.abort = undefined;
        resolve(r);
      };
      const timer = setTimeout(() => finish({ type: 'timeout' }), Math.max(0, deadline - Date.now()));
      poll.abort = (why) => finish({ type: 'aborted', why });
      this.queues.acquire(queue);
      subscription = this.broker
        .consume(queue, {
          prefetch: 1,
          onMessage: (delivery) => (done ? late.push(delivery) : finish({ type: 'delivery', delivery })),
          onEnd: (end) => finish({ type: 'end', end }),
        })
        .catch((error: unknown) => {
          finish({ type: 'error', error });
          return undefined;
        });
    });
    // Cancel before settling anything, so that a requeued message is not
    // handed straight back to this consumer.
    try {
      await (await subscription)?.cancel();
    } finally {
      this.queues.release(queue);
      for (const delivery of late) delivery.requeue();
    }
    return result;
  }

  /** Writes the message; acknowledges it once written, requeues it otherwise. Resolves when settled. */
  private deliver(res: ServerResponse, delivery: Delivery, headers: OutgoingHttpHeaders): Promise<void> {
    if (res.destroyed) {
      delivery.requeue();
      this.stats.clientGone++;
      return Promise.resolve();
    }
    const { message } = delivery;
    const out: OutgoingHttpHeaders = {
      ...headers,
      'content-type': message.contentType,
      'content-length': message.body.length,
      [HEADERS.messageId]: message.id,
    };
    if (message.event !== undefined) out[HEADERS.event] = message.event;
    // Node emits 'finish' even when the socket was destroyed with the
    // response half written, so the socket itself says whether it was written.
    const socket = res.socket;
    return new Promise<void>((resolve) => {
      const settle = (written: boolean): void => {
        res.off('finish', onFinish);
        res.off('close', onClose);
        if (written) {
          this.stats.delivered++;
          delivery.ack();
        } else {
          this.stats.clientGone++;
          delivery.requeue();
        }
        resolve();
      };
      const onFinish = (): void => settle(socket !== null && !socket.destroyed);
      const onClose = (): void => settle(false);
      try {
        res.writeHead(200, out);
      } catch (err) {
        // Cannot happen for messages that passed fromWire(); if it does, the
        // message goes back (not acknowledged) and the client gets a 500.
        delivery.requeue();
        this.stats.failed++;
        sendError(res, err, this.log);
        resolve();
        return;
      }
      res.once('finish', onFinish);
      res.once('close', onClose);
      res.end(message.body);
    });
  }
}
