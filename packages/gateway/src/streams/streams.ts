import type { Broker, ConsumerEnd } from '../broker/broker.js';
import type { ConsumerQueues } from '../consumer-queues.js';
import type { Logger } from '../logger.js';
import { FanOut } from './fan-out.js';
import { Limiter } from './limiter.js';
import { QueueSubscription } from './queue-subscription.js';
import type { Sink } from './sink.js';

export interface StreamRequest {
  channel: string;
  /** An identified consumer streams its own queue; without an id, the stream is live-only fan-out. */
  consumerId: string | undefined;
  lastEventId: string | undefined;
  sink: Sink;
  /** The stream cannot go on (identified streams only: the broker went away). */
  onEnd(end: ConsumerEnd | { reason: 'error'; error: unknown }): void;
}

export interface StreamHandle {
  /** Stops the stream. Idempotent. */
  stop(): Promise<void>;
}

/** Opens SSE and WebSocket streams on the right source: the consumer's queue, or the process's fan-out. */
export class Streams {
  /** Identified streams consuming their queue now. */
  identified = 0;
  /** Consumer starts in flight at once (RabbitMQ answers them one by one per channel). */
  private readonly starts = new Limiter(64);

  constructor(
    private readonly broker: Broker,
    private readonly queues: ConsumerQueues,
    readonly fanOut: FanOut,
    private readonly log: Logger,
    private readonly prefetch: number,
  ) {}

  async open(request: StreamRequest): Promise<StreamHandle> {
    if (request.consumerId === undefined) {
      return this.fanOut.subscribe(request.channel, request.sink);
    }
    const subscription = new QueueSubscription(this.broker, this.queues, this.log, request.consumerId, request.channel, request.sink, {
      prefetch: this.prefetch,
      starts: this.starts,
      ...(request.lastEventId === undefined ? {} : { lastEventId: request.lastEventId }),
      onEnd: request.onEnd,
    });
    await subscription.start();
    this.identified++;
    let stopped = false;
    return {
      stop: async () => {
        if (stopped) return;
        stopped = true;
        await subscription.stop();
        this.identified--;
      },
    };
  }
}
