import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AMQP_URL, poll, ROOT, startGateway, TOKEN, unique, type TestGateway } from './support/index.js';

async function runExample(file: string, env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [join(ROOT, file)], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const [code] = (await once(child, 'close')) as [number | null];
  clearTimeout(timer);
  return { code, stdout, stderr };
}

for (const kind of ['memory', 'rabbitmq'] as const) {
  describe(`examples/greetings-job on the ${kind} broker`, () => {
    let gw: TestGateway;
    before(async () => {
      gw = await startGateway(kind);
    });
    after(() => gw.close());

    it('publishes JSON greetings with an event name that a consumer receives in order', async () => {
      const consumerId = unique('job-');
      await poll(gw.url, '/greetings', { consumerId, timeout: 0 });
      const env = kind === 'memory' ? { WARREN_URL: gw.url, WARREN_PUBLISH_TOKEN: TOKEN } : { WARREN_AMQP_URL: AMQP_URL };
      const run = await runExample('examples/greetings-job/job.mjs', { ...env, COUNT: '3', INTERVAL_MS: '20' });
      assert.equal(run.code, 0, run.stderr);
      assert.equal(run.stdout.split('\n').filter((l) => l.startsWith('published greeting')).length, 3);
      for (let n = 1; n <= 3; n++) {
        const res = await poll(gw.url, '/greetings', { consumerId, timeout: 2 });
        assert.equal(res.headers['warren-event'], 'greeting');
        assert.equal(JSON.parse(res.body).n, n);
      }
    });
  });
}
