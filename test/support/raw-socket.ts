import { connect } from 'node:net';

/** A raw TCP client: what it received, whether the peer closed, and a way to write more. */
export interface RawSocket {
  received(): string;
  closed: Promise<void>;
  write(text: string): void;
  destroy(): void;
}

export async function rawSocket(base: string): Promise<RawSocket> {
  const url = new URL(base);
  const socket = connect(Number(url.port), url.hostname);
  let received = '';
  socket.on('data', (c: Buffer) => (received += c.toString('latin1')));
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return {
    received: () => received,
    closed,
    write: (text) => {
      if (!socket.destroyed) socket.write(text);
    },
    destroy: () => socket.destroy(),
  };
}
