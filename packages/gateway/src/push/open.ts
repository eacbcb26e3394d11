import { validateHeaderName, validateHeaderValue, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { parseConsumerId } from '@warren/protocol';
import { accessEntry, noteAccess } from '../access-log.js';
import type { Admission } from '../admission.js';
import { findConsumer } from '../consumer-id.js';
import { SseTransport, type SseOptions } from '../transports/sse.js';
import type { Ticker } from '../transports/ticker.js';
import type { PushTransport } from '../transports/transport.js';
import type { WebSocketAcceptor } from '../transports/websocket.js';
import { AppConnection, Connection, type ConnectionContext } from './connection.js';
import type { PushHandler, PushUpgrade, UpgradeDecider, UpgradeKind } from './handler.js';

/** Where a push request came in: an SSE response, or a socket to upgrade. */
export type PushIo = { res: ServerResponse } | { socket: Duplex; head: Buffer };

export interface PushFrontDeps {
  admission: Admission;
  /** Picks a handler for each push request (the default one, or the application's). */
  decide: UpgradeDecider;
  /** The decider is the application's (`onUpgrade`), not the default handler. */
  custom: boolean;
  acceptor: WebSocketAcceptor;
  heartbeats: Ticker<SseTransport>;
  sseRetryMs: number;
  /** What connections need from the gateway, less what the front adds (`closed`, `admitQueue`). */
  context: Omit<ConnectionContext, 'closed' | 'closedSlow' | 'admitQueue'>;
}

/**
 * Opens push connections (SSE and WebSocket) the same way for every
 * handler, as ws's `handleUpgrade` → `completeUpgrade`: the decider picks a
 * handler (or declines), the connection is admitted (caps), its queue is
 * prepared, and only then does the client see it open.
 */
export class PushFront {
  /** Open push connections. */
  readonly connections = new Set<Connection>();
  private readonly context: ConnectionContext;
  /** One options object for every SSE response. */
  private readonly sse: SseOptions;
  /**
   * Bytes written to the sockets of closed connections, less what their
   * sockets had written before they opened (a kept-alive socket's earlier
   * responses): with the open connections' sockets, the bytes out. Counted
   * at open and close, never per write.
   */
  private readonly closedBytes = { sse: 0, websocket: 0 };
  /** Connections closed as slow consumers. */
  readonly slowClosed = { sse: 0, websocket: 0 };

  constructor(private readonly deps: PushFrontDeps) {
    this.context = {
      ...deps.context,
      admitQueue: (address, channel, consumerId) => deps.admission.admitQueue(address, channel, consumerId),
      closed: (conn) => {
        if (this.connections.delete(conn)) this.closedBytes[conn.kind] += conn.socket.bytesWritten ?? 0;
        deps.admission.give(conn);
      },
      closedSlow: (conn) => {
        this.slowClosed[conn.kind]++;
      },
    };
    this.sse = { heartbeats: deps.heartbeats, retryMs: deps.sseRetryMs };
  }

  /**
   * A push request: resolves `false` when the decider declined it (the
   * caller passes it on), `true` once it is open or its client left.
   * `head` is the response head to start from (the request id; CORS for
   * SSE): written with the `200` or the `101` and never set on the
   * response before, so that Node keeps no header map for the stream's life.
   * @throws WarrenError for a refused request (answered by the caller)
   */
  async open(
    kind: UpgradeKind,
    req: IncomingMessage,
    path: string,
    query: URLSearchParams,
    io: PushIo,
    head: OutgoingHttpHeaders,
  ): Promise<boolean> {
    const { admission, custom } = this.deps;
    admission.checkOpen(true);
    const headers: OutgoingHttpHeaders = { ...head };
    const requested = findConsumer(req, query);
    const upgrade = pushUpgrade(kind, req, path, query, requested, headers);
    const handler = (await this.deps.decide(upgrade)) as PushHandler | undefined | null | false;
    if (handler === undefined || handler === null || handler === false) return false;
    if (typeof handler !== 'object') throw new TypeError('onUpgrade must return a handler object, or undefined/null/false to decline');
    const named = custom && upgrade.consumerId !== requested && upgrade.consumerId !== undefined;
    const consumerId = named ? parseConsumerId(upgrade.consumerId) : upgrade.consumerId;
    // An embedding application's handler that named another consumer vouched for it.
    const slot = named ? admission.take(req, consumerId, consumerId?.split('/')[0]) : admission.take(req, consumerId);
    noteAccess(req, { consumer: named ? 'vouched' : admission.consumerKind(req, consumerId) });
    let transport: PushTransport | undefined;
    // Read before the response headers or the handshake are written: they count as bytes out.
    const writtenBefore = req.socket.bytesWritten;
    try {
      await handler.prepare?.(upgrade);
      transport = await this.complete(req, io, headers);
    } finally {
      // Given back by `closed()` once the connection is open (and closes).
      if (transport === undefined) admission.give(slot);
    }
    if (transport === undefined) return true;
    if (kind === 'websocket') noteAccess(req, { status: 101 });
    const init = { consumerId, slot, socket: req.socket, access: accessEntry(req) };
    // The default handler took what it needs from the request already: only an application's handler keeps it.
    const conn = custom
      ? new AppConnection(transport, handler, this.context, { ...init, request: req, path, query })
      : new Connection(transport, handler, this.context, init);
    this.connections.add(conn);
    this.closedBytes[conn.kind] -= writtenBefore;
    conn.start();
    return true;
  }

  /** Bytes written to push sockets (SSE and WebSocket): headers, framing and heartbeats included. */
  bytesOut(): { sse: number; websocket: number } {
    const out = { ...this.closedBytes };
    for (const conn of this.connections) out[conn.kind] += conn.socket.bytesWritten ?? 0;
    return out;
  }

  /** Answers the request: SSE headers, or the WebSocket handshake. `undefined` when the client left first. */
  private async complete(req: IncomingMessage, io: PushIo, headers: OutgoingHttpHeaders): Promise<PushTransport | undefined> {
    if ('res' in io) {
      if (io.res.destroyed) return undefined;
      return new SseTransport(io.res, headers, this.sse);
    }
    if (io.socket.destroyed) return undefined;
    try {
      return await this.deps.acceptor.accept(req, io.socket, io.head, headerLines(headers));
    } catch (err) {
      // undefined: the handshake failed or the client left (ws answered it).
      if (err === undefined) return undefined;
      throw err;
    }
  }
}

/** What the decider sees of a push request (Rack's `env`), with `setHeader` for the response. */
function pushUpgrade(
  kind: UpgradeKind,
  req: IncomingMessage,
  path: string,
  query: URLSearchParams,
  consumerId: string | undefined,
  headers: OutgoingHttpHeaders,
): PushUpgrade {
  return {
    kind,
    request: req,
    path,
    query,
    consumerId,
    setHeader(name, value) {
      validateHeaderName(name);
      validateHeaderValue(name, Array.isArray(value) ? value.join(', ') : String(value));
      headers[name.toLowerCase()] = value;
    },
  };
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
