// An identified stream's message written into a connection that is already
// dying (docs/delivery.md, "Acknowledgement"): the socket took it, the client
// never got it. The queue must keep it until the connection has stayed open
// a moment after the write, so that the client's next stream (with its
// Last-Event-ID) gets it instead of losing it.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { FaultProxy } from './support/fault-proxy.js';
import { BROKERS, readSse, startGateway, unique, until, type SseReader, type TestGateway } from './support/index.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const data = (reader: SseReader): string[] => reader.events.filter((e) => e.event === undefined).map((e) => e.data);

for (const kind of BROKERS) {
  describe(`a message written into a dying connection on the ${kind} broker`, () => {
    let gw: TestGateway;
    let proxy: FaultProxy;
    let proxied: string;

    before(async () => {
      gw = await startGateway(kind, { queueExpiresMs: 60_000 });
      proxy = new FaultProxy({ targetHost: '127.0.0.1', targetPort: Number(new URL(gw.url).port) });
      proxied = `http://127.0.0.1:${await proxy.listen()}`;
    });
    after(async () => {
      await proxy.close();
      await gw.close();
    });

    it('is delivered again on the next stream, after the Last-Event-ID the client sends', async () => {
      const channel = `/${unique('receipts-')}`;
      const consumer = unique('c-');
      const first = readSse(proxied, channel, { 'consumer-id': consumer });
      assert.equal(await first.status, 200);
      for (let i = 0; i < 3; i++) await gw.gateway.publish(channel, `m${i}`);
      await until(() => data(first).length === 3, 'the first 3');
      const lastId = first.events.at(-1)!.id!;
      // The path stalls: the gateway's write of m3 succeeds into its socket, the client never sees it.
      proxy.blackhole(true);
      await gw.gateway.publish(channel, 'm3');
      await sleep(200);
      // Then the connection dies (a reset, as a dropped network or a closed laptop gives).
      proxy.cut();
      proxy.blackhole(false);
      await until(() => gw.gateway.stats().streams.identified === 0, 'the gateway to see the stream end');
      await gw.gateway.publish(channel, 'm4');
      const again = readSse(gw.url, channel, { 'consumer-id': consumer, 'last-event-id': lastId });
      await until(() => data(again).length >= 2, 'm3 and m4', 5000).catch((err: unknown) => {
        throw new Error(`${String(err)}: got ${JSON.stringify(data(again))}`);
      });
      await sleep(100);
      again.close();
      assert.deepEqual(data(first), ['m0', 'm1', 'm2']);
      assert.deepEqual(data(again), ['m3', 'm4'], 'm3 again, nothing twice');
    });
  });
}
