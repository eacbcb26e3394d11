import { channelLogName, logShardOf, MAX_HISTORY, parseHistory as parseHistoryCount, parseSince, type LogLimits } from '@warren/protocol';
import { QueueNotFoundError, type Broker } from '../broker/broker.js';
import type { Logger } from '../logger.js';
import type { Sink } from '../sources/sink.js';
import { LogSubscription, type LogStart } from './log-subscription.js';
import { LogTail } from './log-tail.js';

export interface ChannelLogsOptions {
  /** Path prefixes of the logged channels. */
  routes: readonly string[];
  limits: LogLimits;
  /** Number of shard streams (`warren:log:0` …). */
  shards: number;
  /** The exchange (part of the streams' names when it is not `warren`). */
  exchange: string;
  /** Bytes a subscriber may have waiting for its socket before it is closed as too slow. */
  maxPendingBytes: number;
  /** How long a shard's tail outlives its last local subscriber. */
  lingerMs: number;
}

export interface ChannelLogsStats {
  /** Shard tails reading in this process. */
  tails: number;
  subscribers: number;
  /** Subscriptions started since the gateway started (monotonic). */
  subscribed: number;
  slowClosed: number;
  /** Catch-ups (resume, history) served from a tail's recent entries: no reader, no mark. */
  fromMemory: number;
  /** Catch-ups that read the log with a reader of their own. */
  fromLog: number;
}

export { MAX_HISTORY };

export interface SubscribeLogOptions {
  /** Called once what came before the subscription was sent (at once for a live one). */
  onCaughtUp?: () => void;
  /** Keep the subscription's position (an identified consumer's stream). */
  tracked?: boolean;
}

/** A subscription to a logged channel. */
export interface LogHandle {
  stop(): Promise<void>;
  /** The event id of the last message written to the client (tracked subscriptions), or where it was placed. */
  position(open: boolean): string | undefined;
}

/**
 * The logged channels of this gateway (docs/channel-logs.md): which channels
 * are logged, their shard streams (declared and bound once per process),
 * and one tail per shard that serves every local subscriber.
 */
export class ChannelLogs {
  readonly stats: ChannelLogsStats = { tails: 0, subscribers: 0, subscribed: 0, slowClosed: 0, fromMemory: 0, fromLog: 0 };
  private readonly declared = new Map<string, Promise<void>>();
  private readonly bound = new Map<string, Promise<void>>();
  private readonly tails = new Map<string, LogTail>();

  constructor(
    private readonly broker: Broker,
    private readonly log: Logger,
    private readonly options: ChannelLogsOptions,
  ) {
    broker.on('lost', () => {
      for (const tail of this.tails.values()) tail.dropAll();
      this.tails.clear();
      this.stats.tails = 0;
    });
  }

  /** Whether `channel` is under the logged routes. */
  isLogged(channel: string): boolean {
    return this.options.routes.some((prefix) => channel.startsWith(prefix));
  }

  /** Whether `channel` was bound to its log by this process. */
  isBound(channel: string): boolean {
    return this.bound.has(channel);
  }

  /** Before a publish to `channel`: a logged channel is bound to its log (once per process); any other needs nothing. */
  async preparePublish(channel: string): Promise<void> {
    if (this.isLogged(channel)) await this.ensure(channel);
  }

  /** Declares the shard stream of `channel` and binds the channel to it (once per process); resolves with the stream's name. */
  async ensure(channel: string): Promise<string> {
    const log = channelLogName(logShardOf(channel, this.options.shards), this.options.exchange);
    await this.once(this.declared, log, () => this.broker.declareLog(log, this.options.limits));
    try {
      await this.once(this.bound, channel, () => this.broker.bindLog(log, channel));
    } catch (err) {
      if (!(err instanceof QueueNotFoundError)) throw err;
      // Deleted under us: declare it again, once.
      this.forget(log);
      await this.once(this.declared, log, () => this.broker.declareLog(log, this.options.limits));
      await this.once(this.bound, channel, () => this.broker.bindLog(log, channel));
    }
    return log;
  }

  /**
   * Subscribes `sink` to `channel` from `start`; declares the log again if it was deleted.
   * `onCaughtUp` is called once what came before the subscription was sent;
   * a `tracked` subscription knows its position (the last event id written).
   */
  async subscribe(channel: string, sink: Sink, start: LogStart, options: SubscribeLogOptions = {}): Promise<LogHandle> {
    try {
      return await this.subscribeOnce(channel, sink, start, options);
    } catch (err) {
      if (!(err instanceof QueueNotFoundError)) throw err;
      this.forget(err.queue);
      const tail = this.tails.get(err.queue);
      if (tail !== undefined) this.dropTail(tail);
      return this.subscribeOnce(channel, sink, start, options);
    }
  }

  private async subscribeOnce(channel: string, sink: Sink, start: LogStart, options: SubscribeLogOptions): Promise<LogHandle> {
    const log = await this.ensure(channel);
    const tail = this.tail(log);
    await tail.start();
    const subscription = new LogSubscription(channel, sink, tail, this.broker, {
      maxPendingBytes: this.options.maxPendingBytes,
      maxBuffered: 10_000,
      prefetch: 100,
      catchUpTimeoutMs: 30_000,
      onSlow: () => this.stats.slowClosed++,
      ...options,
    });
    this.stats.subscribers++;
    let stopped = false;
    const stop = async (): Promise<void> => {
      if (stopped) return;
      stopped = true;
      this.stats.subscribers--;
      await subscription.stop();
    };
    try {
      await subscription.start(start);
    } catch (err) {
      await stop();
      throw err;
    }
    this.stats.subscribed++;
    if (subscription.catchUp === 'memory') this.stats.fromMemory++;
    else if (subscription.catchUp === 'log') this.stats.fromLog++;
    return { stop, position: (open) => subscription.position(open) };
  }

  async close(): Promise<void> {
    const tails = [...this.tails.values()];
    this.tails.clear();
    await Promise.all(tails.map((tail) => tail.close()));
  }

  private tail(log: string): LogTail {
    let tail = this.tails.get(log);
    if (tail === undefined) {
      tail = new LogTail(log, this.broker, this.log, {
        prefetch: 256,
        lingerMs: this.options.lingerMs,
        limits: this.options.limits,
        onIdle: (idle) => this.dropTail(idle),
        onLost: (lost) => {
          this.dropTail(lost);
          this.forget(lost.log);
        },
      });
      this.tails.set(log, tail);
      this.stats.tails++;
    }
    return tail;
  }

  private dropTail(tail: LogTail): void {
    if (this.tails.get(tail.log) !== tail) return;
    this.tails.delete(tail.log);
    this.stats.tails--;
  }

  /** The log was deleted: declare and bind again on next use. */
  private forget(log: string): void {
    this.declared.delete(log);
    for (const channel of [...this.bound.keys()]) {
      if (channelLogName(logShardOf(channel, this.options.shards), this.options.exchange) === log) this.bound.delete(channel);
    }
  }

  private once(cache: Map<string, Promise<void>>, key: string, run: () => Promise<void>): Promise<void> {
    let p = cache.get(key);
    if (p === undefined) {
      p = run();
      cache.set(key, p);
      p.catch(() => {
        if (cache.get(key) === p) cache.delete(key);
      });
    }
    return p;
  }
}

/**
 * `?history=` of a request: how many past messages a subscriber asks for.
 * @throws WarrenError `INVALID_REQUEST`
 */
export function parseHistory(value: string | null): number | undefined {
  return value === null ? undefined : parseHistoryCount(value);
}

/**
 * Where a subscriber of a logged channel starts: its last `history`
 * messages, else from `since` (an event id or a time), else now.
 * @throws WarrenError `INVALID_REQUEST`, `INVALID_MESSAGE_ID` for a bad `since`
 */
export function logStart(history: number | undefined, since: string | undefined): LogStart {
  if (history !== undefined) return { kind: 'history', count: history };
  if (since === undefined) return { kind: 'live' };
  const at = parseSince(since);
  return 'time' in at ? { kind: 'time', time: at.time } : { kind: 'resume', id: at.id };
}
