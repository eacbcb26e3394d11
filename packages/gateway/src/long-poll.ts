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

type WaitResult =
  | { type: 'delivery'; delivery: Delivery }
  | { type: 'timeout' }
  | { type: 'aborted'; why: AbortReason }
  | { type: 'end'; end: ConsumerEnd }
  | { type: 'error'; error: unknown };

type AbortReason = 'client-gone' | 'superseded' | 'shutdown';

interface Poll {
  abort?: (why: AbortReason) => void;
}

/** How often one poll may re-attach after its consumer was lost under it. */
const MAX_ATTEMPTS = 3;

/**
 * `GET /<channel>` without streaming headers: wait for the next message of
 * this consumer on this channel, answer it, and only then acknowledge it.
 *
 * Two polls for the same consumer and channel on one gateway: the newer one
 * takes over and the older one is answered `409 POLL_SUPERSEDED` without a
 * message. Across gateways, RabbitMQ's single-active-consumer queue
 * argument serialises them: the later poll waits its turn. Either way one
 * message goes to one poll, in queue order.
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
    const poll: Poll = {};
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
        if (gone) {
          this.stats.clientGone++;
          return;
        }
        if (attempt === 1) {
          this.current.get(queue)?.abort?.('superseded');
          this.current.set(queue, poll);
        }
        const result = await this.wait(poll, queue, deadline);
        if (result.type === 'delivery') {
          this.deliver(res, result.delivery, headers, gone);
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
    }
  }

  /** Answers every waiting poll (503) so that the gateway can stop. */
  shutdown(): void {
    for (const poll of this.polls) poll.abort?.('shutdown');
  }

  private wait(poll: Poll, queue: string, deadline: number): Promise<WaitResult> {
    return new Promise<WaitResult>((resolve) => {
      let done = false;
      const late: Delivery[] = [];
      let subscription: Promise<Subscription | undefined>;
      const finish = (result: WaitResult): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        poll.abort = undefined;
        // Cancel first; only then settle what arrived too late, so that a
        // requeued message is not handed straight back to this consumer.
        const cancelled = subscription.then((s) => s?.cancel()).finally(() => {
          this.queues.release(queue);
          for (const delivery of late) delivery.requeue();
        });
        if (result.type === 'delivery') {
          const delivery = result.delivery;
          // Settle after the cancel, for the same reason.
          resolve({
            type: 'delivery',
            delivery: {
              message: delivery.message,
              redelivered: delivery.redelivered,
              ack: () => void cancelled.then(() => delivery.ack()),
              requeue: () => void cancelled.then(() => delivery.requeue()),
            },
          });
          return;
        }
        resolve(result);
      };
      const timer = setTimeout(() => finish({ type: 'timeout' }), Math.max(0, deadline - Date.now()));
      poll.abort = (why) => finish({ type: 'aborted', why });
      this.queues.acquire(queue);
      subscription = this.broker
        .consume(queue, {
          prefetch: 1,
          onMessage: (delivery) => {
            if (done) late.push(delivery);
            else finish({ type: 'delivery', delivery });
          },
          onEnd: (end) => finish({ type: 'end', end }),
        })
        .catch((error: unknown) => {
          finish({ type: 'error', error });
          return undefined;
        });
    });
  }

  private deliver(res: ServerResponse, delivery: Delivery, headers: OutgoingHttpHeaders, gone: boolean): void {
    if (gone || res.destroyed) {
      delivery.requeue();
      this.stats.clientGone++;
      return;
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
    let finished = false;
    res.once('finish', () => {
      finished = true;
      if (socket === null || socket.destroyed) {
        this.stats.clientGone++;
        delivery.requeue();
        return;
      }
      this.stats.delivered++;
      delivery.ack();
    });
    res.once('close', () => {
      if (!finished) {
        this.stats.clientGone++;
        delivery.requeue();
      }
    });
    res.writeHead(200, out);
    res.end(message.body);
  }
}
