import { consumerQueueName, parseSince } from '@warren/protocol';
import type { Broker, ConsumerEnd } from '../broker/broker.js';
import type { ConsumerQueues } from '../consumer-queues.js';
import type { Logger } from '../logger.js';
import { FanOut } from './fan-out.js';
import { Limiter } from './limiter.js';
import { QueueSubscription } from './queue-subscription.js';
import type { Sink } from './sink.js';
import type { ChannelLogs } from '../logs/channel-logs.js';
import { logStart } from '../logs/channel-logs.js';

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

/** The stream reading a consumer queue in this process. */
interface Reader {
  readonly subscription: QueueSubscription;
  readonly sink: Sink;
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
  ) {}

  async open(request: SourceRequest): Promise<SourceHandle> {
    if (request.consumerId === undefined && this.logs?.isLogged(request.channel) === true) {
      return this.logs.subscribe(request.channel, request.sink, logStart(request.history, request.since ?? request.lastEventId));
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
    const previous = this.readers.get(queue);
    const reader: Reader = { subscription, sink: request.sink };
    this.readers.set(queue, reader);
    const forget = (): void => {
      if (this.readers.get(queue) === reader) this.readers.delete(queue);
    };
    try {
      if (previous !== undefined) {
        this.superseded++;
        this.log.info('stream superseded by a newer one of the same consumer', { channel: request.channel });
        previous.sink.drop('superseded');
        await previous.subscription.stop();
        await previous.subscription.settled(TAKEOVER_WAIT_MS);
      }
      await subscription.start();
    } catch (err) {
      forget();
      throw err;
    }
    this.identified++;
    let stopped = false;
    return {
      stop: async () => {
        if (stopped) return;
        stopped = true;
        forget();
        await subscription.stop();
        this.identified--;
      },
    };
  }
}

/** The message id an identified stream resumes after: `lastEventId`, or a `since` that is an id (not a time). */
function resumeId(request: SourceRequest): string | undefined {
  if (request.lastEventId !== undefined || request.since === undefined) return request.lastEventId;
  const since = parseSince(request.since);
  return 'id' in since ? since.id : undefined;
}
