import { WarrenClientError } from './types.js';

// The JSON frames of the `warren.v1` WebSocket subprotocol: a dependency-free
// copy of `@warren/protocol`'s (packages/protocol/src/frames.ts), so that the
// client loads in a browser without it. test/unit/frames-agree.test.ts checks
// that the two types are the same and that both parsers read frames alike.

/** Any value JSON can carry. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

export interface SubscribeFrame {
  type: 'subscribe';
  channel: string;
  since?: string;
  history?: number;
  lastEventId?: string;
  presence?: boolean;
}

export interface UnsubscribeFrame {
  type: 'unsubscribe';
  channel: string;
}

export interface SendFrame {
  type: 'send';
  channel: string;
  data: JsonValue;
  id?: string;
}

/** Who is subscribed to a presence channel; answered with a `presence` frame with the same `id`. */
export interface PresenceRequestFrame {
  type: 'presence';
  channel: string;
  id?: string;
}

/** What a client sends on a `warren.v1` socket. */
export type ClientFrame = SubscribeFrame | UnsubscribeFrame | SendFrame | PresenceRequestFrame;

export interface MessageFrame {
  type: 'message';
  channel: string;
  /** On a wildcard subscription: the pattern subscribed to, which `channel` matched. */
  pattern?: string;
  id: string;
  event?: string;
  contentType: string;
  /** UTF-8 text, or base64 when `encoding` says so. */
  data: string;
  encoding?: 'base64';
}

/** A logged channel's history since `id` is gone; what is retained follows. */
export interface GapFrame {
  type: 'gap';
  channel: string;
  id: string;
  reason: string;
}

/** A logged channel does not know the position sent; live messages follow from `id`. */
export interface ResetFrame {
  type: 'reset';
  channel: string;
  id: string;
  reason: string;
}

export interface SubscribedFrame {
  type: 'subscribed';
  channel: string;
}

export interface UnsubscribedFrame {
  type: 'unsubscribed';
  channel: string;
}

export interface ReplyFrame {
  type: 'reply';
  id?: string;
  channel: string;
  status: number;
  contentType?: string;
  data?: string;
  encoding?: 'base64';
}

/** One identity present on a presence channel. */
export interface PresenceMember {
  identity: string;
  connections: number;
  /** ISO 8601. */
  since: string;
}

export interface PresenceFrame {
  type: 'presence';
  id?: string;
  channel: string;
  members: PresenceMember[];
}

export interface JoinFrame {
  type: 'join';
  channel: string;
  identity: string;
}

export interface LeaveFrame {
  type: 'leave';
  channel: string;
  identity: string;
}

/** `code` is a gateway error code; a newer gateway may send codes this client does not know. */
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

type Presence = 'required' | 'optional';
type Check = (value: unknown) => boolean;

const string: Check = (v) => typeof v === 'string';
const base64: Check = (v) => v === 'base64';
const status: Check = (v) => typeof v === 'number' && Number.isInteger(v) && v >= 100 && v <= 599;
const member: Check = (v) => {
  if (v === null || typeof v !== 'object') return false;
  const m = v as Record<string, unknown>;
  return typeof m.identity === 'string' && Number.isInteger(m.connections) && (m.connections as number) >= 0 && typeof m.since === 'string';
};
const members: Check = (v) => Array.isArray(v) && v.every(member);

/** Each server frame's fields besides `type`: whether it must be present, and its check. */
const SERVER_FIELDS: { [T in ServerFrame['type']]: Record<string, [Presence, Check]> } = {
  message: {
    channel: ['required', string],
    pattern: ['optional', string],
    id: ['required', string],
    event: ['optional', string],
    contentType: ['required', string],
    data: ['required', string],
    encoding: ['optional', base64],
  },
  gap: { channel: ['required', string], id: ['required', string], reason: ['required', string] },
  reset: { channel: ['required', string], id: ['required', string], reason: ['required', string] },
  subscribed: { channel: ['required', string] },
  unsubscribed: { channel: ['required', string] },
  reply: {
    id: ['optional', string],
    channel: ['required', string],
    status: ['required', status],
    contentType: ['optional', string],
    data: ['optional', string],
    encoding: ['optional', base64],
  },
  presence: { id: ['optional', string], channel: ['required', string], members: ['required', members] },
  join: { channel: ['required', string], identity: ['required', string] },
  leave: { channel: ['required', string], identity: ['required', string] },
  error: { id: ['optional', string], code: ['required', string], message: ['required', string], channel: ['optional', string] },
};

const invalid = (message: string): WarrenClientError => new WarrenClientError('INVALID_FRAME', message, { transport: 'websocket' });

/**
 * Reads one text frame the gateway sent. Fields its type does not have are
 * dropped; a frame without a type this client knows is `undefined` (a
 * newer gateway may add types), where `@warren/protocol`'s `parseServerFrame`
 * throws.
 *
 * @throws WarrenClientError `INVALID_FRAME` for text that is not a JSON
 *   object, or a missing or mistyped field
 */
export function parseServerFrame(text: string): ServerFrame | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    raw = undefined;
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw invalid('the gateway sent a frame that is not a JSON object');
  const fields = raw as Record<string, unknown>;
  const type = fields.type;
  if (typeof type !== 'string' || !Object.prototype.hasOwnProperty.call(SERVER_FIELDS, type)) return undefined;
  const frame: Record<string, unknown> = { type };
  for (const [name, [presence, check]] of Object.entries(SERVER_FIELDS[type as ServerFrame['type']])) {
    const value = fields[name];
    if (value === undefined) {
      if (presence === 'required') throw invalid(`a ${type} frame without ${name}`);
    } else if (check(value)) {
      frame[name] = value;
    } else {
      throw invalid(`a ${type} frame with a mistyped ${name}`);
    }
  }
  return frame as unknown as ServerFrame;
}
