import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { WebSocket } from 'ws';
import { httpPublish, poll, rabbitQueues, startGateway, unique, until, type TestGateway } from '../support/index.js';

// Issue 12, item 8: every anonymous long-poll declared a durable queue kept
// for 5 minutes (one client made 2,000 in 11 s), and one warren.v1 socket
// subscribing and unsubscribing made 1,000 queues in 6 s. A minted id gets no
// queue until its client comes back with it, and every new queue a client
// causes costs its address one token of --queue-budget.
describe('a flood of new queues from one client', { timeout: 180_000 }, () => {
  let gw: TestGateway;
  const BUDGET = 20;
  const attacker = { 'x-forwarded-for': '10.0.0.66' };
  before(async () => {
    gw = await startGateway('rabbitmq', {
      trustedProxies: '127.0.0.1',
      queueBudget: BUDGET,
      queueExpiresMs: 15_000,
      maxConnectionsPerIp: 10_000,
    });
  });
  after(() => gw?.close());

  it('2,000 anonymous polls and 1,000 subscribe/unsubscribe frames leave at most the budget in queues; an identified consumer keeps working', async () => {
    const base = unique('flood-');
    const channel = `/${base}`;
    // A legitimate identified consumer, from another address, before and during the flood.
    const legit = { consumerId: unique('legit'), headers: { 'x-forwarded-for': '10.0.0.7' } };
    assert.equal((await poll(gw.url, channel, { ...legit, timeout: 0 })).status, 204);
    const legitPoll = poll(gw.url, channel, { ...legit, timeout: 30 });

    // 2,000 polls without a consumer id, four at a time.
    const statuses = new Map<number, number>();
    let next = 0;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (next < 2000) {
          next++;
          const { status } = await poll(gw.url, channel, { timeout: 0, headers: attacker });
          statuses.set(status, (statuses.get(status) ?? 0) + 1);
        }
      }),
    );
    assert.deepEqual([...statuses], [[204, 2000]]);

    // 1,000 frames on one socket with a consumer id: subscribe and unsubscribe 500 channels.
    const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/_warren/ws?consumer_id=${unique('flooder')}`, 'warren.v1', {
      headers: attacker,
    });
    const frames: Array<{ type: string; code?: string }> = [];
    ws.on('message', (data) => frames.push(JSON.parse(String(data))));
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    for (let i = 0; i < 500; i++) {
      ws.send(JSON.stringify({ type: 'subscribe', channel: `${channel}-${i}` }));
      ws.send(JSON.stringify({ type: 'unsubscribe', channel: `${channel}-${i}` }));
    }
    await until(() => frames.filter((f) => f.type !== 'unsubscribed').length >= 500, 'an answer to every subscribe', 60_000, 50);
    ws.close();
    const refused = frames.filter((f) => f.type === 'error' && f.code === 'QUEUE_BUDGET_EXCEEDED').length;
    assert.ok(refused >= 500 - BUDGET, `${refused} subscribes refused with QUEUE_BUDGET_EXCEEDED`);

    // The legitimate consumer still gets its message.
    assert.equal((await httpPublish(gw.url, channel, 'for the legit consumer')).status, 200);
    assert.equal((await legitPoll).body, 'for the legit consumer');

    const made = (await rabbitQueues('warren:')).filter((q) => q.includes(base) && !q.includes(legit.consumerId));
    assert.ok(
      made.length <= BUDGET + 1,
      `${made.length} queues were made for the flood (budget ${BUDGET}): ${made.slice(0, 5).join(', ')}`,
    );
  });

  it('answers a poll past the budget with 429 QUEUE_BUDGET_EXCEEDED and Retry-After', async () => {
    const from = { 'x-forwarded-for': '10.0.0.99' };
    const channel = `/${unique('budget-')}`;
    const ids = Array.from({ length: BUDGET }, () => unique('id'));
    const answers: number[] = [];
    for (const consumerId of ids) answers.push((await poll(gw.url, channel, { consumerId, timeout: 0, headers: from })).status);
    assert.deepEqual(answers, Array(BUDGET).fill(204));
    const over = await poll(gw.url, channel, { consumerId: unique('id'), timeout: 0, headers: from });
    assert.equal(over.status, 429);
    assert.equal(JSON.parse(over.body).code, 'QUEUE_BUDGET_EXCEEDED');
    assert.equal(over.headers['retry-after'], '5');
    // Known queues cost nothing: a consumer that already has its queue keeps polling.
    assert.equal((await poll(gw.url, channel, { consumerId: ids[0], timeout: 0, headers: from })).status, 204);
  });
});
