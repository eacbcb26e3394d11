import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import { FaultProxy } from './support/fault-proxy.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A client socket through the proxy that collects what the echo server sends back. */
async function client(port: number): Promise<{ socket: Socket; received: () => string; closed: Promise<unknown> }> {
  const socket = connect({ host: '127.0.0.1', port });
  socket.on('error', () => {});
  let text = '';
  socket.on('data', (b: Buffer) => (text += b.toString()));
  const closed = once(socket, 'close');
  await once(socket, 'connect');
  return { socket, received: () => text, closed };
}

describe('FaultProxy', () => {
  let echo: Server;
  let proxy: FaultProxy;
  let port: number;
  before(async () => {
    echo = createServer((s) => {
      s.on('error', () => {});
      s.pipe(s);
    });
    echo.listen(0, '127.0.0.1');
    await once(echo, 'listening');
    proxy = new FaultProxy({ targetHost: '127.0.0.1', targetPort: (echo.address() as { port: number }).port });
    port = await proxy.listen();
  });
  after(async () => {
    await proxy.close();
    echo.close();
  });

  it('forwards both ways, and cut() destroys every pair', async () => {
    const c = await client(port);
    c.socket.write('hello');
    await until(() => c.received() === 'hello');
    assert.equal(proxy.connections, 1);
    proxy.cut();
    await c.closed;
    assert.equal(proxy.connections, 0);
  });

  it('black-hole holds bytes with the sockets open, then delivers them in order', async () => {
    const c = await client(port);
    proxy.blackhole(true);
    c.socket.write('a');
    c.socket.write('b');
    await sleep(150);
    assert.equal(c.received(), '');
    assert.equal(proxy.connections, 1);
    proxy.blackhole(false);
    await until(() => c.received() === 'ab');
    c.socket.destroy();
  });

  it('delay() adds latency per chunk and keeps order', async () => {
    const c = await client(port);
    proxy.delay(100);
    const t0 = Date.now();
    c.socket.write('x');
    await sleep(20);
    proxy.delay(0); // 'y' is not delayed, yet must not overtake 'x'
    c.socket.write('y');
    await sleep(30);
    assert.equal(c.received(), '');
    await until(() => c.received() === 'xy');
    assert.ok(Date.now() - t0 >= 90);
    c.socket.destroy();
  });

  it('cutAfterConnect() cuts each new connection after the delay; refuse() closes at once', async () => {
    proxy.cutAfterConnect(50);
    const c = await client(port);
    await c.closed;
    proxy.cutAfterConnect(undefined);
    proxy.refuse(true);
    const r = connect({ host: '127.0.0.1', port });
    r.on('error', () => {});
    await once(r, 'close');
    proxy.refuse(false);
    assert.equal(proxy.connections, 0);
  });
});

async function until(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error('timed out');
    await sleep(10);
  }
}
