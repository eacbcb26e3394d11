import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AMQP_URL, poll, requireRabbit, ROOT, spawnServe, startGateway, TOKEN, unique } from './support/index.js';

// `new Producer()` in a process of its own, so that the environment is exactly
// the one given: it prints what happened as one JSON line.
const SCRIPT = `
import { Producer, WarrenError } from '@warren/producer';
let producer;
try {
  producer = new Producer();
} catch (err) {
  console.log(JSON.stringify({ at: 'new', name: err.name, warren: err instanceof WarrenError, code: err.code, message: err.message }));
  process.exit(0);
}
try {
  const result = await producer.publish('from the environment').to(process.argv[1]);
  console.log(JSON.stringify({ at: 'published', id: result.id }));
} catch (err) {
  console.log(JSON.stringify({ at: 'publish', name: err.name, code: err.code, message: err.message }));
} finally {
  await producer.close();
}
`;

interface Outcome {
  at: 'new' | 'publish' | 'published';
  name?: string;
  warren?: boolean;
  code?: string;
  message?: string;
  id?: string;
}

/** No WARREN_* from the environment the tests run in; a token directory of its own. */
function cleanEnv(tokenDir: string, env: Record<string, string>): NodeJS.ProcessEnv {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('WARREN_')));
  return { ...base, XDG_RUNTIME_DIR: tokenDir, ...env };
}

async function newProducer(tokenDir: string, env: Record<string, string>, channel = '/unused'): Promise<Outcome> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', SCRIPT, channel], {
    cwd: ROOT,
    env: cleanEnv(tokenDir, env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const [code] = (await once(child, 'close')) as [number | null];
  clearTimeout(timer);
  assert.equal(code, 0, `the script failed:\n${stderr}`);
  return JSON.parse(stdout) as Outcome;
}

describe('new Producer() takes its settings from the environment', () => {
  let tokenDir: string;
  before(() => {
    tokenDir = mkdtempSync(join(tmpdir(), 'warren-producer-env-'));
  });
  after(() => rmSync(tokenDir, { recursive: true, force: true }));

  it('with nothing set, throws a WarrenError that says what to set', async () => {
    const out = await newProducer(tokenDir, {});
    assert.equal(out.at, 'new');
    assert.equal(out.name, 'WarrenError', out.message);
    assert.equal(out.warren, true);
    assert.equal(out.code, 'PRODUCER_NOT_CONFIGURED');
    assert.equal(out.message, 'Producer: no url: set WARREN_AMQP_URL (amqp://…) or WARREN_URL (http://…, a gateway), or pass { url }');
  });

  it('WARREN_AMQP_URL publishes straight to RabbitMQ, and wins over WARREN_URL', async () => {
    await requireRabbit();
    const gw = await startGateway('rabbitmq');
    try {
      const channel = `/${unique('env-amqp-')}`;
      const consumerId = unique('c-');
      await poll(gw.url, channel, { consumerId, timeout: 0 });
      const out = await newProducer(tokenDir, { WARREN_AMQP_URL: AMQP_URL, WARREN_URL: 'http://127.0.0.1:1' }, channel);
      assert.equal(out.at, 'published', out.message);
      const res = await poll(gw.url, channel, { consumerId, timeout: 5 });
      assert.equal(res.body, 'from the environment');
    } finally {
      await gw.close();
    }
  });

  it('WARREN_URL with WARREN_PUBLISH_TOKEN publishes through the gateway', async () => {
    const gw = await startGateway('memory');
    try {
      const channel = `/${unique('env-http-')}`;
      const consumerId = unique('c-');
      await poll(gw.url, channel, { consumerId, timeout: 0 });
      const out = await newProducer(tokenDir, { WARREN_URL: gw.url, WARREN_PUBLISH_TOKEN: TOKEN }, channel);
      assert.equal(out.at, 'published', out.message);
      const res = await poll(gw.url, channel, { consumerId, timeout: 5 });
      assert.equal(res.body, 'from the environment');
    } finally {
      await gw.close();
    }
  });

  it('WARREN_URL alone, on this machine, uses the token file that `warren serve` wrote', async () => {
    const served = await spawnServe([], { XDG_RUNTIME_DIR: tokenDir, WARREN_PUBLISH_TOKEN: '' });
    try {
      assert.match(served.output(), new RegExp(`publish token: generated, in ${tokenDir}/warren-\\d+\\.token`));
      const channel = `/${unique('env-file-')}`;
      const consumerId = unique('c-');
      await poll(served.url, channel, { consumerId, timeout: 0 });
      const out = await newProducer(tokenDir, { WARREN_URL: served.url }, channel);
      assert.equal(out.at, 'published', out.message);
      const res = await poll(served.url, channel, { consumerId, timeout: 5 });
      assert.equal(res.body, 'from the environment');
    } finally {
      await served.stop();
    }
  });

  it('WARREN_URL with no token anywhere throws a WarrenError that says where a token comes from', async () => {
    const gw = await startGateway('memory');
    try {
      const out = await newProducer(tokenDir, { WARREN_URL: gw.url });
      assert.equal(out.at, 'new');
      assert.equal(out.name, 'WarrenError', out.message);
      assert.equal(out.code, 'PRODUCER_NOT_CONFIGURED');
      const port = new URL(gw.url).port;
      assert.equal(
        out.message,
        `Producer: no publish token for ${gw.url}: set WARREN_PUBLISH_TOKEN (the gateway's --publish-token) or pass { token }, or run \`warren serve\` on this machine (it writes ${join(tokenDir, `warren-${port}.token`)})`,
      );
    } finally {
      await gw.close();
    }
  });
});
