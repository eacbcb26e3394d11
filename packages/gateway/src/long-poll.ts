import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { HEADERS, WarrenError, type WarrenMessage } from '@warren/protocol';
import { QueueNotFoundError, type Broker, type ConsumerEnd, type Delivery, type Subscription } from './broker/broker.js';
import type { ConsumerQueues } from './consumer-queues.js';
import { sendError } from './http.js';
import { within } from './deadline.js';
import type { Logger } from './logger.js';
import type { FanOut, FanOutMember } from './streams/fan-out.js';
import type { Sink, SinkCloseReason } from './streams/sink.js';

export interface LongPollStats {
  active: number;
  /** Polls of a consumer id minted for them, answered from the live fan-out (no queue). */
  live: number;
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
 * A poll is answered at the latest this long after its timeout, whatever the
 * broker does: a stalled broker gets `503 BROKER_TIMEOUT`, not a hung client.
 */
export const POLL_GRACE_MS = 2000;

/** Raised when a poll's broker work runs past its timeout and grace. */
class PastDeadline extends Error {}

/** `work`, or a {@link PastDeadline} rejection at `until` (ms epoch); what it yields later goes to `late`. */
function beforeDeadline<T>(work: Promise<T>, until: number, late?: (value: T) => void): Promise<T> {
  return within(work, until - Date.now(), () => new PastDeadline(), late);
}

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
  readonly stats: LongPollStats = { active: 0, live: 0, started: 0, delivered: 0, timedOut: 0, superseded: 0, clientGone: 0, failed: 0 };
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
    /** Consumers being cancelled after the answer went out; the poll is settled once they are. */
    const cleanups: Promise<void>[] = [];
    try {
      const deadline = Date.now() + timeoutMs;
      const lastAnswer = deadline + POLL_GRACE_MS;
      for (let attempt = 1; ; attempt++) {
        if (!this.broker.ready) throw new WarrenError('BROKER_UNAVAILABLE', 'the broker is not connected');
        queue = await beforeDeadline(this.queues.ensure(consumerId, channel), lastAnswer);
        if (attempt === 1) await this.takeOver(queue, poll, lastAnswer);
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
          const waiting = await beforeDeadline(this.broker.get(queue), lastAnswer, (late) => late?.requeue());
          if (waiting !== undefined) result = { type: 'delivery', delivery: waiting };
          else if (Date.now() >= deadline) result = { type: 'timeout' };
          else {
            const waited = await this.wait(poll, queue, deadline);
            result = waited.result;
            // A message must not go out before the consumer is cancelled (a
            // failed write requeues it, and it must not come straight back);
            // anything else is answered at once, while the broker catches up.
            if (result.type === 'delivery') {
              const { delivery } = result;
              await beforeDeadline(waited.cleanup, lastAnswer).catch((err: unknown) => {
                delivery.requeue();
                throw err;
              });
            } else cleanups.push(waited.cleanup);
          }
        } catch (error) {
          if (error instanceof PastDeadline) throw error;
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
      const error = err instanceof PastDeadline ? new WarrenError('BROKER_TIMEOUT', 'the broker did not answer within the poll\'s timeout') : err;
      if (!gone) sendError(res, error, this.log, headers);
    } finally {
      res.off('close', onClose);
      this.stats.active--;
      this.polls.delete(poll);
      // Current until settled: a newer poll waits for this one's consumer to be
      // cancelled (and what reached it late requeued) before it takes over.
      const settle = (): void => {
        if (queue !== undefined && this.current.get(queue) === poll) this.current.delete(queue);
        markSettled();
      };
      if (cleanups.length === 0) settle();
      else void Promise.allSettled(cleanups).then(settle);
    }
  }

  /**
   * A poll of a client that named no consumer (the gateway minted one for
   * it just now): no queue is declared for an id that may never come back
   * (curl without cookies, a flood of polls). It waits for the next live
   * message of the channel from the process's fan-out; a client that comes
   * back with the minted id (its cookie) gets a queue from that poll on.
   */
  async handleLive(fanOut: FanOut, res: ServerResponse, channel: string, timeoutMs: number, headers: OutgoingHttpHeaders): Promise<void> {
    this.stats.started++;
    this.stats.live++;
    // Nothing can be waiting for a consumer that did not exist a moment ago.
    if (timeoutMs === 0) {
      this.stats.timedOut++;
      res.writeHead(204, headers).end();
      return;
    }
    this.stats.active++;
    let finish!: (result: LiveResult) => void;
    const outcome = new Promise<LiveResult>((resolve) => (finish = resolve));
    const poll: Poll = { settled: outcome.then(() => undefined), abort: (why) => finish({ type: 'aborted', why }) };
    this.polls.add(poll);
    const timer = setTimeout(() => finish({ type: 'timeout' }), timeoutMs);
    const onClose = (): void => finish({ type: 'aborted', why: 'client-gone' });
    res.once('close', onClose);
    const sink = new NextMessage(finish);
    let member: FanOutMember | undefined;
    try {
      member = await beforeDeadline(fanOut.subscribe(channel, sink), Date.now() + timeoutMs + POLL_GRACE_MS, (late) => late.remove());
      const result = await outcome;
      if (result.type === 'message') {
        const { message } = result;
        const out: OutgoingHttpHeaders = { ...headers, 'content-type': message.contentType, 'content-length': message.body.length, [HEADERS.messageId]: message.id };
        if (message.event !== undefined) out[HEADERS.event] = message.event;
        res.writeHead(200, out).end(message.body);
        this.stats.delivered++;
      } else if (result.type === 'timeout') {
        this.stats.timedOut++;
        res.writeHead(204, headers).end();
      } else if (result.type === 'dropped' || (result.type === 'aborted' && result.why === 'shutdown')) {
        sendError(res, new WarrenError('BROKER_UNAVAILABLE', 'the live stream of this channel ended'), this.log, headers);
      } else {
        this.stats.clientGone++;
      }
    } catch (err) {
      this.stats.failed++;
      const error = err instanceof PastDeadline ? new WarrenError('BROKER_TIMEOUT', 'the broker did not answer within the poll\'s timeout') : err;
      if (!res.destroyed) sendError(res, error, this.log, headers);
    } finally {
      clearTimeout(timer);
      res.off('close', onClose);
      member?.remove();
      finish({ type: 'timeout' });
      this.polls.delete(poll);
      this.stats.active--;
    }
  }

  /** Answers every waiting poll (503) so that the gateway can stop. */
  shutdown(): void {
    for (const poll of this.polls) poll.abort?.('shutdown');
  }

  /** Makes `poll` the current one for `queue`, and waits until the previous one holds nothing. */
  private async takeOver(queue: string, poll: Poll, lastAnswer: number): Promise<void> {
    const previous = this.current.get(queue);
    this.current.set(queue, poll);
    if (previous === undefined) return;
    previous.abort?.('superseded');
    let timer: NodeJS.Timeout | undefined;
    const waitMs = Math.min(TAKEOVER_WAIT_MS, Math.max(0, lastAnswer - Date.now()));
    await Promise.race([previous.settled, new Promise<void>((resolve) => (timer = setTimeout(resolve, waitMs)))]);
    clearTimeout(timer);
  }

  /**
   * Waits on a consumer until a message, the deadline, an abort or the
   * consumer's end. `cleanup` resolves once the consumer is cancelled and
   * anything that reached it too late is requeued.
   */
  private async wait(poll: Poll, queue: string, deadline: number): Promise<{ result: WaitResult; cleanup: Promise<void> }> {
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
    const cleanup = (async () => {
      try {
        await (await subscription)?.cancel();
      } catch (err) {
        this.log.warn('poll consumer cancel failed', { error: String(err) });
      } finally {
        this.queues.release(queue);
        for (const delivery of late) delivery.requeue();
      }
    })();
    return { result, cleanup };
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

type LiveResult =
  | { type: 'message'; message: WarrenMessage }
  | { type: 'timeout' }
  | { type: 'dropped'; reason: SinkCloseReason }
  | { type: 'aborted'; why: AbortReason };

/** The fan-out sink of one live poll: takes the first message (later ones are not its concern). */
class NextMessage implements Sink {
  constructor(private readonly finish: (result: LiveResult) => void) {}

  send(_channel: string, message: WarrenMessage): void {
    this.finish({ type: 'message', message });
  }

  pendingBytes(): number {
    return 0;
  }

  drop(reason: SinkCloseReason): void {
    this.finish({ type: 'dropped', reason });
  }
}
