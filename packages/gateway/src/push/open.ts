import { validateHeaderName, validateHeaderValue, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { parseConsumerId } from '@warren/protocol';
import { noteAccess } from '../access-log.js';
import type { Admission, Slot } from '../admission.js';
import { findConsumer } from '../consumer-id.js';
import { REQUEST_ID_HEADER } from '../request-id.js';
import { SseTransport } from '../transports/sse.js';
import type { Ticker } from '../transports/ticker.js';
import type { PushTransport } from '../transports/transport.js';
import type { WebSocketAcceptor } from '../transports/websocket.js';
import { Connection, type ConnectionContext } from './connection.js';
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
  private readonly slots = new WeakMap<Connection, Slot>();
  private readonly context: ConnectionContext;
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
        if (this.connections.delete(conn)) this.closedBytes[conn.kind] += conn.request.socket.bytesWritten;
        const slot = this.slots.get(conn);
        if (slot !== undefined) deps.admission.give(slot);
      },
      closedSlow: (conn) => {
        this.slowClosed[conn.kind]++;
      },
    };
  }

  /**
   * A push request: resolves `false` when the decider declined it (the
   * caller passes it on), `true` once it is open or its client left.
   * @throws WarrenError for a refused request (answered by the caller)
   */
  async open(
    kind: UpgradeKind,
    req: IncomingMessage,
    path: string,
    query: URLSearchParams,
    io: PushIo,
    requestId: string,
  ): Promise<boolean> {
    const { admission, custom } = this.deps;
    admission.checkOpen(true);
    // An SSE response has it already (the router set it); a 101 is written by ws from these.
    const headers: OutgoingHttpHeaders = 'res' in io ? {} : { [REQUEST_ID_HEADER]: requestId };
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
    const conn = new Connection(transport, handler, this.context, { request: req, path, query, consumerId, clientAddress: slot.address });
    this.connections.add(conn);
    this.closedBytes[conn.kind] -= writtenBefore;
    this.slots.set(conn, slot);
    conn.start();
    return true;
  }

  /** Bytes written to push sockets (SSE and WebSocket): headers, framing and heartbeats included. */
  bytesOut(): { sse: number; websocket: number } {
    const out = { ...this.closedBytes };
    for (const conn of this.connections) out[conn.kind] += conn.request.socket.bytesWritten;
    return out;
  }

  /** Answers the request: SSE headers, or the WebSocket handshake. `undefined` when the client left first. */
  private async complete(req: IncomingMessage, io: PushIo, headers: OutgoingHttpHeaders): Promise<PushTransport | undefined> {
    if ('res' in io) {
      if (io.res.destroyed) return undefined;
      return new SseTransport(io.res, headers, { heartbeats: this.deps.heartbeats, retryMs: this.deps.sseRetryMs });
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
