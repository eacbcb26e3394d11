import { isChannel, JSON_CONTENT_TYPE, generateMessageId, type WarrenMessage } from '@warren/protocol';

/**
 * The routing key of presence announcements on the channels' exchange. Its
 * first segment starts with `_`, which no channel may (so no client or
 * producer can publish to it through the gateway).
 */
export const PRESENCE_ROUTING_KEY = '/_warren/presence';

/** Most members in one `full` announcement; a larger state goes in several parts. */
export const FULL_PART_MEMBERS = 2000;

/** A member set (`[channel, identity, connections, since]`) or removed (`[channel, identity]`). */
export type Entry = [channel: string, identity: string, connections: number, since: number] | [channel: string, identity: string];

/**
 * What gateway processes tell each other about their presence members
 * (docs/presence.md, "Across processes"). Every announcement names its
 * process `p`; `seq` numbers the process's changes (a `delta` adds one), so
 * a receiver that sees a gap asks for the whole state again. `every` is the
 * sender's interval: it is taken for gone when not heard from for three.
 */
export type Announcement =
  /** Still here, at change `seq`. */
  | { t: 'beat'; p: string; seq: number; every: number }
  /** Members that changed since change `seq - 1`. */
  | { t: 'delta'; p: string; seq: number; every: number; m: Entry[] }
  /** Part `part` of every member as of change `seq`; `last` on the final part. */
  | { t: 'full'; p: string; seq: number; every: number; part: number; last: boolean; m: Entry[] }
  /** Send me your whole state (`to` one process, or every process). */
  | { t: 'ask'; p: string; to?: string }
  /** Closing: keep my members for `grace` ms more (time for my clients to reconnect elsewhere), then drop them. */
  | { t: 'bye'; p: string; grace: number };

const PROCESS = /^[0-9a-f]{1,32}$/;
const IDENTITY = /^[A-Za-z0-9_-]{1,64}$/;
const MAX_ENTRIES = 10_000;

export function encodeAnnouncement(a: Announcement): WarrenMessage {
  return { id: generateMessageId(), contentType: JSON_CONTENT_TYPE, body: Buffer.from(JSON.stringify({ v: 1, ...a })) };
}

const count = (v: unknown, max: number): boolean => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= max;

function readEntries(v: unknown): Entry[] | undefined {
  if (!Array.isArray(v) || v.length > MAX_ENTRIES) return undefined;
  for (const e of v) {
    if (!Array.isArray(e) || !isChannel(e[0]) || typeof e[1] !== 'string' || !IDENTITY.test(e[1])) return undefined;
    if (e.length === 4 ? !count(e[2], 1_000_000) || !count(e[3], Number.MAX_SAFE_INTEGER) : e.length !== 2) return undefined;
  }
  return v as Entry[];
}

/**
 * Reads an announcement from another process; `undefined` for anything
 * else (a newer version, a message someone else published there).
 */
export function decodeAnnouncement(body: Buffer): Announcement | undefined {
  let raw: Record<string, unknown>;
  try {
    const value: unknown = JSON.parse(body.toString('utf8'));
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined;
    raw = value as Record<string, unknown>;
  } catch {
    return undefined;
  }
  const p = raw.p;
  if (raw.v !== 1 || typeof p !== 'string' || !PROCESS.test(p)) return undefined;
  const seq = raw.seq;
  const every = raw.every;
  const numbered = count(seq, Number.MAX_SAFE_INTEGER) && count(every, 3_600_000) && (every as number) > 0;
  switch (raw.t) {
    case 'beat':
      return numbered ? { t: 'beat', p, seq: seq as number, every: every as number } : undefined;
    case 'delta': {
      const m = readEntries(raw.m);
      return numbered && m !== undefined ? { t: 'delta', p, seq: seq as number, every: every as number, m } : undefined;
    }
    case 'full': {
      const m = readEntries(raw.m);
      if (!numbered || m === undefined || !count(raw.part, 1_000_000) || typeof raw.last !== 'boolean') return undefined;
      return { t: 'full', p, seq: seq as number, every: every as number, part: raw.part as number, last: raw.last, m };
    }
    case 'ask':
      if (raw.to !== undefined && (typeof raw.to !== 'string' || !PROCESS.test(raw.to))) return undefined;
      return raw.to === undefined ? { t: 'ask', p } : { t: 'ask', p, to: raw.to };
    case 'bye':
      return count(raw.grace, 3_600_000) ? { t: 'bye', p, grace: raw.grace as number } : undefined;
    default:
      return undefined;
  }
}
