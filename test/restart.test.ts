import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Producer, WarrenError } from '@warren/producer';
import { poll, startGateway, unique, until, type TestGateway } from './support/index.js';
import { RabbitNode } from './support/rabbit-node.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// These tests stop RabbitMQ and cut its connections: they run on a private
// node of their own (another port, another data directory), never on the
// broker the rest of the suite (or the user) runs on.
describe('RabbitMQ going away and coming back', () => {
  let node: RabbitNode;
  let AMQP_URL: string;
  let gw: TestGateway;
  before(async () => {
    node = await RabbitNode.start({ name: `warren-restart-${process.pid}` });
    AMQP_URL = node.url;
    gw = await startGateway('rabbitmq', { amqpUrl: node.url, reconnectMinMs: 50, reconnectMaxMs: 500 });
  });
  after(async () => {
    await gw?.close();
    await node?.stop();
  });

  it('answers a waiting poll 503 with Retry-After when connections are closed, reconnects and goes on', async () => {
    const channel = `/${unique('cut-')}`;
    const consumerId = unique('c-');
    await poll(gw.url, channel, { consumerId, timeout: 0 });
    const producer = new Producer({ url: AMQP_URL });
    await producer.publish('before').to(channel);
    const waiting = poll(gw.url, `/${unique('other-')}`, { consumerId, timeout: 20 });
    await until(() => gw.gateway.stats().longPoll.active === 1, 'a poll to wait');
    const opened = gw.gateway.stats().broker.connectionsOpened;
    await node.closeAllConnections('warren restart test');
    const cut = await waiting;
    assert.equal(cut.status, 503);
    assert.equal(cut.headers['retry-after'], '1');
    assert.equal(JSON.parse(cut.body).code, 'BROKER_UNAVAILABLE');
    await until(() => gw.gateway.stats().broker.connectionsOpened > opened && gw.gateway.broker.ready, 'the gateway to reconnect', 20_000);
    // The durable queue kept the message published before the cut.
    assert.equal((await poll(gw.url, channel, { consumerId, timeout: 2 })).body, 'before');
    // The producer's connection was cut too; its next publish reconnects.
    let published = false;
    for (let i = 0; i < 20 && !published; i++) {
      try {
        await producer.publish('after').to(channel);
        published = true;
      } catch (err) {
        assert.ok(err instanceof WarrenError && err.code === 'BROKER_UNAVAILABLE', String(err));
        await sleep(100);
      }
    }
    assert.ok(published);
    assert.equal((await poll(gw.url, channel, { consumerId, timeout: 2 })).body, 'after');
    await producer.close();
  });

  it('loses no confirmed message when RabbitMQ restarts in the middle of 1,000 messages', async () => {
    const channel = `/${unique('restart-')}`;
    const consumerId = unique('survivor-');
    assert.equal((await poll(gw.url, channel, { consumerId, timeout: 0 })).status, 204);
    const producer = new Producer({ url: AMQP_URL });
    const confirmed = new Set<number>();
    const received: number[] = [];
    const statuses = new Map<number, number>();
    let retryAfterSeen = false;
    let producing = true;
    let restarted = false;

    const produce = async (): Promise<void> => {
      for (let seq = 0; seq < 1000; seq++) {
        // Retry until confirmed: an unconfirmed publish may or may not have
        // been routed, so the same id is sent again (at-least-once).
        for (;;) {
          try {
            await producer.publish(String(seq), { id: `seq-${seq}` }).to(channel);
            confirmed.add(seq);
            break;
          } catch (err) {
            assert.ok(err instanceof WarrenError && err.code === 'BROKER_UNAVAILABLE', String(err));
            await sleep(100);
          }
        }
        if (seq % 25 === 24) await sleep(5); // bursts, with polls in between
      }
      producing = false;
    };

    const consume = async (): Promise<void> => {
      const deadline = Date.now() + 120_000;
      while (Date.now() < deadline) {
        if (!producing && [...confirmed].every((s) => received.includes(s))) return;
        let res;
        try {
          res = await poll(gw.url, channel, { consumerId, timeout: 1 });
        } catch (err) {
          throw new Error(`the gateway itself must stay up: ${String(err)}`);
        }
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        if (res.status === 200) received.push(Number(res.body));
        else if (res.status === 503) {
          if (res.headers['retry-after'] === '1') retryAfterSeen = true;
          await sleep(100);
        } else assert.equal(res.status, 204, `unexpected ${res.status}: ${res.body}`);
      }
      throw new Error('timed out');
    };

    const restart = async (): Promise<void> => {
      await until(() => confirmed.size >= 300, '300 confirmed messages', 60_000);
      await node.stopApp();
      await sleep(1000);
      await node.startApp();
      restarted = true;
    };

    await Promise.all([produce(), consume(), restart()]);
    await producer.close();
    assert.ok(restarted);
    assert.equal(confirmed.size, 1000);
    const distinct = new Set(received);
    const lost = [...confirmed].filter((s) => !distinct.has(s));
    assert.deepEqual(lost, [], 'no confirmed message lost');
    // Order: the first time each message arrives, it arrives after every earlier one.
    const firsts = received.filter((s, i) => received.indexOf(s) === i);
    assert.deepEqual(
      firsts,
      [...firsts].sort((a, b) => a - b),
      'first deliveries in publish order',
    );
    // Redeliveries are possible only around the outage (an ack or a confirm lost with the connection).
    const duplicates = received.length - distinct.size;
    assert.ok(duplicates <= 3, `${duplicates} duplicates`);
    assert.ok(
      (statuses.get(503) ?? 0) > 0 && retryAfterSeen,
      `polls during the outage were answered 503 with Retry-After (${JSON.stringify([...statuses])})`,
    );
    console.log(
      `# restart run: ${received.length} deliveries, ${duplicates} duplicates, statuses ${JSON.stringify(Object.fromEntries(statuses))}`,
    );
  });
});
