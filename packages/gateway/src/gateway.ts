import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import {
  encodeMessage,
  isPattern,
  parseChannel,
  parseConsumerId,
  positionsLogName,
  WarrenError,
  type MessageData,
  type MessageOptions,
  type PresenceMember,
  type RouteCountStats,
} from '@warren/protocol';
import { AccessLog } from './access-log.js';
import { Admission } from './admission.js';
import { Upstream } from './upstream.js';
import { AttachedServer } from './attach.js';
import type { Broker, BrokerStats } from './broker/broker.js';
import { MemoryBroker } from './broker/memory.js';
import { RabbitBroker } from './broker/rabbitmq.js';
import { createRouteCounter, type RouteCounter } from './broker/route-count.js';
import { Audit, DEFAULT_MISSED_LIMIT, MAX_MISSED_LIMIT, type MissedPage } from './audit.js';
import { ConsumerQueues } from './consumer-queues.js';
import { Cors } from './cors.js';
import { abortHandshake, sendError } from './http.js';
import { ConnectionLimits, QueueBudget } from './limits.js';
import { createLogger, type Logger } from './logger.js';
import { answerClusterPrimary } from './cluster-metrics.js';
import { Metrics } from './metrics.js';
import { normalizeOptions, OptionError, parseList, type GatewayOptions, type NormalizedOptions } from './options.js';
import { createDefaultDecider } from './push/default-handler.js';
import type { PushConnection, UpgradeDecider } from './push/handler.js';
import { PushFront } from './push/open.js';
import { Router } from './router.js';
import { Routes } from './routes.js';
import { FanOut, type FanOutStats } from './sources/fan-out.js';
import { WildcardFanOut, type WildcardStats } from './sources/wildcard-fan-out.js';
import { WildcardRoutes } from './wildcards.js';
import { Sources } from './sources/sources.js';
import { TlsServer } from './tls.js';
import { ChannelTokens } from './tokens.js';
import { ChannelLogs, type ChannelLogsStats } from './logs/channel-logs.js';
import { LongPoll, LongPollFront, type LongPollStats } from './transports/long-poll.js';
import { LogPolls } from './transports/long-poll-log.js';
import { Positions } from './logs/positions.js';
import { StreamPositions } from './logs/stream-positions.js';
import { Presence, type PresenceStats } from './presence/presence.js';
import { sseHeartbeats } from './transports/sse.js';
import { WebSocketAcceptor } from './transports/websocket.js';
import { UpgradeFront } from './upgrade.js';
import { publishMessage, type PublishAnswer, type PublishVia } from './publish-endpoint.js';

export { MAX_URL_LENGTH } from './routes.js';

export interface GatewayStats {
  broker: BrokerStats;
  longPoll: LongPollStats;
  /** Open SSE responses and WebSockets, and the identified streams among their subscriptions. */
  streams: { sse: number; websocket: number; identified: number };
  /** Anonymous streams sharing per-process queues. */
  fanOut: FanOutStats;
  /** Pattern subscriptions (docs/wildcards.md); only with `--wildcard-routes`. */
  wildcard?: WildcardStats;
  /** Consumer queues whose declaration is cached. */
  knownQueues: number;
  /** The gateway's process id: tells the workers of `warren serve --workers` apart. */
  pid: number;
  /** Subscribers of logged channels and the log tails serving them. */
  logs: ChannelLogsStats;
  /** Presence (with `presenceRoutes`): this process's id, the processes it knows, members. */
  presence?: PresenceStats;
  /** With `--audit-routes`: dead letters moved into the audit stream, and queries answered. */
  audit?: { moved: number; queries: number };
  /** With `--management-url`: listings of the exchange's bindings for the publishes' route counts. */
  routeCounts?: RouteCountStats;
}

/** What only a program embedding the gateway can pass (no flag or variable). */
export interface EmbedOptions {
  /**
   * An existing server (plain `http`, or what Express's `app.listen()`
   * returns) to attach to instead of creating one. The gateway takes push
   * requests (SSE and WebSocket upgrades on `pushRoutes`, and `/_warren/*`)
   * and hands every other request, and every push request it declines, to
   * the listeners the server had when the gateway attached. The
   * application keeps its server: `close()` leaves it running.
   * @default none: the gateway creates and owns its server
   */
  server?: Server;
  /**
   * Decides, for each push request, which handler takes it (Rack's
   * `env['rack.upgrade']`), or declines it. With a decider, the gateway
   * serves SSE and WebSocket only (long-poll needs the default handler).
   * @default the handler of `warren serve`: subscribe to the path's channel; client messages go to the app over HTTP
   */
  onUpgrade?: UpgradeDecider;
  /**
   * With `metricsPort`, in a node:cluster worker: bind no metrics listener,
   * and answer the cluster primary's requests for the metrics instead; the
   * primary serves them summed over its workers (`serveClusterMetrics()`).
   * What `warren serve --workers` does.
   * @default false
   */
  clusterMetrics?: boolean;
}

/** Everything `createGateway()` takes: the settings of `warren serve`, and the embedding ones. */
export type CreateGatewayOptions = GatewayOptions & EmbedOptions;

/**
 * A gateway: an HTTP server (its own or the application's), a broker, the
 * push connections and the long-poll endpoint.
 *
 * @example
 * // standalone
 * const gateway = createGateway({ port: 4000 });
 * await gateway.listen();
 * @example
 * // inside an application's server
 * const server = http.createServer(app);
 * const gateway = createGateway({ server, onUpgrade: () => ({ onOpen: (conn) => conn.subscribe('/news') }) });
 * server.listen(3000);
 */
export interface Gateway {
  readonly options: NormalizedOptions;
  readonly server: Server;
  readonly broker: Broker;
  /** Open push connections (SSE and WebSocket). */
  readonly connections: ReadonlySet<PushConnection>;
  /** Connects the broker; never rejects for a broker that is merely down (it keeps retrying). Idempotent; called by `listen()` and by `createGateway({ server })`. */
  start(): Promise<void>;
  /**
   * Connects the broker and starts listening (unless the server already
   * listens), and starts the metrics listener when `metricsPort` is set.
   * Resolves with the gateway's bound address.
   */
  listen(): Promise<AddressInfo>;
  /** The address of the metrics listener (`GET /metrics`) once `listen()` started it; `undefined` without `metricsPort`. */
  metricsAddress(): AddressInfo | undefined;
  /**
   * Answers waiting polls, calls `onShutdown` and closes every push
   * connection (waiting up to 2 s for `onClose`), stops listening (its own
   * server only) and disconnects. Idempotent.
   */
  close(): Promise<void>;
  /**
   * Stops gracefully, as `warren serve` does on SIGTERM: `/_warren/ready`
   * answers 503 at once; after `drainDelayMs` (time for load balancers to
   * notice) new streams and polls are refused (503), waiting long-polls are answered
   * 503 with `Retry-After`, and every push connection is ended with a
   * reconnect hint spread over `drainSpreadMs` (after `onShutdown`): each SSE
   * stream with its own `retry:` drawn uniformly from the spread, each
   * WebSocket closed with 1012 ("service restart") at its own moment within
   * it. Resolves once no connection is left (or `shutdownTimeoutMs` after the
   * call) and the gateway is closed as by {@link close}. Idempotent;
   * `close()` during a drain closes at once.
   * @example
   * process.once('SIGTERM', () => void gateway.drain().then(() => process.exit(0)));
   */
  drain(): Promise<void>;
  stats(): GatewayStats;
  /**
   * Publishes to every subscriber of `channel`, in every gateway process on
   * the same broker. Resolves once the broker has confirmed it, with what the
   * publish endpoint answers: `routed` (did any queue or log take it),
   * `unrouted`, and, where the gateway can count them (always on the
   * embedded broker; on RabbitMQ with `managementUrl`), `queues` and
   * `routes` (docs/publishing.md).
   * @example
   * const { routed } = await gateway.publish('/users/42', 'your order shipped');
   * if (!routed) await sendEmail(); // nobody will get it over Warren
   * @throws WarrenError `INVALID_CHANNEL`, `INVALID_MESSAGE`, `MESSAGE_TOO_LARGE`, `BROKER_UNAVAILABLE`
   */
  publish(channel: string, data: MessageData, options?: MessageOptions): Promise<PublishAnswer>;
  /**
   * Who is subscribed to the presence channel `channel` (under
   * `presenceRoutes`), over every gateway process on the broker: one entry
   * per identity the app or a token vouched for (docs/presence.md).
   * @throws WarrenError `INVALID_CHANNEL`; `INVALID_REQUEST` for a channel that is not under `presenceRoutes`
   */
  presence(channel: string): PresenceMember[];
  /**
   * What identified consumers of audited channels missed (`auditRoutes`,
   * docs/audit.md), oldest first, as `GET /_warren/missed` answers it.
   * @throws WarrenError `NOT_FOUND` without `auditRoutes`; `BROKER_UNAVAILABLE`, `BROKER_TIMEOUT`
   * @example
   * const { missed } = await gateway.missed({ consumerId: 'user-42', channel: '/orders/42' });
   */
  missed(query: { consumerId?: string; channel?: string; after?: number; since?: number; limit?: number }): Promise<MissedPage>;
  /** The request handler of the gateway's routes. */
  handle(req: IncomingMessage, res: ServerResponse): void;
  /**
   * Reads `tlsCert` and `tlsKey` again and presents the new certificate to
   * new connections; open connections keep theirs. Files that cannot be
   * read or do not fit are logged as an error and the certificate in use
   * stays: it never throws. `warren serve` calls it on SIGHUP.
   * @returns whether the new certificate is in use (`false` too without `tlsCert`)
   * @example
   * process.on('SIGHUP', () => gateway.reloadTls());
   */
  reloadTls(): boolean;
}

/**
 * Builds a gateway from options (validated here, once): the parts, wired.
 * What each part does lives in its own module (admission, routes and
 * router, the upgrade front, the push front, long-poll, the broker).
 * @throws OptionError for an invalid option
 */
export function createGateway(input: CreateGatewayOptions = {}): Gateway {
  const options = normalizeOptions(input);
  checkEmbedding(input, options);
  const log: Logger = options.logger ?? createLogger(options.logLevel);
  // Read before anything else is built: bad files stop the gateway here, with nothing to clean up.
  const tls = ownTlsServer(options, log);
  const tokens = new ChannelTokens(options, log);
  const core = createCore(options, log, tokens);
  const { broker } = core;
  const attached = input.server === undefined ? undefined : new AttachedServer(input.server, log);
  const fronts = createFronts(core, input, attached);
  const { push, routes, router, upgrades } = fronts;
  const metrics =
    options.metricsPort === undefined
      ? undefined
      : new Metrics(
          {
            stats: fronts.stats,
            connections: push.connections,
            bytesOut: () => push.bytesOut(),
            slowClosed: push.slowClosed,
            publishes: router.publishes,
          },
          input.clusterMetrics === true ? undefined : { port: options.metricsPort, host: options.metricsHost },
          log,
        );
  if (metrics !== undefined && input.clusterMetrics === true) answerClusterPrimary(metrics.registry);
  if (metrics !== undefined) core.upstream.timing = (call, result, seconds) => metrics.observeUpstream(call, result, seconds);
  const handle = (req: IncomingMessage, res: ServerResponse): void => router.handle(req, res);
  const upgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => upgrades.handleUpgrade(req, socket, head);
  const server = input.server ?? tls?.server.on('request', handle) ?? createServer(SERVER_OPTIONS, handle);
  const close = (): Promise<void> => {
    core.interruptDrain?.();
    return (core.closing ??= shutdown(core, fronts, server, attached, metrics));
  };
  if (attached !== undefined) {
    attached.install({ claims: (req, upgrading) => routes.claims(req, upgrading), handle, upgrade });
    core.start().catch((err: unknown) => log.error('broker start failed', { error: String(err) }));
    metrics?.listener?.listen().catch((err: unknown) => log.error('metrics listener failed', { error: String(err) }));
  } else {
    listenOn(server, log, upgrade);
  }
  return {
    options,
    server,
    broker,
    handle,
    stats: fronts.stats,
    start: core.start,
    publish: core.publish,
    presence: (channel) => presenceOf(core.presence, channel),
    missed: async (query) => {
      if (core.audit === undefined) throw new WarrenError('NOT_FOUND', 'no audit: create the gateway with auditRoutes (docs/audit.md)');
      await core.start();
      const limit = query.limit ?? DEFAULT_MISSED_LIMIT;
      if (!Number.isInteger(limit) || limit < 1 || limit > MAX_MISSED_LIMIT) {
        throw new WarrenError('INVALID_REQUEST', `limit must be a whole number from 1 to ${MAX_MISSED_LIMIT}`);
      }
      return core.audit.query({
        consumerId: query.consumerId === undefined ? undefined : parseConsumerId(query.consumerId),
        channel: query.channel === undefined ? undefined : parseChannel(query.channel),
        after: query.after,
        since: query.since,
        limit,
      });
    },
    connections: push.connections,
    async listen(): Promise<AddressInfo> {
      await core.start();
      if (!server.listening) await listenServer(server, options);
      const address = server.address() as AddressInfo;
      log.info('gateway listening', { port: address.port, host: address.address, broker: broker.kind });
      await metrics?.listener?.listen();
      return address;
    },
    metricsAddress: () => metrics?.listener?.address(),
    close,
    reloadTls: () => tls?.reload() ?? false,
    drain(): Promise<void> {
      core.draining ??= drain(core, fronts, close);
      return core.draining;
    },
  };
}

/** What every front shares: the broker and its queues, the application, admission. */
interface Core {
  options: NormalizedOptions;
  log: Logger;
  broker: Broker;
  queues: ConsumerQueues;
  /** What consumers of audited channels missed (docs/audit.md); `undefined` without `--audit-routes`. */
  audit: Audit | undefined;
  fanOut: FanOut;
  /** Which channels may be subscribed by pattern. */
  wildcards: WildcardRoutes;
  /** The process's pattern subscriptions (docs/wildcards.md); `undefined` without `--wildcard-routes`. */
  wildcard: WildcardFanOut | undefined;
  logs: ChannelLogs;
  /** Where identified consumers of logged channels are (docs/channel-logs.md, "Positions"). */
  positions: Positions;
  /** Records where identified streams of logged channels are. */
  streamPositions: StreamPositions;
  /** Who is on the presence channels (with `presenceRoutes`). */
  presence: Presence | undefined;
  streams: Sources;
  upstream: Upstream;
  tokens: ChannelTokens;
  cors: Cors;
  queueBudget: QueueBudget;
  admission: Admission;
  access: AccessLog;
  ready: BrokerReady;
  /** Set once `close()` was called. */
  closing: Promise<void> | undefined;
  /** Set once `drain()` was called: not ready any more. */
  draining: Promise<void> | undefined;
  /** The drain ends its connections: new requests are refused. */
  refusing: boolean;
  /** Cuts a drain's waiting short (`close()` was called). */
  interruptDrain: (() => void) | undefined;
  start(): Promise<void>;
  publish: Gateway['publish'];
  /** What counts the queues and logs a publish reached, for the publish endpoint's answers. */
  routeCounter: RouteCounter | undefined;
}

function createCore(options: NormalizedOptions, log: Logger, tokens: ChannelTokens): Core {
  const broker = createBroker(options, log);
  const audit = createAudit(options, broker, log);
  const queues = new ConsumerQueues(
    broker,
    {
      expiresMs: options.queueExpiresMs,
      maxLength: options.queueMaxLength,
      queueType: options.queueType,
    },
    Date.now,
    audit,
  );
  const fanOutOptions = {
    maxPendingBytes: options.maxPendingBytes,
    lingerMs: 30_000,
    prefetch: 256,
    queueExpiresMs: 60_000,
    queueMaxLength: 10_000,
  };
  const fanOut = new FanOut(broker, log, fanOutOptions);
  const wildcards = new WildcardRoutes(options.wildcardRoutes);
  const wildcard = wildcards.enabled
    ? new WildcardFanOut(broker, fanOut.gatewayId, log, { ...fanOutOptions, lingerMs: options.wildcardLingerMs })
    : undefined;
  const logs = createLogs(options, broker, log);
  const upstream = createUpstream(options, log);
  const cors = new Cors(options.corsOrigins);
  const queueBudget = new QueueBudget(options.queueBudget);
  const positions = createPositions(options, broker, log);
  const streamPositions = new StreamPositions(positions, log, {
    intervalMs: options.logPositionIntervalMs,
    expiresMs: options.queueExpiresMs,
  });
  const presence = createPresence(options, broker, log);
  let started: Promise<void> | undefined;
  const start = (): Promise<void> => {
    tokens.start();
    return (started ??= broker.start().then(() => presence?.start()));
  };
  const limits = new ConnectionLimits(options.maxConnectionsPerIp, options.maxConnectionsPerIdentity);
  // What counts the queues and logs a publish reached, for the endpoints' answers and gateway.publish().
  const routeCounter = createRouteCounter(
    broker,
    {
      managementUrl: options.managementUrl,
      amqpUrl: options.amqpUrl === undefined ? undefined : parseList(options.amqpUrl)[0],
      exchange: options.exchange,
      maxAgeMs: options.routeCountMaxAgeMs,
      timeoutMs: Math.min(options.brokerTimeoutMs, 2000),
    },
    log,
  );
  const core: Core = {
    options,
    log,
    broker,
    queues,
    audit,
    fanOut,
    wildcards,
    wildcard,
    logs,
    positions,
    streamPositions,
    presence,
    upstream,
    tokens,
    cors,
    queueBudget,
    streams: new Sources(broker, queues, fanOut, log, options.streamPrefetch, logs, { positions, streams: streamPositions }, wildcard),
    admission: new Admission({
      options,
      upstream,
      tokens,
      cors,
      broker,
      queues,
      fanOut,
      wildcard,
      logs,
      queueBudget,
      limits,
      closing: () => core.closing !== undefined || core.refusing,
    }),
    access: new AccessLog(options.accessLog, log, (req) => upstream.clientAddress(req)),
    ready: new BrokerReady(broker, start),
    closing: undefined,
    draining: undefined,
    refusing: false,
    interruptDrain: undefined,
    start,
    publish: publisher(options, { broker, prepare: (channel) => logs.preparePublish(channel), counter: routeCounter }, start),
    routeCounter,
  };
  return core;
}

function createAudit(options: NormalizedOptions, broker: Broker, log: Logger): Audit | undefined {
  if (options.auditRoutes === undefined) return undefined;
  const maxBytes = options.auditMaxBytes;
  return new Audit(broker, log, {
    routes: parseList(options.auditRoutes),
    exchange: options.exchange,
    limits: {
      maxAgeMs: options.auditMaxAgeMs,
      maxBytes,
      segmentBytes: Math.max(4096, Math.min(16 * 1024 * 1024, Math.floor(maxBytes / 8))),
    },
    queryTimeoutMs: options.brokerTimeoutMs,
  });
}

function createPositions(options: NormalizedOptions, broker: Broker, log: Logger): Positions {
  // Kept as long as a consumer queue would be; small segments, so that retention can cut often.
  const maxBytes = 64 * 1024 * 1024;
  return new Positions(broker, log, {
    log: positionsLogName(options.exchange),
    limits: { maxAgeMs: options.queueExpiresMs, maxBytes, segmentBytes: 1024 * 1024 },
    expiresMs: options.queueExpiresMs,
  });
}

function createPresence(options: NormalizedOptions, broker: Broker, log: Logger): Presence | undefined {
  if (options.presenceRoutes === undefined) return undefined;
  return new Presence(broker, log, {
    routes: parseList(options.presenceRoutes),
    intervalMs: options.presenceIntervalMs,
    graceMs: options.presenceGraceMs,
    webhook: options.presenceWebhook,
    webhookToken: options.publishToken,
    webhookTimeoutMs: options.upstreamTimeoutMs,
  });
}

/**
 * The members of a presence channel.
 * @throws WarrenError `INVALID_CHANNEL`, `INVALID_REQUEST`
 */
export function presenceOf(presence: Presence | undefined, channel: string): PresenceMember[] {
  const target = parseChannel(channel);
  if (presence === undefined || !presence.isPresenceChannel(target)) {
    throw new WarrenError('INVALID_REQUEST', `${target} is not a presence channel (under --presence-routes)`);
  }
  return presence.members(target);
}

function createLogs(options: NormalizedOptions, broker: Broker, log: Logger): ChannelLogs {
  const maxBytes = options.logMaxBytes;
  return new ChannelLogs(broker, log, {
    routes: options.logRoutes === undefined ? [] : parseList(options.logRoutes),
    // Retention removes whole segments: small ones keep it close to the bound.
    limits: { maxAgeMs: options.logMaxAgeMs, maxBytes, segmentBytes: Math.max(4096, Math.min(16 * 1024 * 1024, Math.floor(maxBytes / 8))) },
    shards: options.logShards,
    exchange: options.exchange,
    maxPendingBytes: options.maxPendingBytes,
    lingerMs: 30_000,
  });
}

/** The ways in: push connections, long-polls, HTTP routes and upgrades. */
interface Fronts {
  push: PushFront;
  longPoll: LongPoll;
  routes: Routes;
  router: Router;
  upgrades: UpgradeFront;
  stats(): GatewayStats;
}

function createFronts(core: Core, input: CreateGatewayOptions, attached: AttachedServer | undefined): Fronts {
  const { options, log, broker, upstream, admission } = core;
  const custom = input.onUpgrade !== undefined;
  const push = new PushFront({
    admission,
    decide: input.onUpgrade ?? defaultDecider(core),
    custom,
    acceptor: new WebSocketAcceptor({ maxPayload: options.wsMaxPayload, pingIntervalMs: options.wsPingIntervalMs }),
    heartbeats: sseHeartbeats(options.sseHeartbeatMs),
    sseRetryMs: options.sseRetryMs,
    context: {
      streams: core.streams,
      parseTarget: (channel) => core.wildcards.parse(channel),
      log,
      maxSubscriptions: options.wsMaxSubscriptions,
      maxPendingBytes: options.maxPendingBytes,
      publish: core.publish,
      brokerReady: () => core.ready.wait(() => core.closing !== undefined),
    },
  });
  const longPoll = new LongPoll(broker, core.queues, log);
  longPoll.logged = new LogPolls(core.logs, core.positions, longPoll.stats, log);
  const polls = new LongPollFront(longPoll, core.fanOut, admission, upstream, options, { channels: core.logs, polls: longPoll.logged });
  const stats = (): GatewayStats => gatewayStats(core, push, longPoll);
  const routes = new Routes(options.pushRoutes, options.appRoutes, custom);
  const { publishToken, maxMessageBytes, pushRoutes } = options;
  const stopping = (): boolean => core.closing !== undefined || core.draining !== undefined;
  const passRequest = attached === undefined ? undefined : attached.passRequest.bind(attached);
  const passUpgrade = attached === undefined ? undefined : attached.passUpgrade.bind(attached);
  const router = new Router({
    log,
    access: core.access,
    routes,
    custom,
    upstream,
    cors: core.cors,
    broker,
    polls,
    push,
    stats,
    presence: (channel) => presenceOf(core.presence, channel),
    wildcards: core.wildcards,
    audit: core.audit,
    publishToken,
    maxMessageBytes,
    publishBatch: { batchMaxMessages: options.publishBatchMaxMessages, batchMaxBytes: options.publishBatchMaxBytes },
    preparePublish: (channel) => core.logs.preparePublish(channel),
    routeCounter: core.routeCounter,
    pushRoutes,
    stopping,
    passRequest,
  });
  const upgrades = new UpgradeFront({ log, access: core.access, routes, custom, upstream, admission, push, pushRoutes, passUpgrade });
  return { push, longPoll, routes, router, upgrades, stats };
}

/**
 * How long a stream waits for a broker that answers later than
 * `brokerTimeoutMs` to declare and bind its queue before it opens anyway
 * (and subscribes when it can, as during an outage).
 */
function streamPrepareWindowMs(brokerTimeoutMs: number): number {
  return Math.max(30_000, 3 * brokerTimeoutMs);
}

/** The handler of `warren serve`, on the core's admission and queues. */
function defaultDecider(core: Core): UpgradeDecider {
  const { options, log, broker, admission, queues, fanOut, upstream } = core;
  return createDefaultDecider({
    log,
    admission,
    wildcards: core.wildcards,
    reauthIntervalMs: options.reauthIntervalMs,
    maxSubscriptions: options.wsMaxSubscriptions,
    isLogged: (channel) => core.logs.isLogged(channel),
    presence: core.presence,
    async prepareStream(req, channel, consumerId) {
      // The broker is away: the stream opens and subscribes (and is admitted) once it is back.
      if (!broker.ready) return;
      admission.admitQueue(admission.clientAddress(req), channel, consumerId);
      const prepare = async (): Promise<void> => {
        if (isPattern(channel)) await core.wildcard?.prepare();
        else if (core.logs.isLogged(channel)) await core.logs.ensure(channel);
        else if (consumerId !== undefined) await queues.ensure(consumerId, channel);
        else await fanOut.prepare(channel);
      };
      // A broker that answers late is waited for: the 200 tells the client
      // that the stream is bound, so a message confirmed after it reaches it.
      const deadline = Date.now() + streamPrepareWindowMs(options.brokerTimeoutMs);
      for (;;) {
        try {
          return await prepare();
        } catch (err) {
          const late = err instanceof WarrenError && err.code === 'BROKER_TIMEOUT';
          if (!late || !broker.ready || req.socket.destroyed || Date.now() >= deadline) throw err;
        }
      }
    },
    sendToApp: upstream.proxying
      ? (req, channel, who, body, contentType) => upstream.send(req, channel, who, body, contentType)
      : undefined,
  });
}

function gatewayStats(core: Core, push: PushFront, longPoll: LongPoll): GatewayStats {
  const routeCounts = core.routeCounter?.stats();
  let sse = 0;
  for (const conn of push.connections) if (conn.kind === 'sse') sse++;
  return {
    broker: core.broker.stats(),
    longPoll: { ...longPoll.stats },
    streams: { sse, websocket: push.connections.size - sse, identified: core.streams.identified },
    fanOut: { ...core.fanOut.stats },
    ...(core.wildcard === undefined ? {} : { wildcard: { ...core.wildcard.stats } }),
    knownQueues: core.queues.size,
    pid: process.pid,
    logs: { ...core.logs.stats },
    ...(core.presence === undefined ? {} : { presence: core.presence.stats() }),
    ...(core.audit === undefined ? {} : { audit: { ...core.audit.stats } }),
    ...(routeCounts === undefined ? {} : { routeCounts }),
  };
}

/**
 * `close()`: answers waiting polls, calls `onShutdown` and closes every push
 * connection, gives an attached server back, stops the gateway's own server,
 * then (after `onClose` had its chance to publish) the broker.
 */
async function shutdown(
  core: Core,
  fronts: Fronts,
  server: Server,
  attached: AttachedServer | undefined,
  metrics: Metrics | undefined,
): Promise<void> {
  fronts.longPoll.shutdown();
  core.ready.fail(new WarrenError('BROKER_UNAVAILABLE', 'the gateway is shutting down'));
  const open = [...fronts.push.connections];
  await Promise.all(open.map((conn) => conn.shutdown(1000)));
  // Its members stay for the grace period elsewhere: time for its clients to reconnect to another process.
  await core.presence?.close();
  await core.fanOut.close();
  await core.wildcard?.close().catch((err: unknown) => core.log.warn('wildcard close failed', { error: String(err) }));
  await core.logs.close();
  await core.streamPositions.close();
  await core.positions.close();
  await core.audit?.close();
  attached?.restore();
  await Promise.all([closeServer(server, attached === undefined), metrics?.listener?.close()]);
  // onClose may still publish (a chat's "left"): give it time before the broker goes.
  await Promise.race([Promise.all(open.map((conn) => conn.settled)), new Promise((resolve) => setTimeout(resolve, 2000).unref())]);
  core.queues.close();
  core.queueBudget.close();
  core.tokens.close();
  await core.upstream.close();
  await core.broker.close();
}

/**
 * `drain()`: not ready at once; after the delay, refuse new streams and polls, answer
 * waiting polls and end every push connection with its own reconnect moment
 * within the spread; close once nothing is left or the shutdown timeout ran out.
 */
async function drain(core: Core, fronts: Fronts, close: () => Promise<void>): Promise<void> {
  const { log, options } = core;
  const { drainDelayMs, drainSpreadMs, shutdownTimeoutMs } = options;
  if (core.closing !== undefined) return core.closing;
  const deadline = Date.now() + shutdownTimeoutMs;
  log.info('draining', { delayMs: drainDelayMs, spreadMs: drainSpreadMs, connections: fronts.push.connections.size });
  const timers = new Set<NodeJS.Timeout>();
  const wait = (ms: number): Promise<void> =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        timers.delete(timer);
        resolve();
      }, ms);
      timers.add(timer);
    });
  const interrupted = new Promise<void>((resolve) => (core.interruptDrain = resolve));
  try {
    await Promise.race([wait(drainDelayMs), interrupted]);
    // close() was called meanwhile: it ends everything at once (and returns the same promise).
    if (closing(core)) return await close();
    core.refusing = true;
    // Its clients reconnect elsewhere within the spread: none of its presence members leaves meanwhile.
    core.presence?.holdFor(drainSpreadMs);
    fronts.longPoll.shutdown();
    const spreadEnd = Date.now() + drainSpreadMs;
    const ending = new WeakSet<PushConnection>();
    // Each tick also ends a connection that was still opening when the others were told.
    const endConnections = (): void => {
      for (const conn of [...fronts.push.connections]) {
        if (ending.has(conn)) continue;
        ending.add(conn);
        const moment = Math.random() * Math.max(0, spreadEnd - Date.now());
        // An SSE client waits out its own `retry:`; a WebSocket is closed at its own moment (its client reconnects at once, with jitter).
        if (conn.kind === 'sse') void conn.shutdown(2000, { kind: 'restart', retryMs: moment });
        else void wait(moment).then(() => conn.shutdown(2000, { kind: 'restart', retryMs: 0 }));
      }
    };
    while ((fronts.push.connections.size > 0 || fronts.longPoll.stats.active > 0) && Date.now() < deadline && !closing(core)) {
      endConnections();
      await Promise.race([wait(50), interrupted]);
    }
    if (fronts.push.connections.size > 0 && core.closing === undefined)
      log.warn('drain timed out; closing the connections left', { left: fronts.push.connections.size });
  } finally {
    for (const timer of timers) clearTimeout(timer);
  }
  log.info('drained');
  await close();
}

/** Whether `close()` was called (read through a call: a drain checks it again after each wait). */
function closing(core: Core): boolean {
  return core.closing !== undefined;
}

function listenServer(server: Server, options: NormalizedOptions): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

const SERVER_OPTIONS = { maxHeaderSize: 16 * 1024, requireHostHeader: false };

/** The HTTPS server of a gateway given `tlsCert` and `tlsKey` (with no server of the application's). @throws OptionError */
function ownTlsServer(options: NormalizedOptions, log: Logger): TlsServer | undefined {
  if (options.tlsCert === undefined || options.tlsKey === undefined) return undefined;
  return new TlsServer({ cert: options.tlsCert, key: options.tlsKey }, log, SERVER_OPTIONS);
}

/** Options that only make sense together when embedding. @throws OptionError */
function checkEmbedding(input: CreateGatewayOptions, options: NormalizedOptions): void {
  if (input.server !== undefined && options.upstream !== undefined) {
    throw new OptionError(
      'server and upstream (--upstream) exclude each other: an attached gateway shares its server with the application itself',
    );
  }
  if (input.server !== undefined && options.tlsCert !== undefined) {
    throw new OptionError(
      "server and tlsCert (--tls-cert) exclude each other: an attached gateway serves on the application's server, and TLS there is the application's to set up",
    );
  }
  if (input.server !== undefined && input.onUpgrade === undefined && options.pushRoutes === undefined) {
    throw new OptionError('server with the default handler needs pushRoutes: which paths of the application are channels, e.g. /live/');
  }
}

function createBroker(options: NormalizedOptions, log: Logger): Broker {
  if (options.amqpUrl === undefined) return new MemoryBroker();
  return new RabbitBroker({
    urls: parseList(options.amqpUrl),
    exchange: options.exchange,
    exchangeType: options.wildcardRoutes === undefined ? 'direct' : 'topic',
    reconnectMinMs: options.reconnectMinMs,
    reconnectMaxMs: options.reconnectMaxMs,
    connectionName: `warren-gateway pid=${process.pid}`,
    heartbeatSeconds: options.amqpHeartbeatMs / 1000,
    operationTimeoutMs: options.brokerTimeoutMs,
    logger: log,
  });
}

function createUpstream(options: NormalizedOptions, log: Logger): Upstream {
  return new Upstream(
    {
      upstream: options.upstream,
      messagePath: options.wsMessagePath,
      messageMethod: options.wsMessageMethod as 'POST',
      authUrl: options.authUrl,
      timeoutMs: options.upstreamTimeoutMs,
      authCacheMs: options.authCacheMs,
      trustedProxies: options.trustedProxies,
    },
    log,
  );
}

/** `gateway.publish()`: checked like the publish endpoint, then to the broker; answered as the endpoint answers. */
function publisher(options: NormalizedOptions, via: PublishVia, start: () => Promise<void>): Gateway['publish'] {
  return async (channel: string, data: MessageData, messageOptions?: MessageOptions): Promise<PublishAnswer> => {
    const target = parseChannel(channel);
    const message = encodeMessage(data, messageOptions);
    if (message.body.length > options.maxMessageBytes) {
      throw new WarrenError('MESSAGE_TOO_LARGE', `the message is ${message.body.length} bytes; at most ${options.maxMessageBytes}`);
    }
    await start();
    return publishMessage(via, [target], message);
  };
}

/** One promise for every subscription waiting out a broker outage (not one listener each). */
class BrokerReady {
  private waiting: { promise: Promise<void>; fail(err: Error): void } | undefined;

  constructor(
    private readonly broker: Broker,
    private readonly start: () => Promise<void>,
  ) {}

  /**
   * Resolves once the broker is connected (at once when it is).
   * @throws WarrenError `BROKER_UNAVAILABLE` when the gateway closes first
   */
  async wait(closing: () => boolean): Promise<void> {
    await this.start();
    if (closing()) throw new WarrenError('BROKER_UNAVAILABLE', 'the gateway is shutting down');
    if (this.broker.ready) return;
    if (this.waiting === undefined) {
      let fail!: (err: Error) => void;
      const promise = new Promise<void>((resolve, reject) => {
        fail = reject;
        this.broker.once('ready', () => {
          this.waiting = undefined;
          resolve();
        });
      });
      promise.catch(() => undefined);
      this.waiting = { promise, fail };
    }
    return this.waiting.promise;
  }

  /** Fails every waiting subscription (the gateway is closing). */
  fail(err: Error): void {
    this.waiting?.fail(err);
  }
}

/** The gateway's own server: upgrades, and every request Node itself refuses, answered as JSON. */
function listenOn(server: Server, log: Logger, upgrade: (req: IncomingMessage, socket: Duplex, head: Buffer) => void): void {
  server.on('upgrade', upgrade);
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    sendError(res, new WarrenError('EXPECTATION_FAILED', `unsupported Expect: ${String(req.headers.expect).slice(0, 64)}`), log);
  });
  server.on('connect', (_req: IncomingMessage, socket: Socket) => {
    abortHandshake(socket, new WarrenError('METHOD_NOT_ALLOWED', 'CONNECT is not supported'), log);
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    const error =
      err.code === 'HPE_HEADER_OVERFLOW'
        ? new WarrenError('HEADERS_TOO_LARGE', 'request headers are too large')
        : new WarrenError('INVALID_REQUEST', 'malformed HTTP request');
    abortHandshake(socket, error, log);
  });
}

/**
 * Stops the gateway's own server: answered polls and streams finish
 * writing, each keep-alive socket goes as soon as it is idle, and whatever
 * is left after 2 s is cut. An attached server is the application's: left running.
 */
async function closeServer(server: Server, own: boolean): Promise<void> {
  // Read before close(): afterwards `listening` is already false.
  if (!own || !server.listening) return;
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  const sweep = setInterval(() => server.closeIdleConnections(), 50);
  const force = setTimeout(() => server.closeAllConnections(), 2000);
  await closed;
  clearInterval(sweep);
  clearTimeout(force);
}
