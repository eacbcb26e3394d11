import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { WebSocket } from 'ws';
import { Producer } from '@warren/producer';
import { AMQP_URL, readSse, startGateway, unique, until, type TestGateway } from '../support/index.js';

// Issue 11, fault 6: a reconnecting identified client whose old connection
// was still open got nothing (the queue has a single active consumer, and the
// old stream kept it). The newer connection must take over, on every transport.
describe('a newer stream of the same consumer and channel', { timeout: 60_000 }, () => {
  let gw: TestGateway;
  let producer: Producer;
  before(async () => {
    gw = await startGateway('rabbitmq');
    producer = new Producer({ url: AMQP_URL });
  });
  after(async () => {
    await producer?.close();
    await gw?.close();
  });

  const publish = async (channel: string, from: number, to: number): Promise<void> => {
    for (let i = from; i < to; i++) await producer.publish(`m${i}`, { id: `id-${i}` }).to(channel);
  };

  it('SSE: takes over from the old one (closed as superseded), resuming after Last-Event-ID with no gap or duplicate', async () => {
    const channel = `/${unique('take-sse-')}`;
    const consumer = unique('c');
    const old = readSse(gw.url, channel, { 'consumer-id': consumer });
    assert.equal(await old.status, 200);
    await publish(channel, 0, 5);
    await until(() => old.events.length === 5, 'the first five on the old stream');
    const newer = readSse(gw.url, channel, { 'consumer-id': consumer, 'last-event-id': 'id-4' });
    try {
      assert.equal(await newer.status, 200);
      await until(() => /closing \(superseded\)/.test(old.raw()), 'the old stream to be closed as superseded', 5000);
      await publish(channel, 5, 10);
      await until(() => newer.events.length >= 5, 'the next five on the newer stream', 5000);
      assert.deepEqual(
        newer.events.map((e) => e.data),
        ['m5', 'm6', 'm7', 'm8', 'm9'],
      );
    } finally {
      old.close();
      newer.close();
    }
  });

  it('WebSocket (warren.v1): the newer socket takes over and the old one is closed with 4009', async () => {
    const channel = `/${unique('take-ws-')}`;
    const consumer = unique('c');
    const url = `${gw.url.replace('http', 'ws')}/_warren/ws?consumer_id=${consumer}`;
    const open = async (lastEventId?: string) => {
      const ws = new WebSocket(url, 'warren.v1');
      const data: string[] = [];
      const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
      let subscribed!: () => void;
      const ready = new Promise<void>((resolve) => (subscribed = resolve));
      ws.on('message', (raw) => {
        const frame = JSON.parse(String(raw)) as { type: string; data?: string };
        if (frame.type === 'message') data.push(frame.data!);
        if (frame.type === 'subscribed') subscribed();
      });
      await new Promise((resolve, reject) => {
        ws.once('open', resolve);
        ws.once('error', reject);
      });
      ws.send(JSON.stringify({ type: 'subscribe', channel, ...(lastEventId === undefined ? {} : { lastEventId }) }));
      return { ws, data, closed, ready };
    };
    const old = await open();
    await old.ready;
    await publish(channel, 0, 5);
    await until(() => old.data.length === 5, 'the first five on the old socket');
    const newer = await open('id-4');
    try {
      assert.equal(await Promise.race([old.closed, new Promise((r) => setTimeout(() => r('still open'), 5000))]), 4009);
      await newer.ready;
      await publish(channel, 5, 10);
      await until(() => newer.data.length >= 5, 'the next five on the newer socket', 5000);
      assert.deepEqual(newer.data, ['m5', 'm6', 'm7', 'm8', 'm9']);
    } finally {
      old.ws.terminate();
      newer.ws.close();
    }
  });
});
