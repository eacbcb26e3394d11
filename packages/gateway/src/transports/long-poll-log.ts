import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { HEADERS, WarrenError, type WarrenMessage } from '@warren/protocol';
import { sendError } from '../http.js';
import type { Logger } from '../logger.js';
import type { ChannelLogs } from '../logs/channel-logs.js';
import { SIGNALS, type LogStart } from '../logs/log-subscription.js';
import type { Positions } from '../logs/positions.js';
import type { Sink, SinkCloseReason } from '../sources/sink.js';
import { within } from '../deadline.js';
import { POLL_GRACE_MS, type LongPollStats } from './long-poll.js';

/** The header of a long-poll answer that follows a gap in the log (`history-gone`). */
export const GAP_HEADER = 'warren-gap';

/** Longest wait for a superseded poll of the same consumer to settle. */
const TAKEOVER_WAIT_MS = 5000;

/** Where a poll of a logged channel starts, as the client asked. */
export interface LogPollStart {
  /** `?since=`: the event id of the last message the client has. */
  since?: string;
  /** `?history=N`: the oldest of the last N messages of the channel. */
  history?: number;
}

type Outcome =
  | { type: 'message'; message: WarrenMessage; gap: boolean }
  | { type: 'timeout'; gap: boolean }
  | { type: 'ended'; why: 'client-gone' | 'superseded' | 'shutdown' | SinkCloseReason };

interface LogPoll {
  finish(outcome: Outcome): void;
  settled: Promise<void>;
}

/**
 * Long-polls of logged channels (docs/channel-logs.md, "Long-poll"): each
 * poll reads the channel's log from a position (`?since=`, `?history=`, or
 * the position recorded for an identified consumer) and answers the first
 * message after it, with its event id in `Message-Id`. An identified
 * consumer keeps no queue: the id of what was written to it is recorded in
 * the positions stream once its answer was handed to the socket.
 */
export class LogPolls {
  private readonly current = new Map<string, LogPoll>();
  private readonly polls = new Set<LogPoll>();

  constructor(
    private readonly logs: ChannelLogs,
    private readonly positions: Positions,
    private readonly stats: LongPollStats,
    private readonly log: Logger,
  ) {}

  /** Answers one poll of `channel`; `consumer` is undefined for an anonymous poller (nothing is recorded). */
  async handle(
    res: ServerResponse,
    channel: string,
    consumer: string | undefined,
    asked: LogPollStart,
    timeoutMs: number,
    headers: OutgoingHttpHeaders,
  ): Promise<void> {
    let finish!: (outcome: Outcome) => void;
    const outcome = new Promise<Outcome>((resolve) => (finish = resolve));
    let settle!: () => void;
    const poll: LogPoll = { finish: (o) => finish(o), settled: new Promise((resolve) => (settle = resolve)) };
    const key = consumer === undefined ? undefined : `${consumer}\n${channel}`;
    const deadline = Date.now() + timeoutMs;
    const lastAnswer = (): number => deadline + POLL_GRACE_MS - Date.now();
    this.stats.started++;
    this.stats.active++;
    this.polls.add(poll);
    const onClose = (): void => finish({ type: 'ended', why: 'client-gone' });
    res.once('close', onClose);
    let timer: NodeJS.Timeout | undefined;
    let stop: (() => Promise<void>) | undefined;
    try {
      if (key !== undefined) await this.takeOver(key, poll);
      const start = await within(this.start(channel, consumer, asked), lastAnswer(), brokerTimeout);
      const sink = new FirstMessage(finish, start.silentReset ? (id) => this.positions.record(consumer!, channel, id) : undefined);
      // 204 only once the catch-up found nothing after the position (or, at the latest, at the grace's end).
      let caughtUp!: () => void;
      const live = new Promise<void>((resolve) => (caughtUp = resolve));
      const subscribing = this.logs.subscribe(channel, sink, start.start, { onCaughtUp: () => caughtUp() });
      stop = (await within(subscribing, lastAnswer(), brokerTimeout, (late) => void late.stop())).stop;
      timer = setTimeout(
        () => {
          const grace = new Promise<void>((resolve) => setTimeout(resolve, POLL_GRACE_MS).unref());
          void Promise.race([live, grace]).then(() => finish({ type: 'timeout', gap: sink.gap }));
        },
        Math.max(0, deadline - Date.now()),
      );
      await this.answer(res, channel, consumer, await outcome, headers);
    } catch (err) {
      this.stats.failed++;
      if (!res.destroyed) sendError(res, err, this.log, headers);
    } finally {
      clearTimeout(timer);
      res.off('close', onClose);
      finish({ type: 'ended', why: 'client-gone' });
      await stop?.().catch(() => undefined);
      this.stats.active--;
      this.polls.delete(poll);
      if (key !== undefined && this.current.get(key) === poll) this.current.delete(key);
      settle();
    }
  }

  /** Answers every waiting poll (503) so that the gateway can stop. */
  shutdown(): void {
    for (const poll of this.polls) poll.finish({ type: 'ended', why: 'shutdown' });
  }

  /** Where the poll reads from: what the client asked, else the consumer's position, else the end of the log. */
  private async start(
    channel: string,
    consumer: string | undefined,
    asked: LogPollStart,
  ): Promise<{ start: LogStart; silentReset: boolean }> {
    if (asked.since !== undefined) return { start: { kind: 'resume', id: asked.since }, silentReset: false };
    if (asked.history !== undefined) return { start: { kind: 'history', count: asked.history }, silentReset: false };
    if (consumer === undefined) return { start: { kind: 'live' }, silentReset: false };
    // Up to date with every position recorded before this poll, on any gateway.
    await this.positions.sync();
    const id = this.positions.get(consumer, channel);
    if (id !== undefined) return { start: { kind: 'resume', id }, silentReset: false };
    // No position yet: start at the end of the log. A resume from no event id
    // is answered with a reset at the end, which becomes the consumer's first position.
    return { start: { kind: 'resume', id: '' }, silentReset: true };
  }

  private async answer(res: ServerResponse, channel: string, consumer: string | undefined, outcome: Outcome, headers: OutgoingHttpHeaders) {
    const out = outcome.type !== 'ended' && outcome.gap ? { ...headers, [GAP_HEADER]: 'history-gone' } : headers;
    if (outcome.type === 'message') {
      const { id } = outcome.message;
      const commit = consumer === undefined ? () => Promise.resolve() : () => this.positions.save(consumer, channel, id);
      if (await writeMessage(res, outcome.message, out, commit)) {
        this.stats.delivered++;
      } else {
        this.stats.clientGone++;
      }
    } else if (outcome.type === 'timeout') {
      this.stats.timedOut++;
      if (consumer !== undefined) {
        // A first position (placed during this poll) is on the broker before the client may poll elsewhere.
        await this.positions.appended();
        this.positions.refresh(consumer, channel);
      }
      res.writeHead(204, out).end();
    } else if (outcome.why === 'client-gone') {
      this.stats.clientGone++;
    } else if (outcome.why === 'superseded') {
      this.stats.superseded++;
      sendError(res, new WarrenError('POLL_SUPERSEDED', 'a newer poll for this consumer and channel took over'), this.log, headers);
    } else {
      sendError(res, new WarrenError('BROKER_UNAVAILABLE', 'the log of this channel could not be read'), this.log, headers);
    }
  }

  /** Makes `poll` the current one for `key`; the previous one is answered 409 and settles first. */
  private async takeOver(key: string, poll: LogPoll): Promise<void> {
    const previous = this.current.get(key);
    this.current.set(key, poll);
    if (previous === undefined) return;
    previous.finish({ type: 'ended', why: 'superseded' });
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([previous.settled, new Promise<void>((resolve) => (timer = setTimeout(resolve, TAKEOVER_WAIT_MS)))]);
    clearTimeout(timer);
  }
}

/**
 * The sink of one poll: takes the first message, or the first `warren-reset`
 * (answered as a message, its id the position to poll from). A `warren-gap`
 * only marks the answer that follows. A reset of a consumer with no position
 * yet is its first position (`onStart`), not an answer.
 */
class FirstMessage implements Sink {
  gap = false;

  constructor(
    private readonly finish: (outcome: Outcome) => void,
    private readonly onStart: ((id: string) => void) | undefined,
  ) {}

  send(_channel: string, message: WarrenMessage, written?: (ok: boolean) => void): void {
    written?.(true);
    if (message.event === SIGNALS.gap) {
      this.gap = true;
    } else if (message.event === SIGNALS.reset && this.onStart !== undefined) {
      this.onStart(message.id);
    } else {
      this.finish({ type: 'message', message, gap: this.gap });
    }
  }

  pendingBytes(): number {
    return 0;
  }

  drop(reason: SinkCloseReason): void {
    this.finish({ type: 'ended', why: reason });
  }
}

const brokerTimeout = (): Error => new WarrenError('BROKER_TIMEOUT', "the broker did not answer within the poll's timeout");

/**
 * Writes `message` as a poll's answer, calling `commit` (recording the
 * position) once all but its last byte were handed to the operating system,
 * and writing that byte only once `commit` resolved: the client cannot have
 * the whole answer, and poll again elsewhere, before its position is on the
 * broker. Resolves whether it was committed; a failed commit cuts the answer
 * short (the client polls again and gets the same message).
 */
function writeMessage(
  res: ServerResponse,
  message: WarrenMessage,
  headers: OutgoingHttpHeaders,
  commit: () => Promise<void>,
): Promise<boolean> {
  if (res.destroyed) return Promise.resolve(false);
  const out: OutgoingHttpHeaders = {
    ...headers,
    'content-type': message.contentType,
    'content-length': message.body.length,
    [HEADERS.messageId]: message.id,
  };
  if (message.event !== undefined) out[HEADERS.event] = message.event;
  // Node calls a write's callback even when the socket was destroyed: the socket says whether it was written.
  const socket = res.socket;
  const head = message.body.subarray(0, Math.max(0, message.body.length - 1));
  const last = message.body.subarray(head.length);
  return new Promise<boolean>((resolve) => {
    const committed = async (): Promise<void> => {
      try {
        await commit();
      } catch {
        res.destroy();
        resolve(false);
        return;
      }
      res.end(last);
      resolve(true);
    };
    res.once('close', () => resolve(false));
    if (last.length === 0) {
      // Nothing to hold back: the position goes first.
      void commit().then(
        () => {
          res.writeHead(200, out).end();
          resolve(true);
        },
        () => {
          res.destroy();
          resolve(false);
        },
      );
      return;
    }
    res.writeHead(200, out).write(head, (err) => {
      if (err != null || socket === null || socket.destroyed) resolve(false);
      else void committed();
    });
  });
}
