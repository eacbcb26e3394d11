import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Producer } from '@warren/producer';
import { poll, startGateway, unique, until, type TestGateway } from './support/index.js';
import { RabbitNode } from './support/rabbit-node.js';

// Issue 14, item 7: a RabbitMQ cluster underneath. Three nodes on loopback,
// started by the test; the gateway knows all three and uses quorum queues.
// The node it is connected to stops in the middle of 1,000 messages: it
// moves to another node, and no confirmed message is lost for identified
// consumers (their queues are replicated).
describe('a three-node RabbitMQ cluster with quorum queues', { timeout: 300_000 }, () => {
  const nodes: RabbitNode[] = [];
  let gw: TestGateway | undefined;
  before(async () => {
    for (let i = 0; i < 3; i++) nodes.push(await RabbitNode.start({ name: `warren-cluster${i}-${process.pid}` }));
    for (const node of nodes.slice(1)) {
      await node.ctl('stop_app');
      await node.ctl('join_cluster', nodes[0]!.nodename);
      await node.startApp();
    }
    const status = await nodes[0]!.ctl('cluster_status', '--formatter', 'json');
    const running = (JSON.parse(status) as { running_nodes: string[] }).running_nodes;
    assert.equal(running.length, 3, `cluster: ${status}`);
  });
  after(async () => {
    await gw?.close();
    for (const node of nodes) await node.stop();
  });

  it('moves to another node when its node stops, and loses no confirmed message', async () => {
    gw = await startGateway('rabbitmq', {
      amqpUrl: nodes.map((n) => n.url).join(','),
      queueType: 'quorum',
      reconnectMinMs: 50,
      reconnectMaxMs: 500,
    });
    const gateway = gw;
    const channel = `/${unique('cluster-')}`;
    const consumers = [unique('a'), unique('b'), unique('c')];
    // Each consumer's queue exists (a quorum queue over the three nodes) before the first publish.
    for (const consumerId of consumers) assert.equal((await poll(gateway.url, channel, { consumerId, timeout: 0 })).status, 204);
    const queueType = await nodes[1]!.ctl('list_queues', '-q', '--no-table-headers', 'name', 'type');
    assert.match(queueType, new RegExp(`warren:${consumers[0]}:${channel}\\s+quorum`));

    const received = new Map<string, Set<string>>(consumers.map((c) => [c, new Set()]));
    let stop = false;
    const loops = consumers.map(async (consumerId) => {
      while (!stop) {
        try {
          const res = await poll(gateway.url, channel, { consumerId, timeout: 2 });
          if (res.status === 200) received.get(consumerId)!.add(res.body);
          else if (res.status !== 204) await new Promise((r) => setTimeout(r, 100));
        } catch {
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    });

    // The producer publishes to the third node, which stays up.
    const producer = new Producer({ url: nodes[2]!.url });
    const confirmed: string[] = [];
    try {
      for (let i = 0; i < 1000; i++) {
        if (i === 500) {
          // The gateway is on the first node (the first URL): stop it.
          const opened = gateway.gateway.stats().broker.connectionsOpened;
          await nodes[0]!.stopApp();
          await until(
            () => gateway.gateway.stats().broker.connectionsOpened > opened && gateway.gateway.broker.ready,
            'the gateway on another node',
            60_000,
            100,
          );
        }
        await producer.publish(`m${i}`).to(channel);
        confirmed.push(`m${i}`);
      }
      await until(
        () => consumers.every((c) => received.get(c)!.size >= confirmed.length),
        'every consumer to have every message',
        120_000,
        200,
      ).catch(() => undefined);
    } finally {
      stop = true;
      await Promise.all(loops);
      await producer.close();
    }
    for (const consumerId of consumers) {
      const got = received.get(consumerId)!;
      const lost = confirmed.filter((m) => !got.has(m));
      assert.equal(lost.length, 0, `${consumerId} lost ${lost.length} of ${confirmed.length}: ${lost.slice(0, 5).join(', ')}`);
    }
  });
});
