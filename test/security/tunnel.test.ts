import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startGateway, until, type TestGateway } from '../support/index.js';
import { rawSocket } from '../support/raw-socket.js';
import { startTrustingApp, type TrustingApp } from '../support/trusting-app.js';

const HANDSHAKE =
  'GET /page HTTP/1.1\r\nHost: gw.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';
const SMUGGLED = 'GET /admin HTTP/1.1\r\nHost: gw.example\r\nWarren-Identity: alice\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n';

describe('tunnelled upgrades to the application (request smuggling)', () => {
  let app: TrustingApp;
  let gw: TestGateway;
  before(async () => {
    app = await startTrustingApp();
    gw = await startGateway('memory', { upstream: app.url, pushRoutes: '/live/', upstreamTimeoutMs: 2000 });
  });
  after(async () => {
    await gw.close();
    await app.close();
  });

  it('an app that answers 200 to an Upgrade: its answer is relayed, the socket closes, and nothing written after reaches the app', async () => {
    app.requests.length = 0;
    const client = await rawSocket(gw.url);
    client.write(HANDSHAKE);
    await until(() => client.received().includes('\r\n\r\n'), 'the answer to the handshake', 5000);
    assert.match(client.received(), /^HTTP\/1\.1 200 /);
    client.write(SMUGGLED);
    await Promise.race([client.closed, new Promise((r) => setTimeout(r, 1000))]);
    client.destroy();
    assert.deepEqual(
      app.requests.map((r) => [r.url, r.user, r.headers['x-forwarded-for']]),
      [['/page', null, '127.0.0.1']],
      'only the handshake request reached the app',
    );
    await client.closed;
  });
});

describe('tunnelled upgrades the application accepts', () => {
  let app: TrustingApp;
  let gw: TestGateway;
  before(async () => {
    app = await startTrustingApp({ switching: true });
    gw = await startGateway('memory', { upstream: app.url, pushRoutes: '/live/', upstreamTimeoutMs: 2000 });
  });
  after(async () => {
    await gw.close();
    await app.close();
  });

  it('holds what the client sends until the app answered 101, then pipes it both ways', async () => {
    const client = await rawSocket(gw.url);
    client.write(`${HANDSHAKE}early bytes\n`);
    await until(() => client.received().includes('switched\n'), 'the 101 and the first bytes from the app', 5000);
    assert.match(client.received(), /^HTTP\/1\.1 101 /);
    client.write('late bytes\n');
    await until(() => app.upgrades[0]?.late.includes('late bytes') === true, 'the bytes after the switch', 5000);
    const seen = app.upgrades[0]!;
    assert.equal(seen.early, '', 'nothing reached the app before its 101');
    assert.equal(seen.late, 'early bytes\nlate bytes\n');
    client.destroy();
  });
});
