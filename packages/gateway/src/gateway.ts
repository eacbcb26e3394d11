import { createServer, type IncomingMessage, type OutgoingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { HEADERS, parseChannel, PATHS, WarrenError } from '@warren/protocol';
import type { Broker, BrokerStats } from './broker/broker.js';
import { MemoryBroker } from './broker/memory.js';
import { RabbitBroker } from './broker/rabbitmq.js';
import { ConsumerQueues } from './consumer-queues.js';
import { sendError, sendJson } from './http.js';
import { consumerCookie, resolveConsumer } from './identity.js';
import { createLogger, type Logger } from './logger.js';
import { LongPoll, type LongPollStats } from './long-poll.js';
import { normalizeOptions, type GatewayOptions, type NormalizedOptions } from './options.js';
import { authorizePublisher, handlePublish } from './publish-endpoint.js';

/** Longest request target (path and query) accepted. */
export const MAX_URL_LENGTH = 2048;

export interface GatewayStats {
  broker: BrokerStats;
  longPoll: LongPollStats;
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
  let closing: Promise<void> | undefined;

  const stats = (): GatewayStats => ({ broker: broker.stats(), longPoll: { ...longPoll.stats }, knownQueues: queues.size });

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // Node's own check would answer with an empty body; this one answers JSON.
    if (req.headers.host === undefined && req.httpVersionMinor >= 1) throw new WarrenError('INVALID_REQUEST', 'the Host header is missing');
    const target = req.url ?? '';
    if (target.length > MAX_URL_LENGTH) throw new WarrenError('URI_TOO_LONG', `the URL is longer than ${MAX_URL_LENGTH} characters`);
    if (!target.startsWith('/')) throw new WarrenError('INVALID_REQUEST', 'the request target must be a path');
    const q = target.indexOf('?');
    // The raw path, not a normalised one: `/a/../b` must be refused, not resolved.
    const path = q < 0 ? target : target.slice(0, q);
    let query: URLSearchParams;
    try {
      query = new URLSearchParams(q < 0 ? '' : target.slice(q + 1));
    } catch {
      throw new WarrenError('INVALID_REQUEST', 'the query string cannot be parsed');
    }
    if (path.startsWith(PATHS.prefix) || path === PATHS.prefix.slice(0, -1)) return internal(req, res, path, query);
    const channel = parseChannel(path);
    if (req.method !== 'GET') {
      res.setHeader('allow', 'GET');
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

  async function subscribe(req: IncomingMessage, res: ServerResponse, channel: string, query: URLSearchParams): Promise<void> {
    const consumer = resolveConsumer(req, query);
    const headers: OutgoingHttpHeaders = { [HEADERS.consumerId]: consumer.id, 'cache-control': 'no-store' };
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
    await longPoll.handle(res, consumer.id, channel, timeoutMs, headers);
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
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        // Answered polls finish writing, then their sockets go.
        const force = setTimeout(() => server.closeAllConnections(), 2000);
        force.unref();
        if (server.listening) await closed;
        clearTimeout(force);
        queues.close();
        await broker.close();
      })();
      return closing;
    },
  };
}
