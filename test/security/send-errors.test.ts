import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { WebSocket } from 'ws';
import { startGateway, until, type TestGateway } from '../support/index.js';
import { startTrustingApp, type TrustingApp } from '../support/trusting-app.js';

describe('error frames for a warren.v1 send', () => {
  let app: TrustingApp;
  let gw: TestGateway;
  before(async () => {
    app = await startTrustingApp();
    gw = await startGateway('memory', { upstream: app.url, pushRoutes: '/live/' });
  });
  after(async () => {
    await gw.close();
    await app.close();
  });

  it('an invalid channel is answered with the id of the send, so that the client can match it', async () => {
    const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/_warren/ws`, 'warren.v1');
    const frames: Array<Record<string, any>> = [];
    ws.on('message', (d) => frames.push(JSON.parse(d.toString()) as Record<string, any>));
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    ws.send(JSON.stringify({ type: 'send', id: 'r9', channel: 'no slash', data: 'x' }));
    await until(() => frames.length >= 1, 'the error frame', 5000);
    assert.equal(frames[0]!.type, 'error');
    assert.equal(frames[0]!.code, 'INVALID_CHANNEL');
    assert.equal(frames[0]!.id, 'r9');
    ws.close();
  });
});
