import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { chromium, type Browser } from 'playwright-core';
import { Producer } from '@warren/producer';
import { AMQP_URL, unique, until } from '../support/index.js';
import { startProxiedGateway, type ProxiedGateway } from './support.js';

const CHROMIUM = process.env.WARREN_TEST_CHROMIUM ?? '/usr/bin/chromium';

// Issue 11, fault 3, in a real browser: chromium's own EventSource closes for
// good on a 503 (it did, during a broker outage longer than the retry hint).
describe("chromium's native EventSource through a broker outage", { timeout: 120_000 }, () => {
  let gw: ProxiedGateway;
  let producer: Producer;
  let browser: Browser;
  before(async () => {
    gw = await startProxiedGateway({ sseRetryMs: 200, sseHeartbeatMs: 500 });
    producer = new Producer({ url: AMQP_URL });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    });
  });
  after(async () => {
    await browser?.close();
    await producer?.close();
    await gw?.close();
  });

  it('keeps the EventSource open and delivers what is published after the broker is back', async () => {
    const channel = `/${unique('browser-outage-')}`;
    const page = await browser.newPage();
    // Any page of the gateway's origin: the EventSource is same-origin.
    await page.goto(`${gw.url}/_warren/health`);
    await page.evaluate(
      (url) => {
        const w = globalThis as unknown as { got: string[]; es: EventSource };
        w.got = [];
        w.es = new EventSource(url);
        w.es.onmessage = (e) => w.got.push(String(e.data));
      },
      `${channel}?consumer_id=${unique('c')}`,
    );
    const got = (): Promise<string[]> => page.evaluate(() => (globalThis as unknown as { got: string[] }).got);
    const state = (): Promise<number> => page.evaluate(() => (globalThis as unknown as { es: EventSource }).es.readyState);
    await until(async () => (await state()) === 1, 'the EventSource to open');
    for (let i = 0; i < 3; i++) await producer.publish(`before-${i}`).to(channel);
    await until(async () => (await got()).length === 3, 'the messages before the outage');

    gw.proxy.refuse(true);
    gw.proxy.cut();
    await sleep(2500);
    assert.notEqual(await state(), 2, 'chromium closed the EventSource for good during the outage');
    gw.proxy.refuse(false);
    await until(() => gw.gateway.broker.ready, 'the gateway to reconnect', 15_000);

    for (let i = 0; i < 3; i++) await producer.publish(`after-${i}`).to(channel);
    await until(
      async () => (await got()).filter((m) => m.startsWith('after-')).length === 3 || (await state()) === 2,
      'the messages after the outage',
      15_000,
    );
    assert.notEqual(await state(), 2, 'chromium closed the EventSource for good');
    assert.deepEqual([...new Set(await got())], ['before-0', 'before-1', 'before-2', 'after-0', 'after-1', 'after-2']);
    await page.close();
  });
});
