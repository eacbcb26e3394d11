import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { HEADERS, WarrenError, type WarrenMessage } from '@warren/protocol';
import { QueueNotFoundError, type Broker, type ConsumerEnd, type Delivery, type Subscription } from '../broker/broker.js';
import type { ConsumerQueues } from '../consumer-queues.js';
import { sendError } from '../http.js';
import { noteAccess } from '../access-log.js';
import type { Admission } from '../admission.js';
import type { Upstream } from '../upstream.js';
import { within } from '../deadline.js';
import { consumerCookie, findConsumer, resolveConsumer } from '../consumer-id.js';
import type { Logger } from '../logger.js';
import type { FanOut, FanOutMember } from '../sources/fan-out.js';
import type { Sink, SinkCloseReason } from '../sources/sink.js';
import { parseHistory, type ChannelLogs } from '../logs/channel-logs.js';
import type { LogPolls, LogPollStart } from './long-poll-log.js';

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

/** One poll in progress: its client, its deadlines, and what it still has to clean up. */
interface PollRun {
  readonly poll: Poll;
  readonly res: ServerResponse;
  readonly headers: OutgoingHttpHeaders;
  readonly deadline: number;
  /** The poll is answered by then at the latest ({@link POLL_GRACE_MS} after its deadline). */
  readonly lastAnswer: number;
  /** The client hung up. */
  gone: boolean;
  queue: string | undefined;
  /** Consumers being cancelled after the answer went out; the poll is settled once they are. */
  readonly cleanups: Promise<void>[];
}

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

export interface LongPollFrontOptions {
  /** How long a poll waits when it does not say (`--poll-timeout`). */
  pollTimeoutMs: number;
  /** The longest `?timeout=` a client may ask for (`--max-poll-timeout`). */
  maxPollTimeoutMs: number;
}

/**
 * Long-poll as a transport: the HTTP front of `GET /<channel>` without
 * streaming headers. It admits the poll (who reads, the caps, the queue
 * budget), names the consumer back to the client (header, and a cookie for
 * an id minted now), and hands the poll to {@link LongPoll}: the consumer's
 * queue, or for an id minted now the channel's live fan-out.
 */
export class LongPollFront {
  constructor(
    readonly polls: LongPoll,
    private readonly fanOut: FanOut,
    private readonly admission: Admission,
    private readonly upstream: Upstream,
    private readonly options: LongPollFrontOptions,
    private readonly logs?: { channels: ChannelLogs; polls: LogPolls },
  ) {}

  async serve(req: IncomingMessage, res: ServerResponse, channel: string, query: URLSearchParams): Promise<void> {
    const { admission } = this;
    const requested = findConsumer(req, query);
    const { consumerId: vouched } = await admission.identify(req, admission.findToken(req, query), channel, requested);
    // The client's own id (named, from its cookie, or new), when nobody vouched for one.
    const own = vouched === undefined ? resolveConsumer(req, query) : undefined;
    const consumerId = own === undefined ? vouched! : admission.unvouched(own.id);
    // The body is a publisher's bytes in the publisher's content type: opened as a page, it must not run.
    const headers: OutgoingHttpHeaders = {
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      'content-security-policy': 'sandbox',
    };
    // The id the client can send back (not the identity prefix, which is the app's to give, nor the namespace).
    const shown = requested ?? own?.id;
    if (shown !== undefined) headers[HEADERS.consumerId] = shown;
    if (own?.assigned) headers['set-cookie'] = consumerCookie(own.id, this.upstream.secure(req));
    const timeoutMs = pollTimeout(query, this.options);
    admission.checkOpen(true);
    const slot = admission.take(req, consumerId);
    // An id minted for this very poll reads the live fan-out, as an anonymous stream does.
    noteAccess(req, { consumer: own?.assigned ? 'anonymous' : admission.consumerKind(req, consumerId) });
    try {
      const address = admission.clientAddress(req);
      const logged = this.loggedStart(channel, query);
      if (logged !== undefined) {
        // A logged channel: no queue; an identified consumer keeps a position instead (an id minted now is anonymous).
        await this.logs!.polls.handle(res, channel, own?.assigned ? undefined : consumerId, logged, timeoutMs, headers);
      } else if (own?.assigned) {
        // An id minted for this very poll: no queue until the client comes back with it.
        if (timeoutMs > 0) admission.admitQueue(address, channel, undefined);
        await this.polls.handleLive(this.fanOut, res, channel, timeoutMs, headers);
      } else {
        admission.admitQueue(address, channel, consumerId);
        await this.polls.handle(res, consumerId, channel, timeoutMs, headers);
      }
    } finally {
      admission.give(slot);
    }
  }

  /**
   * `?since=` and `?history=` of a poll of a logged channel; `undefined` for a channel that is not logged.
   * @throws WarrenError `INVALID_REQUEST`
   */
  private loggedStart(channel: string, query: URLSearchParams): LogPollStart | undefined {
    if (this.logs === undefined || !this.logs.channels.isLogged(channel)) return undefined;
    const since = query.get('since') ?? undefined;
    if (since !== undefined && since.length > 64) throw new WarrenError('INVALID_REQUEST', 'since is an event id (at most 64 characters)');
    return { since, history: parseHistory(query.get('history')) };
  }
}

/**
 * The poll's timeout: `?timeout=<seconds>` (0 to the maximum), else the default.
 * @throws WarrenError `INVALID_TIMEOUT`
 */
function pollTimeout(query: URLSearchParams, options: LongPollFrontOptions): number {
  const asked = query.get('timeout');
  if (asked === null) return options.pollTimeoutMs;
  const seconds = /^\d+(\.\d+)?$/.test(asked) ? Number(asked) : NaN;
  if (!(seconds * 1000 <= options.maxPollTimeoutMs)) {
    throw new WarrenError('INVALID_TIMEOUT', `timeout must be a number of seconds from 0 to ${options.maxPollTimeoutMs / 1000}`);
  }
  return Math.round(seconds * 1000);
}

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
    const deadline = Date.now() + timeoutMs;
    const run: PollRun = {
      poll,
      res,
      headers,
      deadline,
      lastAnswer: deadline + POLL_GRACE_MS,
      gone: false,
      queue: undefined,
      cleanups: [],
    };
    this.stats.started++;
    this.stats.active++;
    this.polls.add(poll);
    const onClose = (): void => {
      run.gone = true;
      poll.abort?.('client-gone');
    };
    res.once('close', onClose);
    try {
      for (let attempt = 1; ; attempt++) {
        if (!this.broker.ready) throw new WarrenError('BROKER_UNAVAILABLE', 'the broker is not connected');
        const queue = await beforeDeadline(this.queues.ensure(consumerId, channel), run.lastAnswer);
        run.queue = queue;
        if (attempt === 1) await this.takeOver(queue, poll, run.lastAnswer);
        if (run.gone) {
          this.stats.clientGone++;
          return;
        }
        if (this.current.get(queue) !== poll) {
          // An even newer poll arrived while this one waited for its turn.
          this.superseded(run);
          return;
        }
        const result = await this.take(run, queue);
        if (await this.answer(run, result)) return;
        const retry =
          (result.type === 'end' && result.end.reason !== 'broker-lost') ||
          (result.type === 'error' && result.error instanceof QueueNotFoundError);
        if (retry && attempt < MAX_ATTEMPTS && Date.now() < deadline) {
          this.queues.invalidate(queue);
          continue;
        }
        if (result.type === 'error') throw result.error;
        throw new WarrenError('BROKER_UNAVAILABLE', `lost the consumer (${(result as { end: ConsumerEnd }).end.reason})`);
      }
    } catch (err) {
      this.stats.failed++;
      const error =
        err instanceof PastDeadline ? new WarrenError('BROKER_TIMEOUT', "the broker did not answer within the poll's timeout") : err;
      if (!run.gone) sendError(res, error, this.log, headers);
    } finally {
      res.off('close', onClose);
      this.stats.active--;
      this.polls.delete(poll);
      // Current until settled: a newer poll waits for this one's consumer to be
      // cancelled (and what reached it late requeued) before it takes over.
      const settle = (): void => {
        if (run.queue !== undefined && this.current.get(run.queue) === poll) this.current.delete(run.queue);
        markSettled();
      };
      if (run.cleanups.length === 0) settle();
      else void Promise.allSettled(run.cleanups).then(settle);
    }
  }

  /**
   * Takes the next message of `queue` for `run`: a waiting one at once
   * (`basic.get`), else the first to reach a consumer before the deadline.
   * @throws PastDeadline when the broker does not answer in time
   */
  private async take(run: PollRun, queue: string): Promise<WaitResult> {
    try {
      const waiting = await beforeDeadline(this.broker.get(queue), run.lastAnswer, (late) => late?.requeue());
      if (waiting !== undefined) return { type: 'delivery', delivery: waiting };
      if (Date.now() >= run.deadline) return { type: 'timeout' };
      const { result, cleanup } = await this.wait(run.poll, queue, run.deadline);
      // A message must not go out before the consumer is cancelled (a
      // failed write requeues it, and it must not come straight back);
      // anything else is answered at once, while the broker catches up.
      if (result.type !== 'delivery') {
        run.cleanups.push(cleanup);
        return result;
      }
      await beforeDeadline(cleanup, run.lastAnswer).catch((err: unknown) => {
        result.delivery.requeue();
        throw err;
      });
      return result;
    } catch (error) {
      if (error instanceof PastDeadline) throw error;
      return { type: 'error', error };
    }
  }

  /** Answers the client for `result`; `false` when the result calls for another attempt (or a failure). */
  private async answer(run: PollRun, result: WaitResult): Promise<boolean> {
    switch (result.type) {
      case 'delivery':
        await this.deliver(run.res, result.delivery, run.headers);
        return true;
      case 'timeout':
        this.stats.timedOut++;
        run.res.writeHead(204, run.headers).end();
        return true;
      case 'aborted':
        if (run.gone) this.stats.clientGone++;
        else if (result.why === 'superseded') this.superseded(run);
        else sendError(run.res, new WarrenError('BROKER_UNAVAILABLE', 'the gateway is shutting down'), this.log, run.headers);
        return true;
      default:
        return false;
    }
  }

  private superseded(run: PollRun): void {
    this.stats.superseded++;
    sendError(run.res, new WarrenError('POLL_SUPERSEDED', 'a newer poll for this consumer and channel took over'), this.log, run.headers);
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
        res.writeHead(200, messageHeaders(message, headers)).end(message.body);
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
      const error =
        err instanceof PastDeadline ? new WarrenError('BROKER_TIMEOUT', "the broker did not answer within the poll's timeout") : err;
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
    this.logged?.shutdown();
  }

  /** The polls of logged channels, answered at shutdown with the others. */
  logged: LogPolls | undefined;

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
    const out = messageHeaders(message, headers);
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

/** The headers of a poll's answer that carries `message`: its content type and length, id and event name. */
function messageHeaders(message: WarrenMessage, headers: OutgoingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {
    ...headers,
    'content-type': message.contentType,
    'content-length': message.body.length,
    [HEADERS.messageId]: message.id,
  };
  if (message.event !== undefined) out[HEADERS.event] = message.event;
  return out;
}
