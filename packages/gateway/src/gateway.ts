import { createServer, validateHeaderName, validateHeaderValue, type IncomingMessage, type OutgoingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import {
  encodeMessage,
  HEADERS,
  parseChannel,
  parseConsumerId,
  PATHS,
  tokenAllows,
  verifyChannelToken,
  WarrenError,
  type MessageData,
  type MessageOptions,
} from '@warren/protocol';
import type { Broker, BrokerStats } from './broker/broker.js';
import { MemoryBroker } from './broker/memory.js';
import { RabbitBroker } from './broker/rabbitmq.js';
import { App } from './app.js';
import { ConnectionLimits, QueueBudget } from './limits.js';
import { ConsumerQueues } from './consumer-queues.js';
import { Cors } from './cors.js';
import { sendError, sendJson } from './http.js';
import { consumerCookie, findConsumer, resolveConsumer, UNVOUCHED_PREFIX } from './identity.js';
import { FanOut, type FanOutStats } from './streams/fan-out.js';
import { Streams } from './streams/streams.js';
import { SseTransport, sseHeartbeats } from './transports/sse.js';
import { WebSocketAcceptor } from './transports/websocket.js';
import type { Transport } from './transports/transport.js';
import type { Duplex } from 'node:stream';
import type { Identity } from './app.js';
import { createLogger, type Logger } from './logger.js';
import { LongPoll, type LongPollStats } from './long-poll.js';
import { normalizeOptions, OptionError, parseOrigins, type GatewayOptions, type NormalizedOptions } from './options.js';
import { Connection, type ConnectionContext } from './push/connection.js';
import { createDefaultDecider, PREPARE, type PreparedHandler } from './push/default-handler.js';
import type { PushConnection, PushUpgrade, UpgradeDecider, UpgradeKind } from './push/handler.js';
import { authorizePublisher, handlePublish } from './publish-endpoint.js';

/** Longest request target (path and query) accepted. */
export const MAX_URL_LENGTH = 2048;

export interface GatewayStats {
  broker: BrokerStats;
  longPoll: LongPollStats;
  /** Open SSE responses and WebSockets, and the identified streams among their subscriptions. */
  streams: { sse: number; websocket: number; identified: number };
  /** Anonymous streams sharing per-process queues. */
  fanOut: FanOutStats;
  /** Consumer queues whose declaration is cached. */
  knownQueues: number;
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
  /** Connects the broker and starts listening (unless the server already listens). Resolves with the bound address. */
  listen(): Promise<AddressInfo>;
  /**
   * Answers waiting polls, calls `onShutdown` and closes every push
   * connection (waiting up to 2 s for `onClose`), stops listening (its own
   * server only) and disconnects. Idempotent.
   */
  close(): Promise<void>;
  stats(): GatewayStats;
  /**
   * Publishes to every subscriber of `channel`, in every gateway process on
   * the same broker. Resolves once the broker has taken it.
   * @throws WarrenError `INVALID_CHANNEL`, `INVALID_MESSAGE`, `MESSAGE_TOO_LARGE`, `BROKER_UNAVAILABLE`
   */
  publish(channel: string, data: MessageData, options?: MessageOptions): Promise<void>;
  /** The request handler of the gateway's routes. */
  handle(req: IncomingMessage, res: ServerResponse): void;
}

/** Whether a request asks for Server-Sent Events. */
function wantsEventStream(req: IncomingMessage): boolean {
  return /\btext\/event-stream\b/.test(req.headers.accept ?? '');
}

/**
 * The raw path and the query of a request. The raw path, not a normalised
 * one: `/a/../b` must be refused, not resolved.
 * @throws WarrenError `URI_TOO_LONG`, `INVALID_REQUEST`
 */
function parseTarget(req: IncomingMessage): { path: string; query: URLSearchParams } {
  const target = req.url ?? '';
  if (target.length > MAX_URL_LENGTH) throw new WarrenError('URI_TOO_LONG', `the URL is longer than ${MAX_URL_LENGTH} characters`);
  if (!target.startsWith('/')) throw new WarrenError('INVALID_REQUEST', 'the request target must be a path');
  const q = target.indexOf('?');
  return { path: q < 0 ? target : target.slice(0, q), query: new URLSearchParams(q < 0 ? '' : target.slice(q + 1)) };
}

/**
 * Builds a gateway from options (validated here, once).
 * @throws OptionError for an invalid option
 */
export function createGateway(input: CreateGatewayOptions = {}): Gateway {
  const options = normalizeOptions(input);
  const custom = input.onUpgrade !== undefined;
  const attached = input.server !== undefined;
  if (attached && options.upstream !== undefined) {
    throw new OptionError('server and upstream (--upstream) exclude each other: an attached gateway shares its server with the application itself');
  }
  if (attached && !custom && options.pushRoutes === undefined) {
    throw new OptionError('server with the default handler needs pushRoutes: which paths of the application are channels, e.g. /live/');
  }
  const log: Logger = options.logger ?? createLogger(options.logLevel);
  const broker: Broker =
    options.amqpUrl === undefined
      ? new MemoryBroker()
      : new RabbitBroker({
          url: options.amqpUrl,
          exchange: options.exchange,
          reconnectMinMs: options.reconnectMinMs,
          reconnectMaxMs: options.reconnectMaxMs,
          connectionName: `warren-gateway pid=${process.pid}`,
          heartbeatSeconds: options.amqpHeartbeatMs / 1000,
          operationTimeoutMs: options.brokerTimeoutMs,
          logger: log,
        });
  const queues = new ConsumerQueues(broker, { expiresMs: options.queueExpiresMs, maxLength: options.queueMaxLength });
  const longPoll = new LongPoll(broker, queues, log);
  const fanOut = new FanOut(broker, log, {
    maxPendingBytes: options.maxPendingBytes,
    lingerMs: 30_000,
    prefetch: 256,
    queueExpiresMs: 60_000,
    queueMaxLength: 10_000,
  });
  const streams = new Streams(broker, queues, fanOut, log, options.streamPrefetch);
  const acceptor = new WebSocketAcceptor({ maxPayload: options.wsMaxPayload, pingIntervalMs: options.wsPingIntervalMs });
  const heartbeats = sseHeartbeats(options.sseHeartbeatMs);
  const connections = new Set<Connection>();
  const cors = new Cors(options.corsOrigins);
  const app = new App(
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
  const pushRoutes = options.pushRoutes === undefined ? undefined : parseOrigins(options.pushRoutes);
  const appRoutes = options.appRoutes === undefined ? undefined : parseOrigins(options.appRoutes);
  const limits = new ConnectionLimits(options.maxConnectionsPerIp, options.maxConnectionsPerIdentity);
  const queueBudget = new QueueBudget(options.queueBudget);
  /** The identity {@link identify} found vouched for in a request (a token or the app's answer). */
  const vouchedFor = new WeakMap<IncomingMessage, string>();
  /** The key each open connection is counted under by the per-identity cap. */
  const capKeys = new WeakMap<Connection, string | undefined>();
  let closing: Promise<void> | undefined;
  let started: Promise<void> | undefined;
  const start = (): Promise<void> => (started ??= broker.start());

  const stats = (): GatewayStats => {
    let sse = 0;
    for (const conn of connections) if (conn.kind === 'sse') sse++;
    return {
    broker: broker.stats(),
    longPoll: { ...longPoll.stats },
    streams: { sse, websocket: connections.size - sse, identified: streams.identified },
    fanOut: { ...fanOut.stats },
    knownQueues: queues.size,
    };
  };

  async function publish(channel: string, data: MessageData, messageOptions?: MessageOptions): Promise<void> {
    const target = parseChannel(channel);
    const message = encodeMessage(data, messageOptions);
    if (message.body.length > options.maxMessageBytes) {
      throw new WarrenError('MESSAGE_TOO_LARGE', `the message is ${message.body.length} bytes; at most ${options.maxMessageBytes}`);
    }
    await start();
    await broker.publish(target, message);
  }

  /** One promise for every subscription waiting out a broker outage (not one listener each). */
  let readyWait: { promise: Promise<void>; fail(err: Error): void } | undefined;
  async function brokerReady(): Promise<void> {
    await start();
    if (closing !== undefined) throw new WarrenError('BROKER_UNAVAILABLE', 'the gateway is shutting down');
    if (broker.ready) return;
    if (readyWait === undefined) {
      let fail!: (err: Error) => void;
      const promise = new Promise<void>((resolve, reject) => {
        fail = reject;
        broker.once('ready', () => {
          readyWait = undefined;
          resolve();
        });
      });
      promise.catch(() => undefined);
      readyWait = { promise, fail };
    }
    return readyWait.promise;
  }

  const context: ConnectionContext = {
    streams,
    log,
    maxSubscriptions: options.wsMaxSubscriptions,
    maxPendingBytes: options.maxPendingBytes,
    publish,
    brokerReady,
    admitQueue,
    closed(conn) {
      connections.delete(conn);
      limits.give(conn.clientAddress, capKeys.get(conn));
    },
  };

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // Node's own check would answer with an empty body; this one answers JSON.
    if (req.headers.host === undefined && req.httpVersionMinor >= 1) throw new WarrenError('INVALID_REQUEST', 'the Host header is missing');
    const { path, query } = parseTarget(req);
    if (path.startsWith(PATHS.prefix) || path === PATHS.prefix.slice(0, -1)) return internal(req, res, path, query);
    if (!isPushRoute(path)) return declineRequest(req, res, path);
    // On a push route, what is not a subscription goes to the app (when there is one).
    if (app.proxying && req.method !== 'GET' && req.method !== 'OPTIONS') return app.forward(req, res);
    // An application's handlers take streams only; polls need the default handler.
    if (custom && !(req.method === 'GET' && wantsEventStream(req))) return declineRequest(req, res, path);
    const channel = custom ? undefined : parseChannel(path);
    if (req.method === 'OPTIONS') return cors.preflight(req, res);
    cors.apply(req, res);
    if (req.method !== 'GET') {
      res.setHeader('allow', 'GET, OPTIONS');
      throw new WarrenError('METHOD_NOT_ALLOWED', `${req.method} is not allowed on a channel; use GET`);
    }
    if (wantsEventStream(req)) return openPush('sse', req, path, query, { res });
    return subscribe(req, res, channel!, query);
  }

  /** A request the gateway does not serve: the application's (attached or upstream), else 404. */
  function declineRequest(req: IncomingMessage, res: ServerResponse, path: string): void {
    if (attached) return passRequest(req, res);
    if (app.proxying) return app.forward(req, res) as unknown as void;
    throw new WarrenError('NOT_FOUND', custom ? `no handler for ${path}` : `${path} is not under the push routes (${options.pushRoutes})`);
  }

  async function internal(req: IncomingMessage, res: ServerResponse, path: string, query: URLSearchParams): Promise<void> {
    const allow = (method: string): void => {
      if (req.method !== method) {
        res.setHeader('allow', method);
        throw new WarrenError('METHOD_NOT_ALLOWED', `use ${method} on ${path}`);
      }
    };
    switch (path) {
      case PATHS.publish:
        allow('POST');
        return handlePublish(req, res, query, broker, options.publishToken, options.maxMessageBytes);
      case PATHS.health: {
        allow('GET');
        const ready = broker.ready && closing === undefined;
        sendJson(res, ready ? 200 : 503, { status: ready ? 'ok' : 'unavailable', broker: broker.kind, brokerReady: broker.ready });
        return;
      }
      case PATHS.stats:
        allow('GET');
        authorizePublisher(req, options.publishToken);
        sendJson(res, 200, stats());
        return;
      default:
        throw new WarrenError('NOT_FOUND', `no endpoint ${path}`);
    }
  }

  /** `true` for a path under `--push-routes` (every path without the option) and not under `--app-routes`. */
  function isPushRoute(path: string): boolean {
    if (appRoutes?.some((prefix) => path.startsWith(prefix))) return false;
    return pushRoutes === undefined || pushRoutes.some((prefix) => path.startsWith(prefix));
  }

  /**
   * The consumer a subscription reads as. Without `--auth-url`, the id the
   * client named (if any). With it, the application decides: it may refuse
   * (401/403 relayed), and the identity it vouches for owns the queue: a
   * client-chosen id lives under it (`<identity>/<client id>`), so that no
   * client can read another identity's queues.
   */
  async function identify(req: IncomingMessage, token: string | undefined, channel: string, requested: string | undefined, fresh = false): Promise<Identity> {
    let identity: string | undefined;
    if (options.tokenSecret !== undefined && token !== undefined) {
      // A signed token stands in for the round trip to the app.
      const claims = verifyChannelToken(token, options.tokenSecret);
      if (!tokenAllows(claims, channel)) throw new WarrenError('FORBIDDEN', 'the token does not cover this channel');
      identity = claims.consumerId;
    } else if (app.authorizing) {
      identity = (await app.authorize(req, channel, requested, fresh)).identity;
    } else if (options.tokenSecret !== undefined) {
      throw new WarrenError('UNAUTHORIZED', 'a signed channel token is required (?token= or Authorization: Bearer)');
    }
    if (identity === undefined) return { consumerId: unvouched(requested), identity: undefined };
    vouchedFor.set(req, identity);
    return { consumerId: requested === undefined ? identity : `${identity}/${requested}`, identity };
  }

  /** The app or tokens can vouch for identities: ids nobody vouched for must never name one's queue. */
  const vouching = app.authorizing || options.tokenSecret !== undefined;

  /**
   * A consumer id nobody vouched for, in its own namespace when identities
   * can be vouched for: `anon.<id>` (a dot is in no consumer id, so no
   * client-chosen id names the queue of a vouched identity).
   */
  function unvouched<T extends string | undefined>(id: T): T {
    return (vouching && id !== undefined ? `${UNVOUCHED_PREFIX}${id}` : id) as T;
  }

  /** The signed token a subscription carries, when tokens are on. */
  function findToken(req: IncomingMessage, query: URLSearchParams): string | undefined {
    if (options.tokenSecret === undefined) return undefined;
    const fromQuery = query.get('token');
    if (fromQuery !== null) return fromQuery;
    const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    return m === null ? undefined : m[1];
  }

  /** Whether long-lived streams must be authorized again from time to time. */
  const reauthorizing = app.authorizing || options.tokenSecret !== undefined;

  const decide: UpgradeDecider =
    input.onUpgrade ??
    createDefaultDecider({
      log,
      identify,
      findToken,
      reauthorizing,
      reauthIntervalMs: options.reauthIntervalMs,
      isRefusal,
      checkAvailable(waitForBroker = false) {
        if (closing !== undefined) throw new WarrenError('BROKER_UNAVAILABLE', 'the gateway is shutting down');
        if (!broker.ready && !waitForBroker) throw new WarrenError('BROKER_UNAVAILABLE', 'the broker is not connected');
      },
      prepareStream,
      maxSubscriptions: options.wsMaxSubscriptions,
      sendToApp: app.proxying ? (req, channel, who, body, contentType) => app.send(req, channel, who, body, contentType) : undefined,
    });

  /**
   * What the per-identity cap counts a consumer under: the identity the app
   * or a token vouched for; an id nobody vouched for, apart (a client that
   * names `?consumer_id=alice` must not use up the real alice's share).
   */
  function capKey(req: IncomingMessage, consumerId: string | undefined): string | undefined {
    if (consumerId === undefined) return undefined;
    const identity = vouchedFor.get(req);
    if (identity !== undefined && (consumerId === identity || consumerId.startsWith(`${identity}/`))) return identity;
    return `${UNVOUCHED}${consumerId}`;
  }

  /** Counts a subscription against the caps. */
  function acquireSlot(req: IncomingMessage, consumerId: string | undefined): () => void {
    return limits.acquire(app.clientAddress(req), capKey(req, consumerId));
  }

  /** Errors that mean "this client may not read this channel (any more)". */
  function isRefusal(err: unknown): boolean {
    return err instanceof WarrenError && ['UNAUTHORIZED', 'FORBIDDEN', 'TOKEN_EXPIRED', 'INVALID_TOKEN'].includes(err.code);
  }

  async function subscribe(req: IncomingMessage, res: ServerResponse, channel: string, query: URLSearchParams): Promise<void> {
    const requested = findConsumer(req, query);
    const { consumerId: vouched } = await identify(req, findToken(req, query), channel, requested);
    // The client's own id (named, from its cookie, or new), when nobody vouched for one.
    const own = vouched === undefined ? resolveConsumer(req, query) : undefined;
    const consumer = own === undefined ? { id: vouched!, assigned: false } : { id: unvouched(own.id), assigned: own.assigned };
    // The id the client can send back (not the identity prefix, which is the app's to give, nor the namespace).
    const shown = requested ?? own?.id;
    // The body is a publisher's bytes in the publisher's content type: opened as a page, it must not run.
    const headers: OutgoingHttpHeaders = { 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', 'content-security-policy': 'sandbox' };
    if (shown !== undefined) headers[HEADERS.consumerId] = shown;
    if (own?.assigned) headers['set-cookie'] = consumerCookie(own.id, app.secure(req));
    let timeoutMs = options.pollTimeoutMs;
    const asked = query.get('timeout');
    if (asked !== null) {
      const seconds = /^\d+(\.\d+)?$/.test(asked) ? Number(asked) : NaN;
      if (!(seconds * 1000 <= options.maxPollTimeoutMs)) {
        throw new WarrenError('INVALID_TIMEOUT', `timeout must be a number of seconds from 0 to ${options.maxPollTimeoutMs / 1000}`);
      }
      timeoutMs = Math.round(seconds * 1000);
    }
    if (closing !== undefined) throw new WarrenError('BROKER_UNAVAILABLE', 'the gateway is shutting down');
    const release = acquireSlot(req, consumer.id);
    try {
      // An id minted for this very poll: no queue until the client comes back with it.
      if (own?.assigned) {
        if (timeoutMs > 0) admitQueue(app.clientAddress(req), channel, undefined);
        await longPoll.handleLive(fanOut, res, channel, timeoutMs, headers);
      } else {
        admitQueue(app.clientAddress(req), channel, consumer.id);
        await longPoll.handle(res, consumer.id, channel, timeoutMs, headers);
      }
    } finally {
      release();
    }
  }

  /**
   * A push request (SSE or WebSocket upgrade): the decider picks a handler
   * or declines; an admitted connection is counted against the caps and
   * prepared (its queue declared) before the client sees it open.
   */
  async function openPush(
    kind: UpgradeKind,
    req: IncomingMessage,
    path: string,
    query: URLSearchParams,
    io: { res: ServerResponse } | { socket: Duplex; head: Buffer },
  ): Promise<void> {
    if (closing !== undefined) throw new WarrenError('BROKER_UNAVAILABLE', 'the gateway is shutting down');
    const headers: OutgoingHttpHeaders = {};
    const requested = findConsumer(req, query);
    const upgrade: PushUpgrade = {
      kind,
      request: req,
      path,
      query,
      consumerId: requested,
      setHeader(name, value) {
        validateHeaderName(name);
        validateHeaderValue(name, Array.isArray(value) ? value.join(', ') : String(value));
        headers[name.toLowerCase()] = value;
      },
    };
    const handler = (await decide(upgrade)) as PreparedHandler | undefined | null | false;
    if (handler === undefined || handler === null || handler === false) {
      if ('res' in io) return declineRequest(req, io.res, path);
      return declineUpgrade(req, io.socket, io.head, path);
    }
    if (typeof handler !== 'object') throw new TypeError('onUpgrade must return a handler object, or undefined/null/false to decline');
    const consumerId = custom && upgrade.consumerId !== requested && upgrade.consumerId !== undefined ? parseConsumerId(upgrade.consumerId) : upgrade.consumerId;
    // Given back by context.closed() once the connection is open (and closes).
    const clientAddress = app.clientAddress(req);
    // An embedding application's handler that named another consumer vouched for it.
    const key = custom && consumerId !== requested ? identityOf(consumerId) : capKey(req, consumerId);
    limits.take(clientAddress, key);
    let transport: Transport;
    try {
      await handler[PREPARE]?.();
      if ('res' in io) {
        if (io.res.destroyed) throw undefined;
        transport = new SseTransport(io.res, headers, { heartbeats, retryMs: options.sseRetryMs });
      } else {
        if (io.socket.destroyed) throw undefined;
        transport = await acceptor.accept(req, io.socket, io.head, headerLines(headers));
      }
    } catch (err) {
      limits.give(clientAddress, key);
      // undefined: the client left before the connection opened.
      if (err !== undefined) throw err;
      return;
    }
    const conn = new Connection(transport, handler, context, { request: req, path, query, consumerId, clientAddress });
    connections.add(conn);
    capKeys.set(conn, key);
    conn.start();
  }

  /** Declares the consumer's queue, or starts the channel's fan-out, before a stream opens. */
  /**
   * Every new queue a client causes is admitted here, whatever the
   * transport: a consumer queue this gateway does not know yet, or a channel
   * new to its anonymous fan-out, costs the client address one token of
   * `--queue-budget`, and none is made past `--max-queues`.
   * @throws WarrenError `QUEUE_BUDGET_EXCEEDED`, `QUEUE_LIMIT_REACHED`
   */
  function admitQueue(clientAddress: string, channel: string, consumerId: string | undefined): void {
    if (consumerId === undefined ? fanOut.has(channel) : queues.known(consumerId, channel)) return;
    const kept = consumerId === undefined ? fanOut.size : queues.size;
    if (kept >= options.maxQueues) {
      throw new WarrenError('QUEUE_LIMIT_REACHED', `this gateway keeps ${options.maxQueues} ${consumerId === undefined ? 'anonymous channels' : 'consumer queues'} already`);
    }
    queueBudget.take(clientAddress);
  }

  async function prepareStream(req: IncomingMessage, channel: string, consumerId: string | undefined): Promise<void> {
    // The broker is away: the stream opens and subscribes (and is admitted) once it is back.
    if (!broker.ready) return;
    admitQueue(app.clientAddress(req), channel, consumerId);
    if (consumerId !== undefined) await queues.ensure(consumerId, channel);
    else await fanOut.prepare(channel);
  }

  /** An `Upgrade: websocket` request: checked like a GET, then handed to `ws`. */
  function upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    upgradeAsync(req, socket, head).catch((err: unknown) => rejectUpgrade(socket, err));
  }

  function rejectUpgrade(socket: Duplex, err: unknown): void {
    const error = err instanceof WarrenError && err.status !== null ? err : new WarrenError('INTERNAL_ERROR', 'internal error');
    if (!(err instanceof WarrenError)) log.error('upgrade failed', { error: String(err) });
    const body = JSON.stringify(error.toJSON());
    const retry = error.code === 'BROKER_UNAVAILABLE' || error.code === 'BROKER_TIMEOUT' ? 'retry-after: 1\r\n' : '';
    socket.end(
      `HTTP/1.1 ${error.status} ${error.code}\r\ncontent-type: application/json; charset=utf-8\r\n${retry}content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
  }

  async function upgradeAsync(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    socket.on('error', () => undefined);
    if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket') throw new WarrenError('INVALID_REQUEST', 'only WebSocket upgrades are supported');
    const { path, query } = parseTarget(req);
    if (req.method !== 'GET') throw new WarrenError('METHOD_NOT_ALLOWED', 'a WebSocket upgrade is a GET');
    if (custom || path !== PATHS.socket) {
      if (path.startsWith(PATHS.prefix)) throw new WarrenError('NOT_FOUND', `no WebSocket endpoint ${path}`);
      // The application's own WebSocket (outside the push routes): tunnel it.
      if (!isPushRoute(path)) return declineUpgrade(req, socket, head, path);
    }
    checkSocketOrigin(req);
    await openPush('websocket', req, path, query, { socket, head });
  }

  /** A WebSocket the gateway does not serve: the application's (attached or upstream), else 404. */
  function declineUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, path: string): void | Promise<void> {
    if (attached) return passUpgrade(req, socket, head);
    if (app.proxying) return app.tunnel(req, socket, head);
    throw new WarrenError('NOT_FOUND', custom ? `no handler for ${path}` : `${path} is not under the push routes (${options.pushRoutes})`);
  }

  /**
   * Cross-site WebSocket hijacking: browsers send cookies with a WebSocket
   * from any page. With `--cors-origins`, only the exact origins listed
   * (and the gateway's own) may open one, never any origin for `*`; with
   * `--auth-url` and no list, only the gateway's own origin
   * ({@link isOwnOrigin}).
   */
  function checkSocketOrigin(req: IncomingMessage): void {
    const origin = req.headers.origin;
    // Not `*`: a WebSocket carries the page's cookies whatever CORS says, so only named origins count.
    if (origin === undefined) return;
    if (isOwnOrigin(req, origin) || cors.allows(origin)) return;
    if (cors.configured || app.authorizing) throw new WarrenError('ORIGIN_NOT_ALLOWED', 'this origin may not open a WebSocket here');
  }

  /**
   * Whether `origin` is the site the client reached: its `Host`, or behind a
   * trusted proxy (which may rewrite `Host`, e.g. nginx's `$host` drops the
   * port) the `X-Forwarded-Host` and `X-Forwarded-Proto` it sets.
   */
  function isOwnOrigin(req: IncomingMessage, origin: string): boolean {
    try {
      const page = new URL(origin);
      const forwardedHost = firstHop(req.headers['x-forwarded-host']);
      if (forwardedHost !== undefined && app.fromTrustedProxy(req)) {
        const scheme = firstHop(req.headers['x-forwarded-proto'])?.toLowerCase() ?? page.protocol.slice(0, -1);
        return new URL(`${scheme}://${forwardedHost}`).origin === page.origin;
      }
      return page.host === req.headers.host;
    } catch {
      return false; // an Origin (or a forwarded host) that is not a URL is not the same site
    }
  }

  function handle(req: IncomingMessage, res: ServerResponse): void {
    route(req, res).catch((err: unknown) => {
      // A client that hung up mid-upload is not the gateway's error.
      if (req.destroyed && !(err instanceof WarrenError)) return;
      sendError(res, err, log);
      // A refused request body is not read: drop the connection once answered.
      if (!req.complete) res.once('finish', () => req.destroy());
    });
  }

  const server = input.server ?? createServer({ maxHeaderSize: 16 * 1024, requireHostHeader: false }, handle);
  // Attached: the application's listeners get what the gateway does not take.
  const appRequestListeners = attached ? (server.listeners('request') as ((req: IncomingMessage, res: ServerResponse) => void)[]) : [];
  const appUpgradeListeners = attached ? (server.listeners('upgrade') as ((req: IncomingMessage, socket: Duplex, head: Buffer) => void)[]) : [];

  function passRequest(req: IncomingMessage, res: ServerResponse): void {
    if (appRequestListeners.length === 0) {
      sendError(res, new WarrenError('NOT_FOUND', `nothing serves ${req.url ?? ''}`), log);
      return;
    }
    for (const listener of appRequestListeners) listener.call(server, req, res);
  }

  function passUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    if (appUpgradeListeners.length === 0) {
      rejectUpgrade(socket, new WarrenError('NOT_FOUND', `no WebSocket endpoint ${req.url ?? ''}`));
      return;
    }
    for (const listener of appUpgradeListeners) listener.call(server, req, socket, head);
  }

  /** Attached: whether a request is the gateway's to look at (push routes and `/_warren/*`). */
  function claims(req: IncomingMessage, upgrading: boolean): boolean {
    const target = req.url ?? '';
    const q = target.indexOf('?');
    const path = q < 0 ? target : target.slice(0, q);
    if (path.startsWith(PATHS.prefix)) return !custom;
    if (!path.startsWith('/') || !isPushRoute(path)) return false;
    return !custom || upgrading || (req.method === 'GET' && wantsEventStream(req));
  }

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => (claims(req, false) ? handle(req, res) : passRequest(req, res));
  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => (claims(req, true) ? upgrade(req, socket, head) : passUpgrade(req, socket, head));
  if (attached) {
    server.removeAllListeners('request');
    server.removeAllListeners('upgrade');
    server.on('request', onRequest);
    server.on('upgrade', onUpgrade);
    start().catch((err: unknown) => log.error('broker start failed', { error: String(err) }));
  } else {
    server.on('upgrade', upgrade);
  }
  if (!attached) server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    sendError(res, new WarrenError('EXPECTATION_FAILED', `unsupported Expect: ${String(req.headers.expect).slice(0, 64)}`), log);
  });
  if (!attached) server.on('connect', (_req: IncomingMessage, socket: Socket) => {
    const body = JSON.stringify(new WarrenError('METHOD_NOT_ALLOWED', 'CONNECT is not supported').toJSON());
    socket.on('error', () => undefined);
    socket.end(`HTTP/1.1 405 Method Not Allowed\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
  });
  if (!attached) server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    const tooLarge = err.code === 'HPE_HEADER_OVERFLOW';
    const error = tooLarge
      ? new WarrenError('HEADERS_TOO_LARGE', 'request headers are too large')
      : new WarrenError('INVALID_REQUEST', 'malformed HTTP request');
    const body = JSON.stringify(error.toJSON());
    socket.end(
      `HTTP/1.1 ${error.status} ${tooLarge ? 'Request Header Fields Too Large' : 'Bad Request'}\r\n` +
        `content-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
  });

  return {
    options,
    server,
    broker,
    connections,
    handle,
    stats,
    start,
    publish,
    async listen(): Promise<AddressInfo> {
      await start();
      if (!server.listening) await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(options.port, options.host, () => {
          server.off('error', reject);
          resolve();
        });
      });
      const address = server.address() as AddressInfo;
      log.info('gateway listening', { port: address.port, host: address.address, broker: broker.kind });
      return address;
    },
    close(): Promise<void> {
      closing ??= (async () => {
        longPoll.shutdown();
        readyWait?.fail(new WarrenError('BROKER_UNAVAILABLE', 'the gateway is shutting down'));
        const open = [...connections];
        await Promise.all(open.map((conn) => conn.shutdown(1000)));
        await fanOut.close();
        if (attached) {
          // The application keeps its server, with its own listeners back.
          server.off('request', onRequest);
          server.off('upgrade', onUpgrade);
          for (const listener of appRequestListeners) server.on('request', listener);
          for (const listener of appUpgradeListeners) server.on('upgrade', listener);
        }
        // Read before close(): afterwards `listening` is already false.
        const wasListening = !attached && server.listening;
        const closed = wasListening ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
        // Answered polls and streams finish writing; each keep-alive socket
        // goes as soon as it is idle, and whatever is left after 2 s is cut.
        server.closeIdleConnections();
        const sweep = setInterval(() => server.closeIdleConnections(), 50);
        const force = setTimeout(() => server.closeAllConnections(), 2000);
        await closed;
        clearInterval(sweep);
        clearTimeout(force);
        // onClose may still publish (a chat's "left"): give it time before the broker goes.
        await Promise.race([Promise.all(open.map((conn) => conn.settled)), new Promise((resolve) => setTimeout(resolve, 2000).unref())]);
        queues.close();
        queueBudget.close();
        await app.close();
        await broker.close();
      })();
      return closing;
    },
  };
}

/** The first value of a forwarding header (`a, b` when proxies appended: `a` is the outermost). */
function firstHop(value: string | string[] | undefined): string | undefined {
  const first = (Array.isArray(value) ? value[0] : value)?.split(',')[0]?.trim();
  return first === undefined || first === '' ? undefined : first;
}

/** Prefixes the per-identity cap's key of an id nobody vouched for (a newline is in no consumer id). */
const UNVOUCHED = '\n';

/** The identity an embedding application's consumer id names: the part before "/". */
function identityOf(consumerId: string | undefined): string | undefined {
  return consumerId?.split('/')[0];
}

/** Response headers as `name: value` lines for the WebSocket handshake. */
function headerLines(headers: OutgoingHttpHeaders): string[] {
  const lines: string[] = [];
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) lines.push(`${name}: ${String(v)}`);
  }
  return lines;
}
