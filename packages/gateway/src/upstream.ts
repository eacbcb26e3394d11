import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Pool } from 'undici';
import { HEADERS, parseConsumerId, WarrenError } from '@warren/protocol';
import { noteAccess } from './access-log.js';
import { abortHandshake } from './http.js';
import type { Logger } from './logger.js';
import { plainAddress, TrustedProxies } from './proxies.js';
import { REQUEST_ID_HEADER, requestId as chooseRequestId } from './request-id.js';
import type { RequestView } from './request-view.js';

/** Hop-by-hop headers (RFC 9110 §7.6.1): never forwarded. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/**
 * Request headers a client may not set: the gateway alone tells the app who
 * a consumer is. (Forged identity headers are the classic hole of proxied auth.)
 */
const IDENTITY_HEADERS = ['warren-consumer-id', 'warren-identity', 'warren-channel', 'warren-requested-consumer-id'];

/**
 * Request headers that say who the client is and how it came, which the
 * gateway sets itself; a client's own are kept (extended) only from
 * `--trusted-proxies`. (`X-Forwarded-*` are handled alike.)
 */
const PROXY_HEADERS = ['forwarded', 'x-real-ip', REQUEST_ID_HEADER];

export interface UpstreamOptions {
  upstream: string | undefined;
  /** Path template of client messages (`{channel}` stands for the channel path). */
  messagePath: string;
  messageMethod: 'POST' | 'PUT' | 'PATCH';
  authUrl: string | undefined;
  timeoutMs: number;
  authCacheMs: number;
  trustedProxies: string | undefined;
}

/** The application's answer to a client's WebSocket message. */
export interface AppReply {
  status: number;
  contentType: string | undefined;
  body: Buffer;
}

/** Who reads a channel: the queue's owner, and the identity the app (or a token) vouched for. */
export interface Identity {
  /** `<identity>`, `<identity>/<client id>`, the client's own id, or none (anonymous). */
  consumerId: string | undefined;
  /** Set only when the application or a signed token vouched for it; never chosen by the client. */
  identity: string | undefined;
}

/** What the application decided about a subscription. */
export interface AuthDecision {
  /** The identity the app vouched for (`Warren-Consumer-Id` in its answer), if any. */
  identity: string | undefined;
}

/**
 * The web application Warren sits in front of: requests that are not
 * subscriptions are proxied to it (bodies streamed both ways), and
 * subscriptions are authorized by it (`authUrl`). One undici pool per origin.
 */
/** A call to the application that the metrics time: an auth check, or a WebSocket client's message. */
export type UpstreamCall = 'auth' | 'message';
/** How it went: `allowed` or `refused` (401/403) for auth, `answered` (any status) for a message, `error` (unreachable, timed out, or an auth answer that refuses by failing closed). */
export type UpstreamResult = 'allowed' | 'refused' | 'answered' | 'error';
export type UpstreamTiming = (call: UpstreamCall, result: UpstreamResult, seconds: number) => void;

export class Upstream {
  /** Told how long each auth check and message took (set by the metrics; one call per request, never per delivery). */
  timing: UpstreamTiming | undefined;
  private readonly pools = new Map<string, Pool>();
  private readonly trusted: TrustedProxies;
  private readonly authCache = new Map<string, { until: number; decision: AuthDecision | WarrenError }>();

  constructor(
    private readonly options: UpstreamOptions,
    private readonly log: Logger,
  ) {
    this.trusted = new TrustedProxies(options.trustedProxies);
  }

  get proxying(): boolean {
    return this.options.upstream !== undefined;
  }

  get authorizing(): boolean {
    return this.options.authUrl !== undefined;
  }

  /**
   * Tunnels a WebSocket upgrade outside the push routes to the application:
   * the handshake is sent on with `X-Forwarded-*` set and identity headers
   * removed. Only once the application answered `101` do bytes flow both
   * ways; until then nothing else the client sent reaches it (`head`
   * included), so that a client cannot slip a second, raw request past the
   * gateway on a connection the app kept as plain HTTP. Any other answer is
   * relayed and the socket closed.
   */
  tunnel(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    noteAccess(req, { transport: 'websocket-proxy' });
    const upstream = new URL(this.options.upstream!);
    const id = this.requestId(req);
    const headers = this.forwardedHeaders(req);
    headers.host = upstream.host;
    headers.connection = 'Upgrade';
    headers.upgrade = String(req.headers.upgrade ?? 'websocket');
    const request = (upstream.protocol === 'https:' ? httpsRequest : httpRequest)({
      host: upstream.hostname.replace(/^\[(.*)\]$/, '$1'),
      port: Number(upstream.port || (upstream.protocol === 'https:' ? 443 : 80)),
      ...(isIP(upstream.hostname) === 0 && !upstream.hostname.startsWith('[') ? { servername: upstream.hostname } : {}),
      method: 'GET',
      path: req.url ?? '/',
      headers,
      agent: false,
      timeout: this.options.timeoutMs,
    });
    const fail = (err: Error): void => {
      const timedOut = err.message === 'timeout';
      if (!timedOut)
        this.log.warn('the application is unreachable for a WebSocket upgrade', {
          error: (err as NodeJS.ErrnoException).code ?? err.message,
        });
      const error = timedOut
        ? new WarrenError('UPSTREAM_TIMEOUT', 'the application did not answer in time')
        : new WarrenError('UPSTREAM_UNAVAILABLE', 'the application is unreachable');
      if (!socket.destroyed) noteAccess(req, { status: abortHandshake(socket, error, this.log, { [REQUEST_ID_HEADER]: id }) });
    };
    request.once('timeout', () => request.destroy(new Error('timeout')));
    request.once('error', fail);
    socket.once('close', () => request.destroy());
    request.once('upgrade', (answer: IncomingMessage, app: Socket, appHead: Buffer) => {
      request.off('error', fail);
      app.setTimeout(0);
      noteAccess(req, { status: 101 });
      const idLine = answer.headers[REQUEST_ID_HEADER] === undefined ? `${REQUEST_ID_HEADER}: ${id}\r\n` : '';
      socket.write(`HTTP/1.1 101 ${answer.statusMessage ?? 'Switching Protocols'}\r\n${rawHeaderLines(answer.rawHeaders)}${idLine}\r\n`);
      if (appHead.length > 0) socket.write(appHead);
      if (head.length > 0) app.write(head);
      // Past the switch, a dead peer on either side ends both.
      app.on('error', () => socket.destroy());
      socket.on('error', () => app.destroy());
      app.pipe(socket);
      socket.pipe(app);
      socket.once('close', () => app.destroy());
      app.once('close', () => socket.destroy());
    });
    request.once('response', (answer: IncomingMessage) => {
      // Not switching: relay the answer, close-delimited, and never read from the client.
      request.off('error', fail);
      request.on('error', () => socket.destroy());
      noteAccess(req, { status: answer.statusCode });
      relayAnswer(answer, socket, id);
    });
    request.end();
  }

  /** The client's address: the right-most untrusted `X-Forwarded-For` hop when the peer is a trusted proxy, else the peer. */
  clientAddress(req: RequestView): string {
    const forwarded = req.headers['x-forwarded-for'];
    return this.trusted.clientAddress(req.socket.remoteAddress ?? '', Array.isArray(forwarded) ? forwarded.join(',') : forwarded);
  }

  /** Whether the client reached the site over https: TLS to the gateway, or a trusted proxy's `X-Forwarded-Proto: https`. */
  secure(req: RequestView): boolean {
    if ((req.socket as { encrypted?: boolean }).encrypted === true) return true;
    const proto = req.headers['x-forwarded-proto'];
    const first = (Array.isArray(proto) ? proto[0] : proto)?.split(',')[0]?.trim().toLowerCase();
    return first === 'https' && this.fromTrustedProxy(req);
  }

  /** The id of `req` (`X-Request-Id`): a trusted proxy's, else a new one; the same for every call. */
  requestId(req: RequestView): string {
    return chooseRequestId(req, this.trusted);
  }

  /** Whether `req` came from one of `--trusted-proxies` (whose forwarding headers are believed). */
  fromTrustedProxy(req: RequestView): boolean {
    return this.trusted.has(req.socket.remoteAddress ?? '');
  }

  /** Forwards `req` to the upstream and streams its answer back. */
  async forward(req: IncomingMessage, res: ServerResponse): Promise<void> {
    noteAccess(req, { transport: 'proxy' });
    const upstream = new URL(this.options.upstream!);
    const headers = this.forwardedHeaders(req);
    const hasBody =
      req.method !== 'GET' &&
      req.method !== 'HEAD' &&
      (req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined);
    let answer;
    try {
      answer = await this.pool(upstream).request({
        path: req.url ?? '/',
        method: (req.method ?? 'GET') as 'GET',
        headers,
        body: hasBody ? req : null,
        headersTimeout: this.options.timeoutMs,
        bodyTimeout: this.options.timeoutMs,
      });
    } catch (err) {
      throw this.upstreamError(err, 'the application');
    }
    const out: Record<string, string | string[]> = {};
    const drop = connectionTokens(answer.headers['connection']);
    for (const [name, value] of Object.entries(answer.headers)) {
      if (value === undefined || HOP_BY_HOP.has(name) || drop.has(name)) continue;
      out[name] = value;
    }
    res.writeHead(answer.statusCode, out);
    try {
      await pipeline(answer.body, res);
    } catch (err) {
      // The client or the app went away midway: nothing more to say to either.
      this.log.debug('proxied body interrupted', { error: (err as Error).message });
      res.destroy();
    }
  }

  /**
   * Asks the application whether this request may subscribe to `channel`:
   * `GET authUrl` with the client's cookies, `Authorization` and `Origin`,
   * plus `Warren-Channel` and the id the client asked for. 2xx allows (the
   * answer's `Warren-Consumer-Id` binds the consumer's identity); 401 and 403
   * are relayed; anything else, and no answer in time, refuses (fail closed).
   * Decisions are reused for `authCacheMs` per credentials and channel.
   * @throws WarrenError `UNAUTHORIZED`, `FORBIDDEN`, `UPSTREAM_UNAVAILABLE`, `UPSTREAM_TIMEOUT`
   */
  async authorize(req: RequestView, channel: string, requestedId: string | undefined, fresh = false): Promise<AuthDecision> {
    const key = createHash('sha256')
      .update([req.headers.cookie ?? '', req.headers.authorization ?? '', req.headers.origin ?? '', channel, requestedId ?? ''].join('\n'))
      .digest('base64url');
    const now = Date.now();
    const cached = fresh ? undefined : this.authCache.get(key);
    if (cached !== undefined && cached.until > now) {
      if (cached.decision instanceof WarrenError) throw cached.decision;
      return cached.decision;
    }
    const started = performance.now();
    const decision = await this.askApp(req, channel, requestedId).catch((err: unknown) => {
      if (err instanceof WarrenError && (err.code === 'UNAUTHORIZED' || err.code === 'FORBIDDEN')) return err;
      this.timed('auth', 'error', started);
      throw err; // app down or slow: not cached, the next request asks again
    });
    this.timed('auth', decision instanceof WarrenError ? 'refused' : 'allowed', started);
    if (this.options.authCacheMs > 0) {
      if (this.authCache.size >= 10_000) this.authCache.delete(this.authCache.keys().next().value!);
      this.authCache.set(key, { until: now + this.options.authCacheMs, decision });
    }
    if (decision instanceof WarrenError) throw decision;
    return decision;
  }

  /**
   * A WebSocket client's message, as an HTTP request to the application:
   * by default `POST <channel path>` (`messagePath`, `messageMethod`), with
   * the client's cookies and the consumer's
   * identity (`Warren-Consumer-Id`, `Warren-Channel`).
   * @throws WarrenError `UPSTREAM_UNAVAILABLE`, `UPSTREAM_TIMEOUT`
   */
  async send(req: RequestView, channel: string, who: Identity, body: Buffer, contentType: string): Promise<AppReply> {
    const upstream = new URL(this.options.upstream!);
    const headers: Record<string, string> = {
      ...this.forwardedHeaders(req, ['cookie', 'authorization', 'origin', 'user-agent']),
      'content-type': contentType,
      'warren-channel': channel,
    };
    // Two headers, each with one meaning: who owns the queue, and who the app vouched for.
    if (who.consumerId !== undefined) headers[HEADERS.warrenConsumerId] = who.consumerId;
    if (who.identity !== undefined) headers[HEADERS.identity] = who.identity;
    let answer;
    const started = performance.now();
    try {
      answer = await this.pool(upstream).request({
        path: this.options.messagePath.replaceAll('{channel}', channel),
        method: this.options.messageMethod,
        headers,
        body,
        headersTimeout: this.options.timeoutMs,
        bodyTimeout: this.options.timeoutMs,
      });
    } catch (err) {
      this.timed('message', 'error', started);
      throw this.upstreamError(err, 'the application');
    }
    const data = Buffer.from(await answer.body.arrayBuffer());
    this.timed('message', 'answered', started);
    const type = answer.headers['content-type'];
    return { status: answer.statusCode, contentType: typeof type === 'string' ? type : undefined, body: data };
  }

  private timed(call: UpstreamCall, result: UpstreamResult, started: number): void {
    this.timing?.(call, result, (performance.now() - started) / 1000);
  }

  async close(): Promise<void> {
    await Promise.all([...this.pools.values()].map((p) => p.close()));
    this.pools.clear();
  }

  private async askApp(req: RequestView, channel: string, requestedId: string | undefined): Promise<AuthDecision> {
    const url = new URL(this.options.authUrl!);
    const headers: Record<string, string> = {
      ...this.forwardedHeaders(req, ['cookie', 'authorization', 'origin', 'user-agent']),
      'warren-channel': channel,
    };
    // The client's wish, named so that no app mistakes it for an identity.
    if (requestedId !== undefined) headers[HEADERS.requestedId] = requestedId;
    let answer;
    try {
      answer = await this.pool(url).request({
        path: url.pathname + url.search,
        method: 'GET',
        headers,
        headersTimeout: this.options.timeoutMs,
        bodyTimeout: this.options.timeoutMs,
      });
      await answer.body.dump();
    } catch (err) {
      throw this.upstreamError(err, 'the auth endpoint');
    }
    const status = answer.statusCode;
    if (status === 401) throw new WarrenError('UNAUTHORIZED', 'the application refused the subscription (401)');
    if (status === 403) throw new WarrenError('FORBIDDEN', 'the application refused the subscription (403)');
    if (status < 200 || status > 299)
      throw new WarrenError('UPSTREAM_UNAVAILABLE', `the auth endpoint answered ${status}; refusing (fail closed)`);
    const vouched = answer.headers[HEADERS.warrenConsumerId];
    if (vouched === undefined) return { identity: undefined };
    try {
      return { identity: parseConsumerId(Array.isArray(vouched) ? vouched[0] : vouched) };
    } catch {
      this.log.error('the auth endpoint vouched for an invalid consumer id; refusing', { channel });
      throw new WarrenError(
        'UPSTREAM_UNAVAILABLE',
        'the auth endpoint answered with an invalid Warren-Consumer-Id; refusing (fail closed)',
      );
    }
  }

  /**
   * The client's headers for the app: hop-by-hop and identity headers
   * removed, and every header whose name holds an underscore;
   * `X-Forwarded-For/-Proto/-Host`, `X-Real-IP` and `Forwarded` set, and the
   * client's own kept (and extended) only when it is a trusted proxy;
   * `X-Request-Id` the request's id (a trusted proxy's, else the gateway's).
   */
  private forwardedHeaders(req: RequestView, only?: string[]): Record<string, string> {
    const peer = plainAddress(req.socket.remoteAddress ?? '');
    const trusted = this.trusted.has(peer);
    const drop = connectionTokens(req.headers.connection);
    const out: Record<string, string> = {};
    for (const [name, value] of Object.entries(req.headers as IncomingHttpHeaders)) {
      if (value === undefined || name === 'host' || HOP_BY_HOP.has(name) || drop.has(name)) continue;
      if (IDENTITY_HEADERS.includes(name) || PROXY_HEADERS.includes(name) || name.startsWith('x-forwarded-')) continue;
      // The gateway answered the client's 100-continue itself; undici refuses the header.
      if (name === 'expect') continue;
      // CGI, WSGI and Rack read `Warren_Identity` as `HTTP_WARREN_IDENTITY`: drop them all, as nginx does.
      if (name.includes('_')) continue;
      if (only !== undefined && !only.includes(name)) continue;
      out[name] = Array.isArray(value) ? value.join(', ') : value;
    }
    const first = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v.join(', ') : v);
    const priorFor = trusted ? first(req.headers['x-forwarded-for']) : undefined;
    out['x-forwarded-for'] = priorFor === undefined ? peer : `${priorFor}, ${peer}`;
    const encrypted = (req.socket as { encrypted?: boolean }).encrypted === true;
    out['x-forwarded-proto'] = (trusted ? first(req.headers['x-forwarded-proto']) : undefined) ?? (encrypted ? 'https' : 'http');
    const host = (trusted ? first(req.headers['x-forwarded-host']) : undefined) ?? req.headers.host;
    if (host !== undefined) out['x-forwarded-host'] = host;
    out['x-real-ip'] = this.clientAddress(req);
    // The gateway's id for this request (a trusted proxy's, else its own): the app logs the same one.
    out[REQUEST_ID_HEADER] = this.requestId(req);
    // RFC 7239: the same facts once more, for apps that read only `Forwarded`.
    const proto = out['x-forwarded-proto'].split(',')[0]!.trim();
    const element = [
      `for=${forwardedNode(peer)}`,
      ...(host === undefined ? [] : [`host=${quoted(host)}`]),
      `proto=${/^[a-z][a-z0-9+.-]*$/i.test(proto) ? proto : quoted(proto)}`,
    ].join(';');
    const priorForwarded = trusted ? first(req.headers.forwarded) : undefined;
    out.forwarded = priorForwarded === undefined ? element : `${priorForwarded}, ${element}`;
    return out;
  }

  private pool(url: URL): Pool {
    let pool = this.pools.get(url.origin);
    if (pool === undefined) {
      pool = new Pool(url.origin, { connections: 64, connectTimeout: Math.min(this.options.timeoutMs, 10_000) });
      this.pools.set(url.origin, pool);
    }
    return pool;
  }

  private upstreamError(err: unknown, what: string): WarrenError {
    const code = (err as { code?: string }).code ?? '';
    if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT') {
      return new WarrenError('UPSTREAM_TIMEOUT', `${what} did not answer in time`);
    }
    this.log.warn(`${what} is unreachable`, { error: code || (err as Error).message });
    return new WarrenError('UPSTREAM_UNAVAILABLE', `${what} is unreachable`);
  }
}

/** A node of `Forwarded` (RFC 7239 §6): an IPv6 address bracketed and quoted. */
function forwardedNode(address: string): string {
  return address.includes(':') ? `"[${address}]"` : address;
}

/** A quoted-string (RFC 9110 §5.6.4). */
function quoted(value: string): string {
  return `"${value.replace(/["\\]/g, '\\$&')}"`;
}

/** The application's answer to an upgrade it did not switch: relayed close-delimited, hop-by-hop headers dropped, the request id added unless it set one. */
function relayAnswer(answer: IncomingMessage, socket: Duplex, requestId: string): void {
  const drop = connectionTokens(answer.headers.connection);
  const chunked = answer.headers['transfer-encoding'] !== undefined;
  const lines: string[] = [];
  for (let i = 0; i + 1 < answer.rawHeaders.length; i += 2) {
    const name = answer.rawHeaders[i]!.toLowerCase();
    if (HOP_BY_HOP.has(name) || drop.has(name) || (chunked && name === 'content-length')) continue;
    lines.push(`${answer.rawHeaders[i]}: ${answer.rawHeaders[i + 1]}`);
  }
  if (answer.headers[REQUEST_ID_HEADER] === undefined) lines.push(`${REQUEST_ID_HEADER}: ${requestId}`);
  lines.push('connection: close');
  socket.write(`HTTP/1.1 ${answer.statusCode} ${answer.statusMessage ?? ''}\r\n${lines.join('\r\n')}\r\n\r\n`);
  pipeline(answer, socket).then(
    () => socket.destroy(),
    () => socket.destroy(),
  );
}

/** `name: value` lines of a message's raw headers, each ending in CRLF. */
function rawHeaderLines(raw: string[]): string {
  let out = '';
  for (let i = 0; i + 1 < raw.length; i += 2) out += `${raw[i]}: ${raw[i + 1]}\r\n`;
  return out;
}

function connectionTokens(value: string | string[] | undefined): Set<string> {
  const text = Array.isArray(value) ? value.join(',') : (value ?? '');
  return new Set(
    text
      .split(',')
      .map((t) => t.trim().toLowerCase())
      .filter((t) => t.length > 0),
  );
}
