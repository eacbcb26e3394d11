import { routeCountOf, routingKey, RouteCounts, type RouteCountStats, type WarrenMessage } from '@warren/protocol';
import type { Logger } from '../logger.js';
import type { Broker } from './broker.js';
import { MemoryBroker } from './memory.js';

/**
 * Counts the queues and logs `channel` is bound to, for the answer of a
 * publish: exactly (the embedded broker), from a recent listing of the
 * exchange's bindings (RabbitMQ with the management API), or `undefined`
 * (unknown). Called in the same turn as the publish it counts for.
 */
export interface RouteCounter {
  count(channel: string): number | undefined | Promise<number | undefined>;
  /** Listings of the management API (RabbitMQ only). */
  stats(): RouteCountStats | undefined;
}

/** Where a gateway's counts come from. */
export interface RouteCountSettings {
  /** The management API; without it, a gateway on RabbitMQ counts nothing. */
  managementUrl: string | undefined;
  /** The first of the gateway's AMQP URLs (its vhost, and credentials for a management URL without them). */
  amqpUrl: string | undefined;
  exchange: string;
  maxAgeMs: number;
  /** Longest wait for one listing. */
  timeoutMs: number;
}

/**
 * The gateway's counter: the embedded broker's own bindings, always; on
 * RabbitMQ, the management API when a URL is given, else none. A failing
 * management API is logged once (and once more when it answers again).
 */
export function createRouteCounter(broker: Broker, settings: RouteCountSettings, log: Logger): RouteCounter | undefined {
  if (broker instanceof MemoryBroker) return { count: (channel) => broker.routeCount(channel), stats: () => undefined };
  if (settings.managementUrl === undefined || settings.amqpUrl === undefined) return undefined;
  const counts = new RouteCounts({
    managementUrl: settings.managementUrl,
    amqpUrl: settings.amqpUrl,
    exchange: settings.exchange,
    maxAgeMs: settings.maxAgeMs,
    timeoutMs: settings.timeoutMs,
    onStateChange: (state) => {
      if (state.ok) log.info('the RabbitMQ management API answers again: publishes carry their route count');
      else
        log.warn('cannot list the exchange bindings from the RabbitMQ management API: publishes carry no route count', {
          error: state.error.message,
          retryInMs: state.retryInMs,
        });
    },
  });
  return { count: (channel) => counts.count(routingKey(channel)), stats: () => counts.stats() };
}

/** How one channel's copy of a message was routed. */
export interface ChannelRouting {
  /** Whether a queue or log took it (exact: RabbitMQ's `mandatory` return, or the embedded broker's bindings). */
  routed: boolean;
  /** How many queues and logs: `0` when not routed, at least 1 when routed; `undefined` when unknown. */
  queues: number | undefined;
}

/**
 * Publishes `message` to `channel` and counts where it went. The count is
 * asked for in the same synchronous turn as the publish: the embedded broker
 * routes a message within `publish()`'s first turn, so its count is of the
 * very bindings that routed it. A listing (RabbitMQ) may be older than the
 * routing: `routed` is exact and wins, so a count is never 0 for a routed
 * copy nor above 0 for a returned one.
 */
export async function publishCounted(
  broker: Broker,
  counter: RouteCounter | undefined,
  channel: string,
  message: WarrenMessage,
): Promise<ChannelRouting> {
  const counting = counter === undefined ? undefined : Promise.resolve(counter.count(channel)).catch(() => undefined);
  const routed = await broker.publish(channel, message);
  const n = await counting;
  return { routed, queues: n === undefined ? undefined : routeCountOf(routed, n) };
}
