import { AggregatorRegistry, type Registry } from 'prom-client';
import type { Logger } from './logger.js';
import { MetricsListener, type MetricsOptions } from './metrics.js';

/**
 * In a node:cluster worker: answers the primary's requests for this
 * registry's metrics (prom-client's cluster protocol) instead of listening.
 */
export function answerClusterPrimary(registry: Registry): void {
  AggregatorRegistry.setRegistries([registry]);
  // The constructor installs the worker's message listener (once per process).
  new AggregatorRegistry();
}

/**
 * In a node:cluster primary: the `GET /metrics` listener whose text is every
 * worker's metrics aggregated (counters and gauges summed over the workers,
 * as prom-client's `AggregatorRegistry` does). Call `listen()` to start it.
 * @example
 * const metrics = serveClusterMetrics({ port: 9464, host: '127.0.0.1' }, log);
 * await metrics.listen();
 */
export function serveClusterMetrics(options: MetricsOptions, log: Logger): MetricsListener {
  const aggregator = new AggregatorRegistry();
  return new MetricsListener(() => aggregator.clusterMetrics(), aggregator.contentType, options, log);
}
