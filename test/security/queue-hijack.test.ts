import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { signChannelToken } from '@warren/protocol';
import { httpPublish, poll, rabbitQueues, startGateway, unique, type TestGateway } from '../support/index.js';
import { startTrustingApp, type TrustingApp } from '../support/trusting-app.js';

// Issue 12, item 9: where the app lets anonymous visitors read a channel (it
// answers 2xx without vouching), `?consumer_id=alice` read the queue of the
// logged-in alice. Ids nobody vouched for live in their own namespace.
describe('a client-chosen consumer id naming a vouched identity', () => {
  let app: TrustingApp;
  let gw: TestGateway;
  const secret = 'a-token-secret-of-at-least-32-characters!';
  before(async () => {
    app = await startTrustingApp();
    gw = await startGateway('rabbitmq', { upstream: app.url, pushRoutes: '/live/', authUrl: `${app.url}/auth`, tokenSecret: secret });
  });
  after(async () => {
    await gw.close();
    await app.close();
  });

  it('with --auth-url: never reads the queue of the identity it names', async () => {
    const channel = `/live/${unique('public-')}`;
    const alice = unique('alice');
    // The real alice (the app vouches for her session) has her queue.
    assert.equal((await poll(gw.url, channel, { timeout: 0, headers: { cookie: `session=${alice}` } })).status, 204);
    assert.equal((await httpPublish(gw.url, channel, 'for alice')).status, 200);
    // A visitor without a session names her as its consumer id.
    const thief = await poll(gw.url, channel, { timeout: 0, consumerId: alice });
    assert.equal(thief.status, 204, `the visitor read ${JSON.stringify(thief.body)} from alice's queue`);
    const real = await poll(gw.url, channel, { timeout: 1, headers: { cookie: `session=${alice}` } });
    assert.equal(real.body, 'for alice');
    // The visitor's queue is its own, named apart.
    const queues = await rabbitQueues(`warren:`);
    assert.ok(queues.includes(`warren:${alice}:${channel}`));
    assert.ok(queues.includes(`warren:anon.${alice}:${channel}`), queues.filter((q) => q.includes(alice)).join(', '));
  });

  it('with a signed token that has no subject: the same', async () => {
    const channel = `/live/${unique('token-')}`;
    const bob = unique('bob');
    const token = signChannelToken({ channels: [channel], ttlMs: 60_000 }, secret);
    assert.equal((await poll(gw.url, channel, { timeout: 0, headers: { cookie: `session=${bob}` } })).status, 204);
    assert.equal((await httpPublish(gw.url, channel, 'for bob')).status, 200);
    const thief = await poll(gw.url, channel, { timeout: 0, consumerId: bob, query: `&token=${token}` });
    assert.equal(thief.status, 204, `the token holder read ${JSON.stringify(thief.body)} from bob's queue`);
    assert.equal((await poll(gw.url, channel, { timeout: 1, headers: { cookie: `session=${bob}` } })).body, 'for bob');
  });
});
