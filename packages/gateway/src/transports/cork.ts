import type { Duplex } from 'node:stream';

/** Something that writes a last frame of its own after the writes of a tick (see {@link atEndOfTick}). */
export interface EndOfTick {
  endOfTick(): void;
}

/**
 * Corks a socket until the end of the current tick, so that what several
 * writes of one tick hand it (a burst of messages from the broker) leaves in
 * one `writev`. One `process.nextTick` uncorks every socket corked in the
 * tick: a message fanned out to ten thousand sockets schedules one callback,
 * not ten thousand.
 */
export function corkForTick(socket: Duplex): void {
  // Already corked by us in this tick (writableCorked counts other corks too: only ours are tracked).
  if (corked.has(socket)) return;
  socket.cork();
  corked.add(socket);
  schedule();
}

/**
 * Calls `member.endOfTick()` once at the end of this tick, before the
 * sockets are uncorked: what it writes then follows everything written in
 * the tick, in the same `writev` (a WebSocket's receipt ping).
 */
export function atEndOfTick(member: EndOfTick): void {
  ending.add(member);
  schedule();
}

const corked = new Set<Duplex>();
const ending = new Set<EndOfTick>();
let scheduled = false;

function schedule(): void {
  if (scheduled) return;
  scheduled = true;
  process.nextTick(uncorkAll);
}

function uncorkAll(): void {
  scheduled = false;
  for (const member of ending) member.endOfTick();
  ending.clear();
  for (const socket of corked) socket.uncork();
  corked.clear();
}
