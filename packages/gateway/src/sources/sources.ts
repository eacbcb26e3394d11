import { consumerQueueName, isPattern, parseSince } from '@warren/protocol';
import type { Broker, ConsumerEnd } from '../broker/broker.js';
import type { ConsumerQueues } from '../consumer-queues.js';
import type { Logger } from '../logger.js';
import { FanOut } from './fan-out.js';
import { Limiter } from './limiter.js';
import { QueueSubscription } from './queue-subscription.js';
import type { Sink } from './sink.js';
import type { ChannelLogs } from '../logs/channel-logs.js';
import { logStart } from '../logs/channel-logs.js';
import type { LogStart } from '../logs/log-subscription.js';
import type { Positions } from '../logs/positions.js';
import type { StreamPositions } from '../logs/stream-positions.js';
import type { WildcardFanOut } from './wildcard-fan-out.js';
import { refusePattern } from '../wildcards.js';

/** What identified streams of logged channels need: where positions are read, and who keeps them. */
export interface LoggedPositions {
  positions: Positions;
  streams: StreamPositions;
}

export interface SourceRequest {
  channel: string;
  /** An identified consumer streams its own queue; without an id, the stream is live-only fan-out. */
  consumerId: string | undefined;
  lastEventId: string | undefined;
  /** The last messages an anonymous subscriber of a logged channel asks for (`?history=`). */
  history?: number | undefined;
  /** On a logged channel: after an event id, or from a time (`warren.v1` `since`, `?since=`). */
  since?: string | undefined;
  sink: Sink;
  /** The stream cannot go on (identified streams only: the broker went away). */
  onEnd(end: ConsumerEnd | { reason: 'error'; error: unknown }): void;
}

export interface SourceHandle {
  /** Stops the stream. Idempotent. */
  stop(): Promise<void>;
}

/** Longest wait for a superseded stream's deliveries to settle before the newer stream starts. */
const TAKEOVER_WAIT_MS = 5000;

/** The stream reading a consumer queue, or keeping a consumer's position in a log, in this process. */
interface Reader {
  readonly sink: Sink;
  /** Stops it and waits until what it held is settled (requeued, or its position recorded). */
  stop(): Promise<void>;
}

/**
 * Opens SSE and WebSocket streams on the right source: the consumer's queue,
 * or the process's fan-out.
 *
 * One stream at a time reads a consumer queue: a newer stream of the same
 * consumer and channel takes over (as a newer long-poll does). The older
 * connection is closed as `superseded`, its consumer cancelled, and the newer
 * one starts once what the older one held is settled, so requeued messages
 * keep their place. Without this a reconnecting client whose old connection
 * still looks open would wait behind it (the queue has a single active
 * consumer). Across gateway processes the queue's single-active-consumer
 * argument still lets one consumer read at a time.
 */
export class Sources {
  /** Identified streams consuming their queue now. */
  identified = 0;
  /** Sources superseded by a newer one of the same consumer. */
  superseded = 0;
  private readonly readers = new Map<string, Reader>();
  /** Consumer starts in flight at once (RabbitMQ answers them one by one per channel). */
  private readonly starts = new Limiter(64);

  constructor(
    private readonly broker: Broker,
    private readonly queues: ConsumerQueues,
    readonly fanOut: FanOut,
    private readonly log: Logger,
    private readonly prefetch: number,
    private readonly logs?: ChannelLogs,
    private readonly logged?: LoggedPositions,
    /** Pattern subscriptions; absent without `--wildcard-routes` (where no pattern gets this far). */
    private readonly wildcard?: WildcardFanOut,
  ) {}

  async open(request: SourceRequest): Promise<SourceHandle> {
    if (isPattern(request.channel)) {
      // Live only, whoever reads: no consumer queue, no resume (docs/wildcards.md).
      if (request.history !== undefined || request.since !== undefined) refusePattern(request.channel, 'history (history, since)');
      if (this.wildcard === undefined) refusePattern(request.channel, 'this gateway (no --wildcard-routes)');
      return this.wildcard!.subscribe(request.channel, request.sink);
    }
    if (this.logs?.isLogged(request.channel) === true) {
      if (request.consumerId === undefined || this.logged === undefined)
        return this.logs.subscribe(request.channel, request.sink, logStart(request.history, request.since ?? request.lastEventId));
      return this.openLogged(request, request.consumerId, this.logs, this.logged);
    }
    if (request.consumerId === undefined) {
      return this.fanOut.subscribe(request.channel, request.sink);
    }
    const subscription = new QueueSubscription(this.broker, this.queues, this.log, request.consumerId, request.channel, request.sink, {
      prefetch: this.prefetch,
      starts: this.starts,
      ...(resumeId(request) === undefined ? {} : { lastEventId: resumeId(request) }),
      onEnd: request.onEnd,
    });
    const queue = consumerQueueName(request.consumerId, request.channel);
    const reader: Reader = {
      sink: request.sink,
      stop: async () => {
        await subscription.stop();
        await subscription.settled(TAKEOVER_WAIT_MS);
      },
    };
    const forget = this.takeOver(queue, reader, request.channel);
    try {
      await forget.previous;
      await subscription.start();
    } catch (err) {
      forget();
      throw err;
    }
    return this.counted(forget, () => subscription.stop());
  }

  /**
   * An identified stream of a logged channel keeps a position, not a queue
   * (docs/channel-logs.md, "Positions of streams"): it starts where the
   * client asks (`Last-Event-ID`, `since`, `history`), else after the last
   * message written to this consumer on any gateway.
   */
  private async openLogged(request: SourceRequest, consumerId: string, logs: ChannelLogs, logged: LoggedPositions): Promise<SourceHandle> {
    const { channel, sink } = request;
    let handle: { stop(): Promise<void> } | undefined;
    let release: (() => Promise<void>) | undefined;
    const stop = async (): Promise<void> => {
      await handle?.stop();
      await release?.();
    };
    const reader: Reader = { sink, stop };
    const forget = this.takeOver(`log\n${consumerId}\n${channel}`, reader, channel);
    try {
      await forget.previous;
      const asked = request.history !== undefined || request.since !== undefined || request.lastEventId !== undefined;
      const start = asked
        ? logStart(request.history, request.since ?? request.lastEventId)
        : await positionStart(logged.positions, consumerId, channel);
      const subscription = await logs.subscribe(channel, sink, start, { tracked: true });
      handle = subscription;
      release = logged.streams.keep(consumerId, channel, (open) => subscription.position(open)).release;
    } catch (err) {
      forget();
      throw err;
    }
    return this.counted(forget, stop);
  }

  /** An identified stream, counted in {@link identified} until its (idempotent) stop forgets it and stops it. */
  private counted(forget: () => void, stop: () => Promise<void>): SourceHandle {
    this.identified++;
    let stopped = false;
    return {
      stop: async () => {
        if (stopped) return;
        stopped = true;
        forget();
        await stop();
        this.identified--;
      },
    };
  }

  /**
   * Makes `reader` the one stream of `key` in this process: a previous one is
   * dropped as superseded, and `previous` settles once it is stopped. The
   * returned function forgets `reader` (when it ends).
   */
  private takeOver(key: string, reader: Reader, channel: string): (() => void) & { previous: Promise<void> } {
    const previous = this.readers.get(key);
    this.readers.set(key, reader);
    let settled = Promise.resolve();
    if (previous !== undefined) {
      this.superseded++;
      this.log.info('stream superseded by a newer one of the same consumer', { channel });
      previous.sink.drop('superseded');
      settled = previous.stop();
    }
    const forget = (): void => {
      if (this.readers.get(key) === reader) this.readers.delete(key);
    };
    return Object.assign(forget, { previous: settled });
  }
}

/** Where an identified stream of a logged channel starts when it asks for nothing: its position, else the end of the log. */
async function positionStart(positions: Positions, consumerId: string, channel: string): Promise<LogStart> {
  // Up to date with every position recorded before, on any gateway.
  await positions.sync();
  const id = positions.get(consumerId, channel);
  return id === undefined ? { kind: 'new' } : { kind: 'resume', id };
}

/** The message id an identified stream resumes after: `lastEventId`, or a `since` that is an id (not a time). */
function resumeId(request: SourceRequest): string | undefined {
  if (request.lastEventId !== undefined || request.since === undefined) return request.lastEventId;
  const since = parseSince(request.since);
  return 'id' in since ? since.id : undefined;
}
