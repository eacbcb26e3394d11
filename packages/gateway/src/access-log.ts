import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from './logger.js';

/** Where access lines go (`--access-log`): nowhere, a standard stream, or the gateway's logger. */
export type AccessLogTarget = 'off' | 'stdout' | 'stderr' | 'logger';

export const ACCESS_LOG_TARGETS: readonly AccessLogTarget[] = ['off', 'stdout', 'stderr', 'logger'];

/**
 * How a request was served: a push stream (`sse`, `websocket`), a poll, the
 * application's (`proxy`, `websocket-proxy`, or `app` on an attached server),
 * one of the gateway's endpoints (`publish`, `probe`, `stats`, `preflight`),
 * or `http` for one refused before any of those.
 */
export type AccessTransport =
  'sse' | 'websocket' | 'long-poll' | 'proxy' | 'websocket-proxy' | 'app' | 'publish' | 'probe' | 'stats' | 'preflight' | 'http';

/** Who read: nobody named (`anonymous`), an id the client chose (`identified`), an identity the app or a token vouched for (`vouched`). */
export type ConsumerKind = 'anonymous' | 'identified' | 'vouched';

/** One line of the access log, as written (JSON, one per line, fields in this order). */
export interface AccessLine {
  /** When the request or stream ended (ISO 8601, UTC). */
  time: string;
  requestId: string;
  method: string;
  /** The path, never the query (it may carry `token=` or a consumer id). */
  path: string;
  /** The answer's status (`101` for a WebSocket); `499` when the client left before any answer. */
  status: number;
  transport: AccessTransport;
  durationMs: number;
  /** Bytes read from the client's connection for this request: request line, headers and body (WebSocket frames included). */
  bytesIn: number;
  /** Bytes written to it: status line, headers and body (SSE events, WebSocket frames and heartbeats included). */
  bytesOut: number;
  /** Subscriptions only. */
  consumer?: ConsumerKind;
  /** The client's address, as `--trusted-proxies` resolves it. */
  client: string;
  /** Streams only: why it ended (`client-gone`, `shutdown`, `restart`, `slow-consumer`, `revoked`, …). */
  reason?: string;
}

/** What is known of a request while it runs (only when the access log is on). */
interface Entry {
  readonly started: number;
  readonly requestId: string;
  readonly upgrade: boolean;
  transport: AccessTransport;
  status: number | undefined;
  consumer: ConsumerKind | undefined;
  reason: string | undefined;
}

/** What the parts of the gateway may tell about a request they serve. */
export type AccessNote = Partial<Pick<Entry, 'transport' | 'status' | 'consumer' | 'reason'>>;

const ENTRY = Symbol('warren.access');
/** Bytes of a connection already logged (keep-alive: the requests before this one). */
const LOGGED = Symbol('warren.accessBytes');

type Tracked = IncomingMessage & { [ENTRY]?: Entry };
type Counted = Duplex & { bytesRead?: number; bytesWritten?: number; [LOGGED]?: { read: number; written: number } };

/**
 * Tells the access log about `req` (how it is served, its status, who
 * reads, why a stream ended; a stream's first reason wins). Nothing at all
 * when the access log is off: one property read per call, and no call is
 * made per delivery.
 */
export function noteAccess(req: IncomingMessage, note: AccessNote): void {
  noteEntry((req as Tracked)[ENTRY], note);
}

/** What the access log tracks of one request, for a stream that keeps this instead of its request. */
export type AccessEntry = Entry;

/** The access-log entry of `req`; `undefined` when the access log is off. */
export function accessEntry(req: IncomingMessage): AccessEntry | undefined {
  return (req as Tracked)[ENTRY];
}

/** {@link noteAccess} on the entry of a request (nothing for `undefined`: the access log is off). */
export function noteEntry(entry: AccessEntry | undefined, note: AccessNote): void {
  if (entry === undefined) return;
  if (note.transport !== undefined) entry.transport = note.transport;
  if (note.status !== undefined) entry.status = note.status;
  if (note.consumer !== undefined) entry.consumer = note.consumer;
  if (note.reason !== undefined) entry.reason ??= note.reason;
}

/** Stops tracking `req`: it is the application's (an attached server's own upgrade), and so is its log. */
export function forgetAccess(req: IncomingMessage): void {
  delete (req as Tracked)[ENTRY];
}

/**
 * The access log (`--access-log`): one JSON line per request, written once
 * it is answered, and per stream (SSE, WebSocket, tunnelled WebSocket) once
 * it ends. Off by default; when off, {@link request} and {@link upgrade}
 * return at once and nothing is kept.
 */
export class AccessLog {
  private readonly write: ((line: AccessLine) => void) | undefined;

  constructor(
    target: AccessLogTarget,
    log: Logger,
    private readonly clientAddress: (req: IncomingMessage) => string,
  ) {
    this.write = lineWriter(target, log);
  }

  /** Tracks an HTTP request until its response closes. */
  request(req: IncomingMessage, res: ServerResponse, requestId: string): void {
    if (this.write === undefined) return;
    const entry = track(req, requestId, false);
    res.once('close', () => this.finish(req, entry, res.headersSent ? res.statusCode : undefined));
  }

  /** Tracks an upgrade until its socket closes (the 101's status is noted by whoever answers it). */
  upgrade(req: IncomingMessage, socket: Duplex, requestId: string): void {
    if (this.write === undefined) return;
    const entry = track(req, requestId, true);
    socket.once('close', () => this.finish(req, entry, entry.status));
  }

  private finish(req: IncomingMessage, entry: Entry, status: number | undefined): void {
    if ((req as Tracked)[ENTRY] !== entry) return;
    delete (req as Tracked)[ENTRY];
    const { bytesIn, bytesOut } = connectionBytes(req.socket as Counted);
    // No status: the client left before an answer (nginx's 499), or ws refused the handshake itself (400).
    const code = status ?? entry.status ?? (entry.upgrade && bytesOut > 0 ? 400 : 499);
    const stream = (entry.transport === 'sse' && code === 200) || (entry.transport === 'websocket' && code === 101);
    const line: AccessLine = {
      time: new Date().toISOString(),
      requestId: entry.requestId,
      method: req.method ?? '',
      path: pathOf(req.url ?? ''),
      status: code,
      transport: entry.transport,
      durationMs: Math.round((performance.now() - entry.started) * 10) / 10,
      bytesIn,
      bytesOut,
      ...(entry.consumer === undefined ? {} : { consumer: entry.consumer }),
      client: this.clientAddress(req),
      // The gateway notes why it ended a stream; one it did not end, the client left.
      ...(stream ? { reason: entry.reason ?? 'client-gone' } : {}),
    };
    this.write!(line);
  }
}

function track(req: IncomingMessage, requestId: string, upgrade: boolean): Entry {
  const entry: Entry = {
    started: performance.now(),
    requestId,
    upgrade,
    transport: 'http',
    status: undefined,
    consumer: undefined,
    reason: undefined,
  };
  (req as Tracked)[ENTRY] = entry;
  return entry;
}

/** How lines reach their target; `undefined` when off. */
function lineWriter(target: AccessLogTarget, log: Logger): ((line: AccessLine) => void) | undefined {
  switch (target) {
    case 'stdout':
      return (line) => process.stdout.write(`${JSON.stringify(line)}\n`);
    case 'stderr':
      return (line) => process.stderr.write(`${JSON.stringify(line)}\n`);
    case 'logger':
      return ({ time: _time, ...fields }) => log.info('access', fields);
    default:
      return undefined;
  }
}

/** The bytes a connection carried since the last line logged for it (a kept-alive connection's earlier requests are theirs). */
function connectionBytes(socket: Counted): { bytesIn: number; bytesOut: number } {
  const read = socket.bytesRead ?? 0;
  const written = socket.bytesWritten ?? 0;
  const before = socket[LOGGED] ?? { read: 0, written: 0 };
  socket[LOGGED] = { read, written };
  return { bytesIn: read - before.read, bytesOut: written - before.written };
}

/** Longest path logged (the gateway refuses longer targets with 414 anyway: `MAX_URL_LENGTH`). */
const MAX_PATH = 2048;

/** The path of a request target, without its query, at most {@link MAX_PATH} characters. */
function pathOf(target: string): string {
  const q = target.indexOf('?');
  return (q < 0 ? target : target.slice(0, q)).slice(0, MAX_PATH);
}
