import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { GatewayStats } from './gateway.js';
import type { Logger } from './logger.js';
import type { UpgradeKind } from './push/handler.js';
import type { UpstreamCall, UpstreamResult } from './upstream.js';

/** Per-transport integer counters (SSE and WebSocket). */
export type PerTransport = Record<UpgradeKind, number>;

/**
 * What the metrics read, at scrape time only: the plain integer counters
 * the gateway keeps anyway. Nothing here is called per delivery.
 */
export interface MetricsSources {
  stats(): GatewayStats;
  /** Open push connections: their transport, and whether they have a consumer id. */
  connections: ReadonlySet<{ readonly kind: UpgradeKind; readonly consumerId: string | undefined }>;
  bytesOut(): PerTransport;
  slowClosed: Readonly<PerTransport>;
  /** The publish endpoint's requests by result. */
  publishes: Readonly<{ accepted: number; refused: number; failed: number }>;
}

export interface MetricsOptions {
  port: number;
  host: string;
}

const TRANSPORTS: readonly UpgradeKind[] = ['sse', 'websocket'];

type Read = (stats: GatewayStats) => number;

/** Broker counters, each `warren_broker_<name>_total`: read from `BrokerStats` at scrape time. */
const BROKER_COUNTERS: ReadonlyArray<[name: string, help: string, read: Read]> = [
  ['deliveries', 'Messages the broker delivered to the gateway (consumers and basic.get).', (s) => s.broker.delivered],
  ['publishes', 'Messages the broker confirmed, from every source (HTTP, library, WebSocket).', (s) => s.broker.published],
  ['acks', 'Deliveries acknowledged (handed to the client).', (s) => s.broker.acked],
  [
    'ack_frames',
    'basic.ack frames sent to RabbitMQ (one frame acknowledges many deliveries of a channel at once where order allows).',
    (s) => s.broker.ackFrames,
  ],
  ['requeues', 'Deliveries put back in their queue (the client did not take them).', (s) => s.broker.requeued],
  ['queue_declares', 'queue.declare calls (consumer and fan-out queues).', (s) => s.broker.queueDeclares],
  ['queue_binds', 'queue.bind calls.', (s) => s.broker.queueBinds],
  ['consumers_started', 'basic.consume calls that started a consumer.', (s) => s.broker.consumersStarted],
  ['consumers_cancelled', 'Consumers cancelled by the gateway.', (s) => s.broker.consumersCancelled],
  ['gets', 'basic.get calls (a long-poll first tries to take a waiting message).', (s) => s.broker.gets],
  ['gets_empty', 'basic.get calls that found the queue empty.', (s) => s.broker.getsEmpty],
  ['connections', 'Broker connections opened (the first one, then one per reconnect).', (s) => s.broker.connectionsOpened],
  ['reconnects', 'Broker connections opened after the first.', (s) => Math.max(0, s.broker.connectionsOpened - 1)],
  ['channels_opened', 'AMQP channels opened.', (s) => s.broker.channelsOpened],
];

/** `outcome` label of `warren_long_polls_total` → the `LongPollStats` field. */
const POLL_OUTCOMES: ReadonlyArray<[outcome: string, read: Read]> = [
  ['delivered', (s) => s.longPoll.delivered],
  ['timed_out', (s) => s.longPoll.timedOut],
  ['superseded', (s) => s.longPoll.superseded],
  ['client_gone', (s) => s.longPoll.clientGone],
  ['failed', (s) => s.longPoll.failed],
];

/**
 * The listener that serves `GET /metrics` (apart from the gateway's port):
 * the text `scrape()` gives, at each request.
 */
export class MetricsListener {
  private readonly server: Server;
  private listening: Promise<AddressInfo> | undefined;

  constructor(
    private readonly scrape: () => Promise<string>,
    private readonly contentType: string,
    private readonly options: MetricsOptions,
    private readonly log: Logger,
  ) {
    this.server = createServer((req, res) => this.handle(req, res));
  }

  /** Starts the listener. Idempotent. */
  listen(): Promise<AddressInfo> {
    this.listening ??= new Promise<AddressInfo>((resolve, reject) => {
      const { port, host } = this.options;
      const failed = (err: NodeJS.ErrnoException): void => {
        const why = `the metrics listener cannot listen on ${host} port ${port} (${err.code ?? err.message})`;
        reject(new Error(`${why}: check --metrics-host / WARREN_METRICS_HOST and --metrics-port / WARREN_METRICS_PORT`, { cause: err }));
      };
      this.server.once('error', failed);
      this.server.listen(port, host, () => {
        this.server.off('error', failed);
        const address = this.server.address() as AddressInfo;
        this.log.info('metrics listening', { port: address.port, host: address.address });
        resolve(address);
      });
    });
    return this.listening;
  }

  /** The bound address, once listening. */
  address(): AddressInfo | undefined {
    return this.server.listening ? (this.server.address() as AddressInfo) : undefined;
  }

  /** Stops the listener (a scrape in progress is cut). Idempotent. */
  async close(): Promise<void> {
    // A listen() under way (an attached gateway closed at once) finishes first, then closes.
    await this.listening?.catch(() => undefined);
    if (!this.server.listening) return;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found: the metrics are at /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('use GET\n');
      return;
    }
    this.scrape().then(
      (text) => res.writeHead(200, { 'content-type': this.contentType, 'cache-control': 'no-store' }).end(text),
      (err: unknown) => {
        this.log.error('metrics collection failed', { error: String(err) });
        res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end('metrics collection failed\n');
      },
    );
  }
}

/**
 * The Prometheus registry of one gateway, filled at scrape time by
 * `collect()` callbacks from the gateway's own counters, and (unless its
 * options are `undefined`: a cluster worker's, read by the primary) the
 * listener that serves it.
 */
export class Metrics {
  readonly registry = new Registry();
  readonly listener: MetricsListener | undefined;
  private readonly upstreamSeconds = new Histogram({
    name: 'warren_upstream_request_duration_seconds',
    help: 'Calls to the application by call (auth: --auth-url checks; message: WebSocket client messages) and result (allowed, refused, answered, error).',
    labelNames: ['call', 'result'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  /** The gateway's stats, read once per collection pass and shared by its `collect()` calls. */
  private scraping: GatewayStats | undefined;

  constructor(
    private readonly sources: MetricsSources,
    options: MetricsOptions | undefined,
    log: Logger,
  ) {
    collectDefaultMetrics({ register: this.registry });
    this.define();
    this.listener = options === undefined ? undefined : new MetricsListener(() => this.scrape(), this.registry.contentType, options, log);
  }

  /** One call to the application took `seconds` (an `Upstream` timing). */
  observeUpstream(call: UpstreamCall, result: UpstreamResult, seconds: number): void {
    this.upstreamSeconds.observe({ call, result }, seconds);
  }

  /** The registry's text. */
  scrape(): Promise<string> {
    return this.registry.metrics();
  }

  /**
   * The gateway's stats, read once per collection: prom-client calls every
   * `collect()` in one synchronous pass (for its own text, and for a cluster
   * primary's `getMetricsAsJSON()`).
   */
  private stats(): GatewayStats {
    if (this.scraping === undefined) {
      this.scraping = this.sources.stats();
      queueMicrotask(() => (this.scraping = undefined));
    }
    return this.scraping;
  }

  private define(): void {
    const { sources } = this;
    const registers = [this.registry];
    const stats = (): GatewayStats => this.stats();
    const gauge = (name: string, help: string, read: Read): void => {
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(read(stats()));
        },
      });
    };
    const counter = (name: string, help: string, read: Read): void => {
      new Counter({
        name,
        help,
        registers,
        collect() {
          this.reset();
          this.inc(read(stats()));
        },
      });
    };

    new Gauge({
      name: 'warren_connections',
      help: 'Open push connections by transport (sse, websocket) and kind (identified: with a consumer id; anonymous).',
      labelNames: ['transport', 'kind'],
      registers,
      collect() {
        const counts = { sse: { identified: 0, anonymous: 0 }, websocket: { identified: 0, anonymous: 0 } };
        for (const conn of sources.connections) counts[conn.kind][conn.consumerId === undefined ? 'anonymous' : 'identified']++;
        for (const transport of TRANSPORTS) {
          this.set({ transport, kind: 'identified' }, counts[transport].identified);
          this.set({ transport, kind: 'anonymous' }, counts[transport].anonymous);
        }
      },
    });
    new Gauge({
      name: 'warren_subscriptions',
      help: 'Channel subscriptions of push connections: identified (a consumer queue each), anonymous (sharing the fan-out).',
      labelNames: ['kind'],
      registers,
      collect() {
        const s = stats();
        this.set({ kind: 'identified' }, s.streams.identified);
        this.set({ kind: 'anonymous' }, s.fanOut.subscribers);
      },
    });
    gauge('warren_long_polls_waiting', 'Long-polls waiting for a message now.', (s) => s.longPoll.active);
    gauge('warren_fan_out_channels', 'Channels with a per-process fan-out queue and consumer.', (s) => s.fanOut.channels);
    gauge('warren_wildcard_subscribers', 'Pattern subscriptions (/stocks/*) open now.', (s) => s.wildcard?.subscribers ?? 0);
    gauge('warren_known_queues', 'Consumer queues whose declaration the gateway has cached.', (s) => s.knownQueues);
    gauge('warren_broker_ready', '1 while the broker is connected and usable, else 0.', (s) => (s.broker.ready ? 1 : 0));
    gauge('warren_broker_consumers', 'Broker consumers running now.', (s) => s.broker.activeConsumers);
    gauge(
      'warren_presence_members',
      "Presence members held by this process's own subscriptions (an identity on a channel; in its grace period too).",
      (s) => s.presence?.local ?? 0,
    );
    counter(
      'warren_presence_webhook_failures_total',
      'POSTs to the presence webhook that failed (no answer in time, or not 2xx); their events are sent again.',
      (s) => s.presence?.webhookFailures ?? 0,
    );

    counter('warren_fan_out_deliveries_total', 'Messages written to anonymous streams from the fan-out.', (s) => s.fanOut.delivered);
    counter('warren_wildcard_subscriptions_total', 'Pattern subscriptions opened.', (s) => s.wildcard?.subscribed ?? 0);
    counter('warren_wildcard_deliveries_total', 'Messages written to pattern subscribers.', (s) => s.wildcard?.delivered ?? 0);
    counter(
      'warren_wildcard_slow_closed_total',
      'Pattern subscribers closed because they read too slowly.',
      (s) => s.wildcard?.slowClosed ?? 0,
    );
    counter('warren_long_polls_started_total', 'Long-polls started.', (s) => s.longPoll.started);
    counter(
      'warren_long_polls_live_total',
      'Long-polls of a freshly minted consumer id, answered from the live fan-out (no queue).',
      (s) => s.longPoll.live,
    );
    new Counter({
      name: 'warren_long_polls_total',
      help: 'Finished long-polls by outcome: delivered, timed_out, superseded, client_gone, failed.',
      labelNames: ['outcome'],
      registers,
      collect() {
        const s = stats();
        this.reset();
        for (const [outcome, read] of POLL_OUTCOMES) this.inc({ outcome }, read(s));
      },
    });
    for (const [name, help, read] of BROKER_COUNTERS) counter(`warren_broker_${name}_total`, help, read);

    new Counter({
      name: 'warren_bytes_out_total',
      help: 'Bytes written to push sockets by transport (response headers or handshake, framing and heartbeats included).',
      labelNames: ['transport'],
      registers,
      collect() {
        const bytes = sources.bytesOut();
        this.reset();
        for (const transport of TRANSPORTS) this.inc({ transport }, bytes[transport]);
      },
    });
    new Counter({
      name: 'warren_slow_client_closes_total',
      help: 'Push connections closed because their client read too slowly, by transport.',
      labelNames: ['transport'],
      registers,
      collect() {
        this.reset();
        for (const transport of TRANSPORTS) this.inc({ transport }, sources.slowClosed[transport]);
      },
    });
    new Counter({
      name: 'warren_http_publishes_total',
      help: 'Requests to POST /_warren/publish by result: accepted (200), refused (4xx), failed (5xx).',
      labelNames: ['result'],
      registers,
      collect() {
        const { accepted, refused, failed } = sources.publishes;
        this.reset();
        this.inc({ result: 'accepted' }, accepted);
        this.inc({ result: 'refused' }, refused);
        this.inc({ result: 'failed' }, failed);
      },
    });
  }
}
