import { createServer, type IncomingMessage, type OutgoingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { HEADERS, parseChannel, PATHS, tokenAllows, verifyChannelToken, WarrenError } from '@warren/protocol';
import type { Broker, BrokerStats } from './broker/broker.js';
import { MemoryBroker } from './broker/memory.js';
import { RabbitBroker } from './broker/rabbitmq.js';
import { App } from './app.js';
import { ConnectionLimits } from './limits.js';
import { ConsumerQueues } from './consumer-queues.js';
import { Cors } from './cors.js';
import { sendError, sendJson } from './http.js';
import { consumerCookie, findConsumer, findLastEventId, resolveConsumer } from './identity.js';
import { FanOut, type FanOutStats } from './streams/fan-out.js';
import { Streams, type StreamHandle } from './streams/streams.js';
import { SseStream } from './transports/sse.js';
import { WebSocketTransport } from './transports/websocket.js';
import type { Duplex } from 'node:stream';
import type { Identity } from './app.js';
import { createLogger, type Logger } from './logger.js';
import { LongPoll, type LongPollStats } from './long-poll.js';
import { normalizeOptions, parseOrigins, type GatewayOptions, type NormalizedOptions } from './options.js';
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

/**
 * A running gateway: an HTTP server, a broker and the long-poll endpoint.
 *
 * @example
 * const gateway = createGateway({ port: 4000 });
 * await gateway.listen();
 */
export interface Gateway {
  readonly options: NormalizedOptions;
  readonly server: Server;
  readonly broker: Broker;
  /** Connects the broker and starts listening. Resolves with the bound address. */
  listen(): Promise<AddressInfo>;
  /** Answers waiting polls, stops listening and disconnects. Idempotent. */
  close(): Promise<void>;
  stats(): GatewayStats;
  /** The request handler, for mounting in another server. */
  handle(req: IncomingMessage, res: ServerResponse): void;
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
export function createGateway(input: GatewayOptions = {}): Gateway {
  const options = normalizeOptions(input);
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
  const websockets = new WebSocketTransport(streams, log, {
    maxPayload: options.wsMaxPayload,
    pingIntervalMs: options.wsPingIntervalMs,
    maxSubscriptions: options.wsMaxSubscriptions,
  });
  const sseStreams = new Set<SseStream>();
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
  let closing: Promise<void> | undefined;

  const stats = (): GatewayStats => ({
    broker: broker.stats(),
    longPoll: { ...longPoll.stats },
    streams: { sse: sseStreams.size, websocket: websockets.size, identified: streams.identified },
    fanOut: { ...fanOut.stats },
    knownQueues: queues.size,
  });

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // Node's own check would answer with an empty body; this one answers JSON.
    if (req.headers.host === undefined && req.httpVersionMinor >= 1) throw new WarrenError('INVALID_REQUEST', 'the Host header is missing');
    const { path, query } = parseTarget(req);
    if (path.startsWith(PATHS.prefix) || path === PATHS.prefix.slice(0, -1)) return internal(req, res, path, query);
    if (!isPushRoute(path)) {
      if (app.proxying) return app.forward(req, res);
      throw new WarrenError('NOT_FOUND', `${path} is not under the push routes (${options.pushRoutes})`);
    }
    // On a push route, what is not a subscription goes to the app (when there is one).
    if (app.proxying && req.method !== 'GET' && req.method !== 'OPTIONS') return app.forward(req, res);
    const channel = parseChannel(path);
    if (req.method === 'OPTIONS') return cors.preflight(req, res);
    cors.apply(req, res);
    if (req.method !== 'GET') {
      res.setHeader('allow', 'GET, OPTIONS');
      throw new WarrenError('METHOD_NOT_ALLOWED', `${req.method} is not allowed on a channel; use GET`);
    }
    return subscribe(req, res, channel, query);
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
    if (identity === undefined) return { consumerId: requested, identity: undefined };
    return { consumerId: requested === undefined ? identity : `${identity}/${requested}`, identity };
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

  /** Counts a subscription against the caps; the identity is the part before "/" of the consumer id. */
  function acquireSlot(req: IncomingMessage, consumerId: string | undefined): () => void {
    return limits.acquire(app.clientAddress(req), consumerId?.split('/')[0]);
  }

  /** Errors that mean "this client may not read this channel (any more)". */
  function isRefusal(err: unknown): boolean {
    return err instanceof WarrenError && ['UNAUTHORIZED', 'FORBIDDEN', 'TOKEN_EXPIRED', 'INVALID_TOKEN'].includes(err.code);
  }

  async function subscribe(req: IncomingMessage, res: ServerResponse, channel: string, query: URLSearchParams): Promise<void> {
    if (/\btext\/event-stream\b/.test(req.headers.accept ?? '')) return serveSse(req, res, channel, query);
    const requested = findConsumer(req, query);
    const { consumerId: vouched } = await identify(req, findToken(req, query), channel, requested);
    const consumer = vouched !== undefined ? { id: vouched, assigned: false } : resolveConsumer(req, query);
    // The id the client can send back (not the identity prefix, which is the app's to give).
    const shown = requested ?? (vouched === undefined ? consumer.id : undefined);
    const headers: OutgoingHttpHeaders = { 'cache-control': 'no-store' };
    if (shown !== undefined) headers[HEADERS.consumerId] = shown;
    if (consumer.assigned) headers['set-cookie'] = consumerCookie(consumer.id, false);
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
      await longPoll.handle(res, consumer.id, channel, timeoutMs, headers);
    } finally {
      release();
    }
  }

  /** `GET /<channel>` with `Accept: text/event-stream`. */
  async function serveSse(req: IncomingMessage, res: ServerResponse, channel: string, query: URLSearchParams): Promise<void> {
    const requested = findConsumer(req, query);
    const lastEventId = findLastEventId(req, query);
    const token = findToken(req, query);
    const { consumerId } = await identify(req, token, channel, requested);
    if (closing !== undefined) throw new WarrenError('BROKER_UNAVAILABLE', 'the gateway is shutting down');
    if (!broker.ready) throw new WarrenError('BROKER_UNAVAILABLE', 'the broker is not connected');
    // Subscribe before committing to a 200: a refusal is still a JSON error,
    // and a client that sees the stream open misses nothing published after.
    const release = acquireSlot(req, consumerId);
    try {
      await prepareStream(channel, consumerId);
    } catch (err) {
      release();
      throw err;
    }
    if (res.destroyed) {
      release();
      return;
    }
    const headers: OutgoingHttpHeaders = requested === undefined ? {} : { [HEADERS.consumerId]: requested };
    const sse = new SseStream(res, headers, { heartbeatMs: options.sseHeartbeatMs, retryMs: options.sseRetryMs });
    sseStreams.add(sse);
    let handle: StreamHandle | undefined;
    let gone = false;
    // Authorized again from time to time: a stream the app (or the token) no longer allows is closed.
    const reauth = reauthorizing
      ? setInterval(() => {
          identify(req, token, channel, requested, true).catch((err: unknown) => {
            if (isRefusal(err)) sse.close('revoked');
            else log.warn('re-authorization failed; the stream stays open', { error: (err as Error).message });
          });
        }, options.reauthIntervalMs)
      : undefined;
    reauth?.unref();
    res.once('close', () => {
      gone = true;
      clearInterval(reauth);
      release();
      sseStreams.delete(sse);
      void handle?.stop();
    });
    try {
      handle = await streams.open({
        channel,
        consumerId,
        lastEventId,
        sink: sse,
        // EventSource reconnects by itself and sends Last-Event-ID.
        onEnd: () => sse.close('broker-unavailable'),
      });
    } catch (err) {
      log.warn('stream could not start', { error: err instanceof Error ? err.message : String(err) });
      sse.close('broker-unavailable');
      return;
    }
    if (gone) await handle.stop();
  }

  /** Declares the consumer's queue, or starts the channel's fan-out, before a stream opens. */
  async function prepareStream(channel: string, consumerId: string | undefined): Promise<void> {
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
    const retry = error.code === 'BROKER_UNAVAILABLE' ? 'retry-after: 1\r\n' : '';
    socket.end(
      `HTTP/1.1 ${error.status} ${error.code}\r\ncontent-type: application/json; charset=utf-8\r\n${retry}content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
  }

  async function upgradeAsync(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    socket.on('error', () => undefined);
    if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket') throw new WarrenError('INVALID_REQUEST', 'only WebSocket upgrades are supported');
    const { path, query } = parseTarget(req);
    if (req.method !== 'GET') throw new WarrenError('METHOD_NOT_ALLOWED', 'a WebSocket upgrade is a GET');
    let channel: string | undefined;
    if (path !== PATHS.socket) {
      if (path.startsWith(PATHS.prefix)) throw new WarrenError('NOT_FOUND', `no WebSocket endpoint ${path}`);
      if (!isPushRoute(path)) {
        // The application's own WebSocket (outside the push routes): tunnel it.
        if (app.proxying) return app.tunnel(req, socket, head);
        throw new WarrenError('NOT_FOUND', `${path} is not under the push routes (${options.pushRoutes})`);
      }
      channel = parseChannel(path);
    }
    checkSocketOrigin(req);
    const requested = findConsumer(req, query);
    const lastEventId = findLastEventId(req, query);
    const token = findToken(req, query);
    if (closing !== undefined || !broker.ready) throw new WarrenError('BROKER_UNAVAILABLE', 'the broker is not connected');
    const consumerId = channel === undefined ? requested : (await identify(req, token, channel, requested)).consumerId;
    const release = acquireSlot(req, consumerId);
    try {
      if (channel !== undefined) await prepareStream(channel, consumerId);
    } catch (err) {
      release();
      throw err;
    }
    if (socket.destroyed) {
      release();
      return;
    }
    websockets.upgrade(req, socket, head, {
      channel,
      lastEventId,
      identify: (c) => identify(req, token, c, requested),
      sendToApp: app.proxying ? (c, who, body, contentType) => app.send(req, c, who, body, contentType) : undefined,
      reauthorize: reauthorizing ? (c) => identify(req, token, c, requested, true).then(() => true, (err: unknown) => !isRefusal(err)) : undefined,
      reauthIntervalMs: options.reauthIntervalMs,
      onClose: release,
    });
  }

  /**
   * Cross-site WebSocket hijacking: browsers send cookies with a WebSocket
   * from any page. With `--cors-origins`, only those origins (and the
   * gateway's own) may open one; with `--auth-url` and no list, only the
   * gateway's own origin.
   */
  function checkSocketOrigin(req: IncomingMessage): void {
    const origin = req.headers.origin;
    if (origin === undefined || cors.allowsAny) return;
    let sameHost = false;
    try {
      sameHost = new URL(origin).host === req.headers.host;
    } catch {
      // an Origin that is not a URL is not the same host
    }
    if (sameHost || cors.allows(origin)) return;
    if (cors.configured || app.authorizing) throw new WarrenError('ORIGIN_NOT_ALLOWED', 'this origin may not open a WebSocket here');
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

  const server = createServer({ maxHeaderSize: 16 * 1024, requireHostHeader: false }, handle);
  server.on('upgrade', upgrade);
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    sendError(res, new WarrenError('EXPECTATION_FAILED', `unsupported Expect: ${String(req.headers.expect).slice(0, 64)}`), log);
  });
  server.on('connect', (_req: IncomingMessage, socket: Socket) => {
    const body = JSON.stringify(new WarrenError('METHOD_NOT_ALLOWED', 'CONNECT is not supported').toJSON());
    socket.on('error', () => undefined);
    socket.end(`HTTP/1.1 405 Method Not Allowed\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
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
    handle,
    stats,
    async listen(): Promise<AddressInfo> {
      await broker.start();
      await new Promise<void>((resolve, reject) => {
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
        websockets.shutdown();
        for (const sse of sseStreams) sse.close('shutdown');
        await fanOut.close();
        // Read before close(): afterwards `listening` is already false.
        const wasListening = server.listening;
        const closed = wasListening ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
        // Answered polls and streams finish writing; each keep-alive socket
        // goes as soon as it is idle, and whatever is left after 2 s is cut.
        server.closeIdleConnections();
        const sweep = setInterval(() => server.closeIdleConnections(), 50);
        const force = setTimeout(() => server.closeAllConnections(), 2000);
        await closed;
        clearInterval(sweep);
        clearTimeout(force);
        queues.close();
        await app.close();
        await broker.close();
      })();
      return closing;
    },
  };
}
