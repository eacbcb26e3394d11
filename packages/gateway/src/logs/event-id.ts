import type { WarrenMessage } from '@warren/protocol';

/**
 * The event id of a log entry: `<offset>.<check>`, where the check is a hash
 * of the entry (body, content type, event name, publish time). An id names a
 * place in one log: read at that offset again, a log deleted and declared
 * since holds another entry there (or none), and the check tells.
 */
export function eventId(offset: number, message: WarrenMessage): string {
  return `${offset}.${entryCheck(message)}`;
}

/** A parsed event id, or `undefined` for an id that is not one (an id from elsewhere: the position is unknown). */
export function parseEventId(id: string): { offset: number; check: string } | undefined {
  const match = /^(\d{1,15})\.([0-9a-f]{8})$/.exec(id);
  if (match === null) return undefined;
  return { offset: Number(match[1]), check: match[2]! };
}

/** FNV-1a (32 bits) of what identifies an entry, as 8 hex digits. */
export function entryCheck(message: WarrenMessage): string {
  let hash = 0x811c9dc5;
  const mix = (byte: number): void => {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193);
  };
  for (const byte of message.body) mix(byte);
  const meta = `\n${message.contentType}\n${message.event ?? ''}\n${message.publishedAt ?? ''}`;
  for (let i = 0; i < meta.length; i++) mix(meta.charCodeAt(i) & 0xff);
  return (hash >>> 0).toString(16).padStart(8, '0');
}
