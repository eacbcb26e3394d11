// examples/app-in-front, run as its one command (`node examples/app-in-front/run.mjs`:
// the chat app plus a `warren serve` process in front of it with --upstream and
// --auth-url, embedded broker, free ports) and used by real chromium pages:
// log in, chat over the WebSocket → app → producer → channel loop, private
// channels, and the refusals of the app's auth endpoint.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { WebSocket } from 'ws';
import { rawRequest, ROOT, spawnNode, unique, until } from './support/index.js';

const CHROMIUM = process.env.WARREN_TEST_CHROMIUM ?? '/usr/bin/chromium';
const SCREENSHOT = join(ROOT, 'test', 'artifacts', 'app-in-front.png');
const TIMEOUT = 60_000;
const WAIT = 10_000;

interface Running {
  child: ChildProcess;
  /** The gateway's URL, from the printed `open <url>/`. */
  url: string;
  appUrl: string;
  output(): string;
  /** SIGTERM, then SIGKILL after 8 s. Resolves with the exit code (null if killed). */
  stop(): Promise<number | null>;
}

async function startExample(): Promise<Running> {
  // Embedded broker, its own gateway: whatever WARREN_* this environment has is not for the example.
  const proc = spawnNode([join(ROOT, 'examples', 'app-in-front', 'run.mjs')], {
    env: { PORT: '0', GATEWAY_PORT: '0' },
    withoutWarrenEnv: true,
    killAfterMs: 8000,
  });
  const { child } = proc;
  const stop = (): Promise<number | null> => proc.stop();
  try {
    const url = (await proc.waitFor(/^open (http:\/\/\S+)\/$/m, 20_000))[1]!;
    const appUrl = /^app: (http:\/\/\S+)/m.exec(proc.output())?.[1];
    if (appUrl === undefined) throw new Error(`run.mjs did not start:\n${proc.output()}`);
    return { child, url, appUrl, output: () => proc.output(), stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Opens a WebSocket and resolves with 101 once it is open (then closes it), or with the HTTP status it was refused with. */
function upgradeStatus(url: string, headers: Record<string, string> = {}, protocol?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocol === undefined ? [] : [protocol], { headers });
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`no answer to the upgrade of ${url}`));
    }, WAIT);
    ws.once('open', () => {
      clearTimeout(timer);
      ws.close();
      resolve(101);
    });
    ws.once('unexpected-response', (_req, res) => {
      clearTimeout(timer);
      res.resume();
      resolve(res.statusCode ?? 0);
      ws.terminate();
    });
    ws.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** A warren.v1 socket that collects its frames. */
async function warrenSocket(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ ws: WebSocket; frames: Array<Record<string, any>> }> {
  const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/_warren/ws`, 'warren.v1', { headers });
  const frames: Array<Record<string, any>> = [];
  ws.on('message', (d) => frames.push(JSON.parse(d.toString()) as Record<string, any>));
  ws.on('error', () => undefined);
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      once(ws, 'open'),
      new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('the socket did not open')), WAIT))),
    ]);
  } catch (err) {
    ws.terminate();
    throw err;
  } finally {
    clearTimeout(timer);
  }
  return { ws, frames };
}

describe('examples/app-in-front: the app behind the gateway, in chromium', { timeout: 3 * TIMEOUT }, () => {
  let example: Running | undefined;
  let browser: Browser | undefined;
  const contexts: BrowserContext[] = [];
  const pages: Record<string, Page> = {};
  const forged = unique('forged-');
  const pageErrors: string[] = [];

  before(async () => {
    example = await startExample();
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
      timeout: 30_000,
    });
  });
  after(async () => {
    for (const context of contexts) await context.close().catch(() => undefined);
    await browser?.close().catch(() => undefined);
    await example?.stop();
  });

  /** A new browser (context) that logs in as `name` through the login page and waits for the chat to be online. */
  async function logIn(name: string): Promise<Page> {
    const context = await browser!.newContext();
    contexts.push(context);
    context.setDefaultTimeout(WAIT);
    const page = await context.newPage();
    // Script errors and console errors (a Content-Security-Policy violation is one) fail the test below.
    page.on('pageerror', (err) => pageErrors.push(`${name}: ${err.message}`));
    page.on('console', (message) => message.type() === 'error' && pageErrors.push(`${name}: ${message.text()}`));
    await page.goto(`${example!.url}/`);
    await page.fill('#name', name);
    await Promise.all([page.waitForURL(`${example!.url}/chat`), page.click('#login')]);
    await page.locator('#status', { hasText: 'online' }).waitFor();
    pages[name] = page;
    return page;
  }

  const line = (page: Page, kind: string, text: string) => page.locator(`#log li.${kind}`, { hasText: text });
  async function say(page: Page, text: string): Promise<void> {
    await page.fill('#text', text);
    await page.click('#send');
    // The page empties the field once the app accepted the message.
    await until(async () => (await page.inputValue('#text')) === '', 'the message to be accepted', WAIT, 50);
  }

  it('refuses a client without a session: 401 on subscription, and no sending as someone else', { timeout: TIMEOUT }, async () => {
    const { url } = example!;
    const poll = await rawRequest(url, '/live/rooms/lobby?timeout=0');
    assert.equal(poll.status, 401);
    assert.equal(JSON.parse(poll.body).code, 'UNAUTHORIZED');
    assert.equal(await upgradeStatus(`${url.replace('http', 'ws')}/live/rooms/lobby`), 401, 'a WebSocket on the channel');

    const { ws, frames } = await warrenSocket(url);
    try {
      ws.send(JSON.stringify({ type: 'subscribe', channel: '/live/rooms/lobby' }));
      ws.send(JSON.stringify({ type: 'send', id: 'x1', channel: '/live/rooms/lobby', data: { text: 'hi' } }));
      await until(() => frames.length >= 2, 'two answers', WAIT);
      const subscribe = frames.find((f) => f.id === undefined)!;
      assert.equal(subscribe.type, 'error');
      assert.equal(subscribe.code, 'UNAUTHORIZED');
      assert.equal(subscribe.channel, '/live/rooms/lobby');
      assert.deepEqual(
        { type: frames.find((f) => f.id === 'x1')!.type, code: frames.find((f) => f.id === 'x1')!.code },
        { type: 'error', code: 'UNAUTHORIZED' },
      );
    } finally {
      ws.close();
    }

    const chat = await rawRequest(url, '/chat');
    assert.equal(chat.status, 303);
    assert.equal(chat.headers.location, '/');

    // A POST to a channel is proxied to the app, but the gateway drops a
    // client's Warren-Consumer-Id, so the app cannot be told who is talking.
    const post = await rawRequest(url, '/live/rooms/lobby', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'warren-consumer-id': 'alice' },
      body: JSON.stringify({ text: forged }),
    });
    assert.equal(post.status, 401);
    assert.match(JSON.parse(post.body).error, /gateway's WebSocket/);
  });

  it('alice and bob log in and chat: page → WebSocket → app → producer → channel → every page', { timeout: TIMEOUT }, async () => {
    const bob = await logIn('bob');
    const alice = await logIn('alice');

    // The session cookie: HttpOnly, SameSite=Lax, so no script and no other site's request carries it.
    const [cookie] = (await alice.context().cookies()).filter((c) => c.name === 'sid');
    assert.ok(cookie, 'a session cookie');
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.sameSite, 'Lax');

    // Each user's private channel: the welcome notice, to that user only.
    await line(bob, 'notice', 'Welcome, bob. Nobody else is signed in yet.').waitFor();
    await line(alice, 'notice', 'Welcome, alice. Also signed in: bob.').waitFor();
    assert.equal(await line(alice, 'notice', 'Welcome, bob').count(), 0, "bob's notice is not on alice's page");

    // alice types in the page; both pages get it back from the channel.
    const hello = unique('hello from alice ');
    await say(alice, hello);
    await line(alice, 'chat', `alice: ${hello}`).waitFor();
    await line(bob, 'chat', `alice: ${hello}`).waitFor();

    const answer = unique('hi alice, bob here ');
    await say(bob, answer);
    await line(alice, 'chat', `bob: ${answer}`).waitFor();
    await line(bob, 'chat', `bob: ${answer}`).waitFor();

    // A direct message goes to both private channels, not to the room.
    const secret = unique('psst ');
    await say(alice, `/msg bob ${secret}`);
    await line(bob, 'direct', `alice → bob (private): ${secret}`).waitFor();
    await line(alice, 'direct', `alice → bob (private): ${secret}`).waitFor();
    assert.equal(await line(bob, 'chat', secret).count(), 0);

    // The app refuses what it must, and the page says so.
    await alice.fill('#text', '/msg nobody-here hi');
    await alice.click('#send');
    await line(alice, 'error', 'not sent: nobody called nobody-here is signed in').waitFor();

    // Someone who comes later gets what was said from the app (the answer to its hello), once.
    const carol = await logIn('carol');
    await line(carol, 'notice', 'Welcome, carol. Also signed in: alice, bob.').waitFor();
    await line(carol, 'chat', `alice: ${hello}`).waitFor();
    await line(carol, 'chat', `bob: ${answer}`).waitFor();
    assert.equal(await line(carol, 'chat', hello).count(), 1);
    assert.equal(await line(carol, 'direct', secret).count(), 0, 'a direct message is not in the room history');

    // Each page saw each message once, and the forged POST of the previous test nowhere.
    for (const page of [alice, bob]) {
      assert.equal(await line(page, 'chat', hello).count(), 1);
      assert.equal(await line(page, 'direct', secret).count(), 1);
      assert.equal(await page.locator('#log li', { hasText: forged }).count(), 0);
    }

    // The refused '/msg nobody-here' is a 404 in the app's answer, not a page error.
    assert.deepEqual(pageErrors, []);

    mkdirSync(join(ROOT, 'test', 'artifacts'), { recursive: true });
    await bob.screenshot({ path: SCREENSHOT, fullPage: true });
  });

  it("alice cannot subscribe to bob's private channel, nor send to it", { timeout: TIMEOUT }, async () => {
    const alice = pages.alice;
    assert.ok(alice, 'alice is logged in (previous test)');
    // From alice's own page: her cookie (HttpOnly) goes with the upgrade, her page's origin is the gateway's.
    const frames = await alice.evaluate(async () => {
      // In the page: its own WebSocket and location (not the `ws` package's).
      const page = globalThis as any;
      const ws = new page.WebSocket(`ws://${page.location.host}/_warren/ws`, 'warren.v1');
      const seen: unknown[] = [];
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out; frames: ${JSON.stringify(seen)}`)), 8000);
        ws.onerror = () => reject(new Error('the socket failed'));
        ws.onopen = () => {
          ws.send(JSON.stringify({ type: 'subscribe', channel: '/live/users/bob' }));
          ws.send(JSON.stringify({ type: 'send', id: 'dm', channel: '/live/users/bob', data: { hello: true } }));
          ws.send(JSON.stringify({ type: 'subscribe', channel: '/live/users/alice' }));
        };
        ws.onmessage = (event: { data: string }) => {
          seen.push(JSON.parse(event.data));
          if (seen.length === 3) {
            clearTimeout(timer);
            resolve();
          }
        };
      });
      ws.close();
      return seen as Array<Record<string, string>>;
    });
    const subscribe = frames.find((f) => f.type === 'error' && f.id === undefined);
    assert.deepEqual(subscribe && { code: subscribe.code, channel: subscribe.channel }, { code: 'FORBIDDEN', channel: '/live/users/bob' });
    const send = frames.find((f) => f.id === 'dm');
    assert.deepEqual(send && { type: send.type, code: send.code }, { type: 'error', code: 'FORBIDDEN' });
    assert.ok(
      frames.some((f) => f.type === 'subscribed' && f.channel === '/live/users/alice'),
      'her own channel is fine',
    );

    // The same with the `ws` package and alice's cookie, on the channel paths.
    const cookie = (await alice.context().cookies()).map((c) => `${c.name}=${c.value}`).join('; ');
    const wsUrl = example!.url.replace('http', 'ws');
    assert.equal(await upgradeStatus(`${wsUrl}/live/users/bob`, { cookie }), 403);
    assert.equal(await upgradeStatus(`${wsUrl}/live/users/bob?consumer_id=bob`, { cookie }), 403, 'naming a consumer id changes nothing');
    assert.equal(await upgradeStatus(`${wsUrl}/live/users/alice`, { cookie }), 101);
    // A page of another site cannot use alice's cookie (cross-site WebSocket hijacking).
    assert.equal(await upgradeStatus(`${wsUrl}/live/users/alice`, { cookie, origin: 'http://evil.example' }), 403);
    // Nor can it log her in as someone else (login CSRF).
    const login = await rawRequest(example!.url, '/login', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: 'http://evil.example' },
      body: 'name=mallory',
    });
    assert.equal(login.status, 403);
  });

  it('logging out ends the session at once, and the one command stops both processes on SIGTERM', { timeout: TIMEOUT }, async () => {
    const bob = pages.bob;
    assert.ok(bob, 'bob is logged in');
    const cookie = (await bob.context().cookies()).map((c) => `${c.name}=${c.value}`).join('; ');
    // Another of bob's sockets, open before he logs out.
    const { ws, frames } = await warrenSocket(example!.url, { cookie });
    try {
      ws.send(JSON.stringify({ type: 'subscribe', channel: '/live/rooms/lobby' }));
      await until(() => frames.some((f) => f.type === 'subscribed'), 'the subscription', WAIT);
      await Promise.all([bob.waitForURL(`${example!.url}/`), bob.click('#logout')]);
      await bob.locator('#name').waitFor();
      // Its sends are refused at once: by the app (its session is gone), or by the gateway
      // once its cached auth decision (--auth-cache, 5 s) has expired.
      ws.send(JSON.stringify({ type: 'send', id: 'late', channel: '/live/rooms/lobby', data: { text: 'after logout' } }));
      await until(() => frames.some((f) => f.id === 'late'), 'an answer', WAIT);
      const late = frames.find((f) => f.id === 'late')!;
      assert.ok(late.status === 401 || late.code === 'UNAUTHORIZED', JSON.stringify(late));
    } finally {
      ws.close();
    }
    // The old cookie no longer opens anything (new credentials: no cached decision).
    const poll = await rawRequest(example!.url, '/live/users/bob?timeout=0', { headers: { cookie: `${cookie}; x=1` } });
    assert.equal(poll.status, 401);

    const { url, appUrl } = example!;
    assert.equal(await example!.stop(), 0, `run.mjs exits 0; its output:\n${example!.output()}`);
    for (const base of [url, appUrl]) {
      await assert.rejects(rawRequest(base, '/'), /ECONNREFUSED/, `${base} is closed`);
    }
  });
});
