import { WarrenError, type ErrorCode } from './errors.js';
import { parseChannel, parseMessageId } from './names.js';
import { isPattern, parseChannelPattern } from './patterns.js';

// The JSON frames of the `warren.v1` WebSocket subprotocol. The browser
// client keeps a dependency-free copy (packages/client/src/frames.ts);
// test/unit/frames-agree.test.ts checks that the two say the same.

/** Any value JSON can carry. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/** Longest `id` of a `send` frame (it comes back on the `reply` or `error` frame). */
export const MAX_SEND_ID_LENGTH = 128;

/** Most messages a `subscribe` frame's `history` (and `?history=`) may ask for. */
export const MAX_HISTORY = 1000;

/**
 * Start reading `channel`. On a logged channel: from `since` (an event id,
 * or a time: an ISO 8601 date or milliseconds since the epoch), or with its
 * last `history` messages. `lastEventId` is the older name of `since` with an
 * id (on a channel that is not logged, the message id a consumer resumes after).
 */
export interface SubscribeFrame {
  type: 'subscribe';
  channel: string;
  since?: string;
  /** From 0 to {@link MAX_HISTORY}. */
  history?: number;
  lastEventId?: string;
  /** On a presence channel: also receive its `join` and `leave` frames. */
  presence?: boolean;
}

/** Stop reading `channel`. */
export interface UnsubscribeFrame {
  type: 'unsubscribe';
  channel: string;
}

/**
 * A message for the application, posted to `channel`'s path: a string goes
 * as `text/plain; charset=utf-8`, any other JSON value as `application/json`.
 * The answer is a `reply` (or `error`) frame carrying the same `id`.
 */
export interface SendFrame {
  type: 'send';
  channel: string;
  /** `null` when the frame had no `data`. */
  data: JsonValue;
  /** At most {@link MAX_SEND_ID_LENGTH} characters. */
  id?: string;
}

/**
 * Who is subscribed to the presence channel `channel` (authorized as a
 * subscribe is). Answered with a `presence` frame carrying the same `id`.
 */
export interface PresenceRequestFrame {
  type: 'presence';
  channel: string;
  /** At most {@link MAX_SEND_ID_LENGTH} characters. */
  id?: string;
}

/** What a client sends on a `warren.v1` socket. */
export type ClientFrame = SubscribeFrame | UnsubscribeFrame | SendFrame | PresenceRequestFrame;

/** A message published to a channel the socket subscribed to. */
export interface MessageFrame {
  type: 'message';
  /** The channel it was published to. */
  channel: string;
  /** On a wildcard subscription: the pattern subscribed to (`/stocks/*`), which `channel` matched. */
  pattern?: string;
  id: string;
  /** The producer's event name, when it named one. */
  event?: string;
  contentType: string;
  /** The body: UTF-8 text, or base64 when `encoding` says so (a content type that is not textual). */
  data: string;
  encoding?: 'base64';
}

/**
 * On a logged channel: the position the subscriber resumed from is older
 * than what the log retains. Every message retained follows.
 * `id` is the position the client sent.
 */
export interface GapFrame {
  type: 'gap';
  channel: string;
  id: string;
  /** `history-gone`. */
  reason: string;
}

/**
 * On a logged channel: the log does not know the position the subscriber
 * sent (it was deleted and declared again, or it is not an event id). Live
 * messages follow; `id` is a valid position to resume from (the log's end).
 */
export interface ResetFrame {
  type: 'reset';
  channel: string;
  id: string;
  /** `unknown-position`. */
  reason: string;
}

/** One identity present on a presence channel, over every gateway process. */
export interface PresenceMember {
  /** The identity the application or a signed token vouched for. */
  identity: string;
  /** Its open subscriptions to the channel (0 while its last one is within the grace period). */
  connections: number;
  /** When it joined: an ISO 8601 time. */
  since: string;
}

/** The answer to a `presence` request: who is subscribed to `channel`. */
export interface PresenceFrame {
  type: 'presence';
  /** The request's id, when it had one. */
  id?: string;
  channel: string;
  members: PresenceMember[];
}

/** On a presence channel a subscription asked for events of: `identity` is now present. */
export interface JoinFrame {
  type: 'join';
  channel: string;
  identity: string;
}

/** On a presence channel a subscription asked for events of: `identity` is gone (after the grace period). */
export interface LeaveFrame {
  type: 'leave';
  channel: string;
  identity: string;
}

/** A `subscribe` succeeded: the channel's messages follow. */
export interface SubscribedFrame {
  type: 'subscribed';
  channel: string;
}

/** An `unsubscribe` is done. */
export interface UnsubscribedFrame {
  type: 'unsubscribed';
  channel: string;
}

/** The application's answer to a `send`. */
export interface ReplyFrame {
  type: 'reply';
  /** The `send` frame's id, when it had one. */
  id?: string;
  channel: string;
  /** The application's HTTP status. */
  status: number;
  /** Absent for 204, and when the application named none. */
  contentType?: string;
  /** The body (absent for 204): UTF-8 text, or base64 when `encoding` says so. */
  data?: string;
  encoding?: 'base64';
}

/**
 * A command failed, or a subscription ended. `code` is one of
 * `ERROR_CODES` (readers should accept codes they do not know: new ones may
 * be added); `channel` and `id` are the failed frame's, when it had them.
 */
export interface ErrorFrame {
  type: 'error';
  id?: string;
  code: string;
  message: string;
  channel?: string;
}

/** What the gateway sends on a `warren.v1` socket. */
export type ServerFrame =
  | MessageFrame
  | GapFrame
  | ResetFrame
  | SubscribedFrame
  | UnsubscribedFrame
  | ReplyFrame
  | PresenceFrame
  | JoinFrame
  | LeaveFrame
  | ErrorFrame;

/** Whether a frame field must be present. */
export type FrameField = 'required' | 'optional';

/** The fields of each frame type besides `type`, and whether each must be present. */
export type FrameFields<F extends { type: string }> = {
  [T in F['type']]: {
    // `{} extends Pick<T, K>` is how a mapped type tells an optional key from a required one.
    // eslint-disable-next-line @typescript-eslint/no-empty-object-type
    [K in Exclude<keyof Extract<F, { type: T }>, 'type'>]-?: {} extends Pick<Extract<F, { type: T }>, K> ? 'optional' : 'required';
  };
};

/**
 * Every client frame type and its fields: the frame table of the docs is
 * checked against it, and the compiler checks it against {@link ClientFrame}.
 */
export const CLIENT_FRAMES: FrameFields<ClientFrame> = {
  subscribe: { channel: 'required', since: 'optional', history: 'optional', lastEventId: 'optional', presence: 'optional' },
  unsubscribe: { channel: 'required' },
  send: { channel: 'required', data: 'required', id: 'optional' },
  presence: { channel: 'required', id: 'optional' },
};

/** Every server frame type and its fields, checked against {@link ServerFrame}. */
export const SERVER_FRAMES: FrameFields<ServerFrame> = {
  message: {
    channel: 'required',
    pattern: 'optional',
    id: 'required',
    event: 'optional',
    contentType: 'required',
    data: 'required',
    encoding: 'optional',
  },
  gap: { channel: 'required', id: 'required', reason: 'required' },
  reset: { channel: 'required', id: 'required', reason: 'required' },
  subscribed: { channel: 'required' },
  unsubscribed: { channel: 'required' },
  reply: { id: 'optional', channel: 'required', status: 'required', contentType: 'optional', data: 'optional', encoding: 'optional' },
  presence: { id: 'optional', channel: 'required', members: 'required' },
  join: { channel: 'required', identity: 'required' },
  leave: { channel: 'required', identity: 'required' },
  error: { id: 'optional', code: 'required', message: 'required', channel: 'optional' },
};

/**
 * A client frame {@link parseClientFrame} refused. Its `code` says why
 * (`INVALID_FRAME`, `INVALID_CHANNEL`, `INVALID_MESSAGE_ID`); `channel` and
 * `id` are what the frame gave (a string channel, a send's usable id), so
 * that the error frame answering it can name them, as a reply would.
 */
export class ClientFrameError extends WarrenError {
  readonly channel: string | undefined;
  readonly id: string | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    echo: { channel?: string | undefined; id?: string | undefined },
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
    this.channel = echo.channel;
    this.id = echo.id;
  }
}

type Fields = Record<string, unknown>;

function parseObject(text: string): Fields | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Fields) : undefined;
  } catch {
    return undefined;
  }
}

const isSendId = (id: unknown): id is string => typeof id === 'string' && id.length <= MAX_SEND_ID_LENGTH;

/**
 * Reads one text frame a client sent on a `warren.v1` socket. Fields other
 * than the type's are dropped; a `send` without `data` sends `null`.
 *
 * @throws ClientFrameError (a `WarrenError`) `INVALID_FRAME` for text that is
 *   not a JSON object, an unknown `type`, or a send `id` that is not a string
 *   of at most {@link MAX_SEND_ID_LENGTH} characters; `INVALID_CHANNEL`;
 *   `INVALID_MESSAGE_ID` for a `lastEventId` that is not a message id
 * @example parseClientFrame('{"type":"subscribe","channel":"/a"}') // { type: 'subscribe', channel: '/a' }
 */
export function parseClientFrame(text: string): ClientFrame {
  const raw = parseObject(text);
  if (raw === undefined) throw new ClientFrameError('INVALID_FRAME', 'a warren.v1 frame is a JSON object with a "type"', {});
  const echo = {
    channel: typeof raw.channel === 'string' ? raw.channel : undefined,
    id: (raw.type === 'send' || raw.type === 'presence') && isSendId(raw.id) ? raw.id : undefined,
  };
  try {
    switch (raw.type) {
      case 'subscribe':
        return parseSubscribe(raw);
      case 'unsubscribe':
        return { type: 'unsubscribe', channel: parseTarget(raw.channel) };
      case 'send': {
        if (raw.id !== undefined && !isSendId(raw.id)) {
          throw new WarrenError('INVALID_FRAME', `a send id is a string of at most ${MAX_SEND_ID_LENGTH} characters`);
        }
        const frame: SendFrame = { type: 'send', channel: parseChannel(raw.channel), data: (raw.data ?? null) as JsonValue };
        if (raw.id !== undefined) frame.id = raw.id;
        return frame;
      }
      case 'presence': {
        if (raw.id !== undefined && !isSendId(raw.id)) {
          throw new WarrenError('INVALID_FRAME', `a presence id is a string of at most ${MAX_SEND_ID_LENGTH} characters`);
        }
        const frame: PresenceRequestFrame = { type: 'presence', channel: parseChannel(raw.channel) };
        if (raw.id !== undefined) frame.id = raw.id;
        return frame;
      }
      default:
        throw new WarrenError('INVALID_FRAME', 'type must be subscribe, unsubscribe, send or presence');
    }
  } catch (err) {
    if (err instanceof WarrenError) throw new ClientFrameError(err.code, err.message, echo, { cause: err });
    throw err;
  }
}

/** What a subscribe or unsubscribe names: a channel, or a wildcard pattern (docs/wildcards.md). */
function parseTarget(input: unknown): string {
  return typeof input === 'string' && isPattern(input) ? parseChannelPattern(input).pattern : parseChannel(input);
}

function parseSubscribe(raw: Fields): SubscribeFrame {
  const frame: SubscribeFrame = { type: 'subscribe', channel: parseTarget(raw.channel) };
  if (raw.since !== undefined) {
    parseSince(raw.since);
    frame.since = raw.since as string;
  }
  if (raw.history !== undefined) {
    // A JSON number; the text form is for `?history=`.
    if (typeof raw.history !== 'number')
      throw new WarrenError('INVALID_REQUEST', `history is a number of messages from 0 to ${MAX_HISTORY}`);
    frame.history = parseHistory(raw.history);
  }
  if (raw.lastEventId !== undefined) frame.lastEventId = parseMessageId(raw.lastEventId);
  if (raw.presence !== undefined) {
    if (typeof raw.presence !== 'boolean') throw new WarrenError('INVALID_REQUEST', 'presence is true or false');
    frame.presence = raw.presence;
  }
  return frame;
}

/** Where a `since` starts: after an event id, or at a time (ms since the epoch). */
export type Since = { id: string } | { time: number };

/**
 * Reads a `since` (a `warren.v1` `subscribe` field, or `?since=`): digits
 * are milliseconds since the epoch, a string starting with a date
 * (`2026-12-02…`) an ISO 8601 time, anything else an event id.
 * @throws WarrenError `INVALID_REQUEST` for a date that does not parse;
 *   `INVALID_MESSAGE_ID` for an id that is not 1 to 128 visible ASCII characters
 * @example parseSince('1764680000000') // { time: 1764680000000 }
 */
export function parseSince(input: unknown): Since {
  const id = parseMessageId(input);
  if (/^\d{1,15}$/.test(id)) return { time: Number(id) };
  if (/^\d{4}-\d{2}-\d{2}/.test(id)) {
    const time = Date.parse(id);
    if (!Number.isFinite(time)) throw new WarrenError('INVALID_REQUEST', `since ${JSON.stringify(id)} is not a valid ISO 8601 time`);
    return { time };
  }
  return { id };
}

/**
 * Reads a `history` count (a frame's number, or `?history=`'s text).
 * @throws WarrenError `INVALID_REQUEST` unless a whole number from 0 to {@link MAX_HISTORY}
 */
export function parseHistory(input: unknown): number {
  const n = typeof input === 'string' && /^\d{1,4}$/.test(input) ? Number(input) : input;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > MAX_HISTORY) {
    throw new WarrenError('INVALID_REQUEST', `history is a number of messages from 0 to ${MAX_HISTORY}`);
  }
  return n;
}

/** The frame's fields of `fields`, each checked by its kind: `undefined` when one is missing or mistyped. */
function pick(raw: Fields, fields: Record<string, FrameField>, kinds: Record<string, (v: unknown) => boolean>): Fields | undefined {
  const out: Fields = { type: raw.type };
  for (const [name, presence] of Object.entries(fields)) {
    const value = raw[name];
    if (value === undefined) {
      if (presence === 'required') return undefined;
      continue;
    }
    if (!kinds[name]!(value)) return undefined;
    out[name] = value;
  }
  return out;
}

const string = (v: unknown): boolean => typeof v === 'string';
/** Every field name of every member of a frame union. */
type FieldNames<F> = F extends unknown ? Exclude<keyof F, 'type'> : never;
/** A check for each field of the server frames. */
const SERVER_KINDS: Record<FieldNames<ServerFrame>, (v: unknown) => boolean> = {
  channel: string,
  pattern: string,
  id: string,
  event: string,
  contentType: string,
  data: string,
  code: string,
  message: string,
  reason: string,
  identity: string,
  members: (v) => Array.isArray(v) && v.every(isPresenceMember),
  encoding: (v) => v === 'base64',
  status: (v) => Number.isInteger(v) && (v as number) >= 100 && (v as number) <= 599,
};

function isPresenceMember(v: unknown): boolean {
  if (v === null || typeof v !== 'object') return false;
  const m = v as Fields;
  return typeof m.identity === 'string' && Number.isInteger(m.connections) && (m.connections as number) >= 0 && typeof m.since === 'string';
}

/**
 * Reads one text frame the gateway sent on a `warren.v1` socket (for Node
 * clients and tests; the browser client has its own copy). Each field is
 * checked for its JSON type (strings; `encoding` is `"base64"`; `status` an
 * HTTP status); fields the type does not have are dropped.
 *
 * @throws WarrenError `INVALID_FRAME` for text that is not a JSON object, an
 *   unknown `type`, or a missing or mistyped field
 */
export function parseServerFrame(text: string): ServerFrame {
  const raw = parseObject(text);
  if (raw === undefined) throw new WarrenError('INVALID_FRAME', 'a warren.v1 frame is a JSON object with a "type"');
  if (typeof raw.type !== 'string' || !Object.prototype.hasOwnProperty.call(SERVER_FRAMES, raw.type)) {
    throw new WarrenError('INVALID_FRAME', `unknown frame type ${JSON.stringify(raw.type)}`);
  }
  const frame = pick(raw, SERVER_FRAMES[raw.type as ServerFrame['type']], SERVER_KINDS);
  if (frame === undefined) throw new WarrenError('INVALID_FRAME', `a ${raw.type} frame with a missing or mistyped field`);
  return frame as unknown as ServerFrame;
}
