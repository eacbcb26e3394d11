import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { PATHS, WarrenError } from '@warren/protocol';
import { noteAccess, type AccessLog } from './access-log.js';
import { parseMissedQuery, type Audit } from './audit.js';
import type { Upstream } from './upstream.js';
import type { Broker } from './broker/broker.js';
import type { Cors } from './cors.js';
import { sendError, sendJson } from './http.js';
import type { Logger } from './logger.js';
import type { PushFront } from './push/open.js';
import type { RouteCounter } from './broker/route-count.js';
import { authorizePublisher, handlePublish, handlePublishBatch, type PublishLimits } from './publish-endpoint.js';
import { REQUEST_ID_HEADER } from './request-id.js';
import { parseTarget, wantsEventStream, type Routes } from './routes.js';
import type { LongPollFront } from './transports/long-poll.js';
import { refusePattern, type WildcardRoutes } from './wildcards.js';

export interface RouterDeps {
  log: Logger;
  access: AccessLog;
  routes: Routes;
  /** The decider is the application's (`onUpgrade`): only SSE streams are the gateway's. */
  custom: boolean;
  upstream: Upstream;
  cors: Cors;
  broker: Broker;
  polls: LongPollFront;
  push: PushFront;
  /** `undefined` without `--audit-routes`. */
  audit: Audit | undefined;
  /** Which channels may be subscribed by pattern (`--wildcard-routes`). */
  wildcards: WildcardRoutes;
  publishToken: string | undefined;
  maxMessageBytes: number;
  /** Bounds of `POST /_warren/publish/batch`. */
  publishBatch: Pick<PublishLimits, 'batchMaxMessages' | 'batchMaxBytes'>;
  /** Makes a channel ready for a publish (binds a logged channel to its log). */
  preparePublish(channel: string): Promise<unknown>;
  /** Counts the queues and logs a publish reached (the answer's `queues` and `routes`); none: no count. */
  routeCounter: RouteCounter | undefined;
  /** `--push-routes` as given, for error messages. */
  pushRoutes: string | undefined;
  /** A request the gateway does not take, when attached to an application's server. */
  passRequest?: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  /** `true` once the gateway drains or closes: not ready for new clients. */
  stopping(): boolean;
  stats(): unknown;
  /** The members of a presence channel. @throws WarrenError `INVALID_CHANNEL`, `INVALID_REQUEST` */
  presence(channel: string): unknown;
}

/**
 * The gateway's HTTP routes: `/_warren/*` (publish, probes, stats), channel
 * paths (long-poll, SSE), and everything else to the application (proxied,
 * or the attached server's own listeners), else 404.
 */
export class Router {
  /** Requests to the publish endpoint, by result: accepted (200), refused (4xx), failed (5xx). */
  readonly publishes = { accepted: 0, refused: 0, failed: 0 };

  constructor(private readonly deps: RouterDeps) {}

  /** The request listener: every error is answered as JSON with its code. */
  handle(req: IncomingMessage, res: ServerResponse): void {
    const requestId = this.deps.upstream.requestId(req);
    // A stream's head carries the id (and CORS) in the one `writeHead` that opens it: a header set
    // on the response before would keep Node's map of response headers for the stream's life.
    if (!(req.method === 'GET' && wantsEventStream(req))) res.setHeader(REQUEST_ID_HEADER, requestId);
    this.deps.access.request(req, res, requestId);
    this.route(req, res).catch((err: unknown) => {
      // A client that hung up mid-upload is not the gateway's error.
      if (req.destroyed && !(err instanceof WarrenError)) return;
      this.tag(req, res);
      sendError(res, err, this.deps.log);
      // A refused request body is not read: drop the connection once answered.
      if (!req.complete) res.once('finish', () => req.destroy());
    });
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const { upstream, custom, cors } = this.deps;
    // Node's own check would answer with an empty body; this one answers JSON.
    if (req.headers.host === undefined && req.httpVersionMinor >= 1) throw new WarrenError('INVALID_REQUEST', 'the Host header is missing');
    const { path, query } = parseTarget(req);
    if (path.startsWith(PATHS.prefix) || path === PATHS.prefix.slice(0, -1)) return this.internal(req, res, path, query);
    if (!this.deps.routes.isPushRoute(path)) return this.decline(req, res, path);
    // On a push route, what is not a subscription goes to the app (when there is one).
    if (upstream.proxying && req.method !== 'GET' && req.method !== 'OPTIONS') return upstream.forward(req, res);
    // An application's handlers take streams only; polls need the default handler.
    if (custom && !(req.method === 'GET' && wantsEventStream(req))) return this.decline(req, res, path);
    const channel = custom ? undefined : this.deps.wildcards.parse(path);
    if (req.method === 'OPTIONS') {
      noteAccess(req, { transport: 'preflight' });
      return cors.preflight(req, res);
    }
    if (req.method !== 'GET' || !wantsEventStream(req)) {
      cors.apply(req, res);
      if (req.method !== 'GET') {
        res.setHeader('allow', 'GET, OPTIONS');
        throw new WarrenError('METHOD_NOT_ALLOWED', `${req.method} is not allowed on a channel; use GET`);
      }
      noteAccess(req, { transport: 'long-poll' });
      refusePattern(channel!, 'a long-poll');
      return this.deps.polls.serve(req, res, channel!, query);
    }
    noteAccess(req, { transport: 'sse' });
    const head: OutgoingHttpHeaders = { [REQUEST_ID_HEADER]: upstream.requestId(req), ...cors.headersFor(req) };
    let opened: boolean;
    try {
      opened = await this.deps.push.open('sse', req, path, query, { res }, head);
    } catch (err) {
      // A refused stream's answer carries the head it would have had.
      setHeaders(res, head);
      throw err;
    }
    if (opened) return;
    setHeaders(res, head);
    await this.decline(req, res, path);
  }

  /** Sets the request id on a response that does not carry it yet (a stream's, refused or passed on). */
  private tag(req: IncomingMessage, res: ServerResponse): void {
    if (!res.headersSent && !res.hasHeader(REQUEST_ID_HEADER)) res.setHeader(REQUEST_ID_HEADER, this.deps.upstream.requestId(req));
  }

  /** A request the gateway does not serve: the application's (attached or upstream), else 404. */
  private decline(req: IncomingMessage, res: ServerResponse, path: string): void | Promise<void> {
    const { passRequest, upstream, custom } = this.deps;
    this.tag(req, res);
    if (passRequest !== undefined) {
      noteAccess(req, { transport: 'app' });
      return passRequest(req, res);
    }
    if (upstream.proxying) return upstream.forward(req, res);
    throw new WarrenError(
      'NOT_FOUND',
      custom ? `no handler for ${path}` : `${path} is not under the push routes (${this.deps.pushRoutes})`,
    );
  }

  private async publish(req: IncomingMessage, res: ServerResponse, query: URLSearchParams, batch: boolean): Promise<void> {
    const { broker, publishToken, maxMessageBytes, preparePublish, routeCounter, publishBatch, log } = this.deps;
    const via = { broker, prepare: preparePublish, counter: routeCounter };
    try {
      if (batch) await handlePublishBatch(req, res, via, publishToken, { maxMessageBytes, ...publishBatch }, log);
      else await handlePublish(req, res, query, via, publishToken, maxMessageBytes);
      this.publishes.accepted++;
    } catch (err) {
      if (err instanceof WarrenError && err.status !== null && err.status < 500) this.publishes.refused++;
      else this.publishes.failed++;
      throw err;
    }
  }

  private async internal(req: IncomingMessage, res: ServerResponse, path: string, query: URLSearchParams): Promise<void> {
    const { broker, publishToken } = this.deps;
    this.tag(req, res);
    const allow = (method: string): void => {
      if (req.method !== method) {
        res.setHeader('allow', method);
        throw new WarrenError('METHOD_NOT_ALLOWED', `use ${method} on ${path}`);
      }
    };
    switch (path) {
      case PATHS.publish:
        noteAccess(req, { transport: 'publish' });
        allow('POST');
        return this.publish(req, res, query, false);
      case PATHS.publishBatch:
        noteAccess(req, { transport: 'publish' });
        allow('POST');
        return this.publish(req, res, query, true);
      case PATHS.live:
        // Never asks the broker: a broker outage must not get the process restarted.
        noteAccess(req, { transport: 'probe' });
        allow('GET');
        sendJson(res, 200, { status: 'ok' });
        return;
      case PATHS.ready:
      case PATHS.health: {
        noteAccess(req, { transport: 'probe' });
        allow('GET');
        const draining = this.deps.stopping();
        const ready = broker.ready && !draining;
        const status = ready ? 'ok' : draining ? 'draining' : 'unavailable';
        sendJson(res, ready ? 200 : 503, { status, broker: broker.kind, brokerReady: broker.ready, draining });
        return;
      }
      case PATHS.stats:
        noteAccess(req, { transport: 'stats' });
        allow('GET');
        authorizePublisher(req, publishToken);
        sendJson(res, 200, this.deps.stats());
        return;
      case PATHS.presence: {
        noteAccess(req, { transport: 'stats' });
        allow('GET');
        authorizePublisher(req, publishToken);
        const channels = query.getAll('channel');
        if (channels.length !== 1) throw new WarrenError('INVALID_REQUEST', 'name one channel: ?channel=/rooms/lobby');
        const channel = channels[0]!;
        sendJson(res, 200, { channel, members: this.deps.presence(channel) });
        return;
      }
      case PATHS.missed: {
        noteAccess(req, { transport: 'stats' });
        allow('GET');
        authorizePublisher(req, publishToken);
        const { audit } = this.deps;
        if (audit === undefined) throw new WarrenError('NOT_FOUND', 'no audit: start the gateway with --audit-routes (docs/audit.md)');
        const page = await audit.query(parseMissedQuery(query));
        sendJson(res, 200, page);
        return;
      }
      default:
        throw new WarrenError('NOT_FOUND', `no endpoint ${path}`);
    }
  }
}

/** Sets `headers` on a response whose head is not written yet (`vary` added to what is there). */
function setHeaders(res: ServerResponse, headers: OutgoingHttpHeaders): void {
  if (res.headersSent) return;
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    if (name === 'vary') res.appendHeader(name, String(value));
    else res.setHeader(name, value);
  }
}
