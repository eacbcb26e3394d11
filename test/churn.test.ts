import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RabbitNode } from './support/rabbit-node.js';
import {
  awaitManagement,
  httpPublish,
  managementGet,
  poll,
  settledChurn,
  startGateway,
  unique,
  until,
  type TestGateway,
} from './support/index.js';

// RabbitMQ's own churn counters, read from the management plugin of a private
// node (its own ports), so that the test neither reconfigures the broker the
// rest of the suite runs on nor counts its traffic.
describe('low churn on RabbitMQ', () => {
  let node: RabbitNode;
  let management: string;
  let gw: TestGateway;
  before(async () => {
    node = await RabbitNode.start({ name: `warren-churn-${process.pid}`, management: true });
    management = node.managementUrl!;
    await awaitManagement(management);
  });
  after(async () => {
    await gw?.close();
    await node?.stop();
  });

  it('100 polls of one consumer cost one queue declare and one bind, on one connection', async () => {
    const before = await settledChurn(management);
    gw = await startGateway('rabbitmq', { amqpUrl: node.url });
    const channel = `/${unique('churn-')}`;
    const consumerId = unique('steady-');
    // 100 polls: 40 find a message waiting, 40 find the queue empty
    // (timeout 0), 20 wait and get a message published while they wait.
    assert.equal((await poll(gw.url, channel, { consumerId, timeout: 0 })).status, 204);
    for (let i = 0; i < 40; i++) assert.equal((await httpPublish(gw.url, channel, `m${i}`)).status, 200);
    for (let i = 0; i < 40; i++) assert.equal((await poll(gw.url, channel, { consumerId, timeout: 1 })).body, `m${i}`);
    for (let i = 0; i < 39; i++) assert.equal((await poll(gw.url, channel, { consumerId, timeout: 0 })).status, 204);
    for (let i = 0; i < 20; i++) {
      const waiting = poll(gw.url, channel, { consumerId, timeout: 5 });
      await until(() => gw.gateway.stats().broker.activeConsumers === 1, 'the poll to wait');
      assert.equal((await httpPublish(gw.url, channel, `w${i}`)).status, 200);
      assert.equal((await waiting).body, `w${i}`);
    }
    const stats = gw.gateway.stats();
    assert.equal(stats.longPoll.started, 100);
    // The gateway's own counters: what it asked of RabbitMQ.
    assert.equal(stats.broker.queueDeclares, 1, 'one queue.declare');
    assert.equal(stats.broker.queueBinds, 1, 'one queue.bind');
    assert.equal(stats.broker.connectionsOpened, 1, 'one AMQP connection');
    assert.ok(stats.broker.channelsOpened <= 3, `long-lived channels only (${stats.broker.channelsOpened})`);
    assert.equal(stats.broker.gets, 100, 'every poll first takes a waiting message with basic.get');
    assert.equal(stats.broker.consumersStarted, 20, 'only polls that found the queue empty and waited attach a consumer');

    // RabbitMQ's counters: what it actually did.
    const after = await settledChurn(management);
    const delta = Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - before[k as keyof typeof before]]));
    assert.equal(delta.queue_declared, 1, `RabbitMQ counted ${delta.queue_declared} queue declarations`);
    assert.equal(delta.queue_created, 1);
    // (queue_deleted is not checked: queues of earlier tests expire meanwhile.)
    assert.equal(delta.connection_created, 1);
    assert.equal(
      delta.channel_created,
      stats.broker.channelsOpened + 1,
      'the start-up channel that asserts the exchange, plus the long-lived ones',
    );

    const queue = `warren:${consumerId}:${channel}`;
    const bindings = (await managementGet(`/api/queues/%2F/${encodeURIComponent(queue)}/bindings`, management)) as Array<{
      source: string;
      routing_key: string;
    }>;
    assert.deepEqual(
      bindings.filter((b) => b.source !== '').map((b) => [b.source, b.routing_key]),
      [['warren', channel]],
      'exactly one binding to the warren exchange',
    );
  });
});
