import type { Duplex } from 'node:stream';

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
  if (!scheduled) {
    scheduled = true;
    process.nextTick(uncorkAll);
  }
}

const corked = new Set<Duplex>();
let scheduled = false;

function uncorkAll(): void {
  scheduled = false;
  for (const socket of corked) socket.uncork();
  corked.clear();
}
