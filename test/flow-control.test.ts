import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { Producer } from '@warren/producer';
import { AMQP_URL, curl, rabbitQueues, readSse, requireRabbit, spawnServe, TOKEN, unique, until, stalledSse } from './support/index.js';

/** Resident memory of a process, in bytes (Linux). */
function rss(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(m);
  return Number(m![1]) * 1024;
}

describe('backpressure for an identified stream that stops reading (RabbitMQ)', () => {
  let served: Awaited<ReturnType<typeof spawnServe>>;
  before(async () => {
    await requireRabbit();
    served = await spawnServe(['--stream-prefetch', '64'], { WARREN_AMQP_URL: AMQP_URL, WARREN_PUBLISH_TOKEN: TOKEN });
  });
  after(() => served.stop());

  it("keeps the backlog of 10,000 messages in RabbitMQ, the gateway's memory bounded, and other streams flowing", async () => {
    const stats = async () => JSON.parse(await curl(['-H', `Authorization: Bearer ${TOKEN}`, `${served.url}/_warren/stats`]));
    const flood = `/${unique('flood-')}`;
    const other = `/${unique('other-')}`;
    const slowId = unique('slow-');
    const slow = stalledSse(served.url, `${flood}?consumer_id=${slowId}`);
    const fast = readSse(served.url, `${other}?consumer_id=${unique('fast-')}`);
    await until(async () => (await stats()).streams.identified === 2, 'both streams to consume');
    const pid = served.child.pid!;
    const before = rss(pid);

    const producer = new Producer({ url: AMQP_URL });
    const body = 'x'.repeat(4096);
    const latencies: number[] = [];
    let flooding = true;
    const probe = (async () => {
      for (let i = 0; flooding; i++) {
        const sent = Date.now();
        await producer.publish(String(sent), { id: `probe-${i}` }).to(other);
        await until(() => fast.events.some((e) => e.id === `probe-${i}`), `probe ${i}`, 10_000, 5);
        latencies.push(Date.now() - sent);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    let peak = before;
    for (let i = 0; i < 10_000; i += 200) {
      await Promise.all(Array.from({ length: 200 }, (_, j) => producer.publish(body, { id: `f-${i + j}` }).to(flood)));
      peak = Math.max(peak, rss(pid));
    }
    await new Promise((r) => setTimeout(r, 500));
    peak = Math.max(peak, rss(pid));
    flooding = false;
    await probe;
    await producer.close();

    const s = await stats();
    const queued = Number((await rabbitQueues(`warren:${slowId}:`)).length);
    assert.equal(queued, 1);
    // How much of the flood reached the gateway at all: prefetch plus what the kernel's socket buffers took.
    const taken = s.broker.delivered - latencies.length;
    console.log(
      `# backpressure: rss before ${(before / 2 ** 20).toFixed(1)} MiB, peak ${(peak / 2 ** 20).toFixed(1)} MiB; flood messages taken by the gateway ${taken} of 10000; probes ${latencies.length}, max latency ${Math.max(...latencies)} ms`,
    );
    assert.ok(taken < 2000, `the gateway took only what the socket could hold, not the backlog (${taken})`);
    assert.ok(peak - before < 32 * 2 ** 20, `resident memory grew ${(peak - before) / 2 ** 20} MiB; the bound is 32 MiB`);
    assert.ok(latencies.length >= 5, 'the other stream was probed during the flood');
    assert.ok(Math.max(...latencies) < 1000, `the other stream kept flowing (max ${Math.max(...latencies)} ms)`);
    slow.destroy();
    fast.close();
  });
});
