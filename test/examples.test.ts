import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
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

describe('examples/greetings-job without what it needs', () => {
  let gw: TestGateway;
  let tokenDir: string;
  before(async () => {
    gw = await startGateway('memory');
    tokenDir = mkdtempSync(join(tmpdir(), 'warren-job-'));
  });
  after(async () => {
    await gw.close();
    rmSync(tokenDir, { recursive: true, force: true });
  });

  // An empty token directory: no `warren serve` token file to fall back on.
  const bare = (): NodeJS.ProcessEnv => ({
    WARREN_AMQP_URL: undefined,
    WARREN_PUBLISH_TOKEN: undefined,
    XDG_RUNTIME_DIR: tokenDir,
    COUNT: '1',
  });

  it('with no publish token, prints one line saying what to set and exits 1', async () => {
    const run = await runExample('examples/greetings-job/job.mjs', { ...bare(), WARREN_URL: gw.url });
    assert.equal(run.code, 1, run.stderr);
    assert.equal(run.stdout, '');
    assert.match(
      run.stderr,
      /^greetings-job: Producer: no publish token for http:\/\/127\.0\.0\.1:\d+: set WARREN_PUBLISH_TOKEN \(the gateway.s --publish-token\) or pass \{ token \}, or run `warren serve` on this machine \(it writes \S+\.token\)\n$/,
    );
  });

  it("with a wrong token, prints one line with the gateway's code and exits 1", async () => {
    const run = await runExample('examples/greetings-job/job.mjs', {
      ...bare(),
      WARREN_URL: gw.url,
      WARREN_PUBLISH_TOKEN: 'wrong-token-0123456789',
    });
    assert.equal(run.code, 1, run.stderr);
    assert.equal(run.stdout, '');
    assert.match(run.stderr, /^greetings-job: UNAUTHORIZED: .+\n$/);
  });
});
