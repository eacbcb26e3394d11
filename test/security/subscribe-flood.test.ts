import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { WebSocket } from 'ws';
import { startGateway, until, type TestGateway } from '../support/index.js';
import { startTrustingApp, type TrustingApp } from '../support/trusting-app.js';

/** A `warren.v1` socket and the frames it received. */
async function socket(gw: TestGateway): Promise<{ ws: WebSocket; frames: Array<Record<string, any>> }> {
  const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/_warren/ws`, 'warren.v1', { headers: { cookie: 'session=alice' } });
  const frames: Array<Record<string, any>> = [];
  ws.on('message', (d) => frames.push(JSON.parse(d.toString()) as Record<string, any>));
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  return { ws, frames };
}

describe('subscribe frames and the auth endpoint', () => {
  let app: TrustingApp;
  const gateways: TestGateway[] = [];
  before(async () => {
    app = await startTrustingApp();
  });
  after(async () => {
    await Promise.all(gateways.map((gw) => gw.close()));
    await app.close();
  });
  const start = async (authPath: string, wsMaxSubscriptions: number): Promise<TestGateway> => {
    const gw = await startGateway('memory', {
      upstream: app.url,
      pushRoutes: '/live/',
      authUrl: `${app.url}${authPath}`,
      authCacheMs: 0,
      wsMaxSubscriptions,
    });
    gateways.push(gw);
    return gw;
  };
  const authCalls = (): number => app.requests.filter((r) => r.url.startsWith('/auth')).length;

  it('past --ws-max-subscriptions the app is not asked; a channel asked twice at once is asked once', async () => {
    const gw = await start('/auth', 8);
    const { ws, frames } = await socket(gw);
    const before = authCalls();
    for (let i = 0; i < 200; i++) ws.send(JSON.stringify({ type: 'subscribe', channel: `/live/flood-${i}` }));
    for (let i = 0; i < 50; i++) ws.send(JSON.stringify({ type: 'subscribe', channel: '/live/flood-0' }));
    await until(() => frames.length >= 250, 'an answer to every subscribe', 10_000);
    assert.equal(frames.filter((f) => f.type === 'error' && f.code === 'TOO_MANY_SUBSCRIPTIONS').length, 192);
    assert.equal(new Set(frames.filter((f) => f.type === 'subscribed').map((f) => f.channel)).size, 8);
    assert.equal(authCalls() - before, 8, 'one auth request per admitted channel');
    ws.close();
  });

  it('at most 16 subscribes per socket wait for the app at once; the others wait their turn and succeed', async () => {
    const gw = await start('/auth?delay=100', 64);
    const { ws, frames } = await socket(gw);
    for (let i = 0; i < 64; i++) ws.send(JSON.stringify({ type: 'subscribe', channel: `/live/slow-${i}` }));
    await until(() => frames.length >= 64, 'an answer to every subscribe', 10_000);
    assert.equal(frames.filter((f) => f.type === 'subscribed').length, 64);
    assert.ok(app.maxAuthInFlight() <= 16, `${app.maxAuthInFlight()} auth requests at once`);
    ws.close();
  });
});
