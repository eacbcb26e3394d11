import { routeCountOf } from '@warren/protocol';
import type { PublishResult } from './producer.js';

/**
 * `result` with `queues` and `routes`, from a count per channel: in the order
 * of `result.channels` (a listing of RabbitMQ's bindings), or by channel (a
 * gateway's answer). `unrouted` is exact and wins over a listing that may be
 * older than the publish ({@link routeCountOf}). Without a count for every
 * channel, `result` stays without either.
 */
export function countRoutes(
  result: PublishResult,
  counts: Readonly<Record<string, number>> | ReadonlyArray<number | undefined> | undefined,
): PublishResult {
  if (counts === undefined) return result;
  const routes: Record<string, number> = {};
  let queues = 0;
  for (const [i, channel] of result.channels.entries()) {
    const listed = Array.isArray(counts) ? (counts as ReadonlyArray<number | undefined>)[i] : (counts as Record<string, number>)[channel];
    if (listed === undefined) return result;
    routes[channel] = routeCountOf(!result.unrouted.includes(channel), listed);
    queues += routes[channel];
  }
  return { ...result, queues, routes };
}
