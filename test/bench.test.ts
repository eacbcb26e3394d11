import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { spawnNode } from './support/index.js';

// A smoke run of the benchmark harness with tiny numbers (`--quick`): every
// scenario runs against RabbitMQ, the ceilings beside Warren, and the report
// is written. Figures are not judged here (`npm run bench` is for that);
// correctness is: nothing lost, duplicated or out of order. And it stays
// cheap (issue 17): the harness's own "done in N s" is under 120 s.
describe('npm run bench -- --quick (smoke run of the harness)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'warren-bench-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('runs every scenario with its ceiling and writes the report', { timeout: 240_000 }, async () => {
    const out = join(dir, 'results.md');
    const run = spawnNode(['bench/run.mjs', '--quick', '--out', out], { withoutWarrenEnv: true, killAfterMs: 10_000 });
    let done: RegExpExecArray;
    try {
      done = await run.waitFor(/done in (\d+) s; results in /, 200_000);
    } finally {
      assert.equal(await run.stop(), 0, run.output());
    }
    const seconds = Number(done[1]);
    assert.ok(seconds < 120, `the quick run took ${seconds} s, over its 120 s bound:\n${run.output()}`);
    const md = readFileSync(out, 'utf8');
    const json = JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8')) as {
      results: { fanout: unknown[]; idle: unknown[]; connections: unknown[] };
    };
    for (const heading of [
      '## Targets',
      '## Fan-out throughput',
      '## Latency at 10 msg/s',
      '## Memory per idle connection',
      '## 200 connections on one process',
      '## Reconnect churn',
      '## Long-poll with messages waiting',
    ]) {
      assert.ok(md.includes(heading), `the report has ${heading}`);
    }
    for (const ceiling of ['Node ceiling SSE', 'Node ceiling WS', 'RabbitMQ ceiling (amqplib)'])
      assert.ok(md.includes(ceiling), `the report compares with ${ceiling}`);
    assert.match(md, /\| Anonymous SSE fan-out ÷ Node ceiling, 50 subscribers \(deliveries\/s\) \| \d+\.\d\d× /);
    for (const transport of ['SSE', 'WS'])
      assert.match(
        md,
        new RegExp(
          `\\| 200 concurrent anonymous ${transport} connections on one gateway process: none refused or dropped, every message delivered \\| 0 refused, 0 dropped, 1,000/1,000 delivered; Node ceiling: 0 refused, 0 dropped, 1,000/1,000 delivered \\| all \\| \\*\\*pass\\*\\* \\|`,
        ),
      );
    assert.match(md, /\| Every Warren stream scenario: nothing lost, duplicated or out of order \| exact \| exact \| \*\*pass\*\* \|/);
    assert.doesNotMatch(md, /\*\*FAIL\*\*/, 'no correctness check failed (rates are not judged on a quick run)');
    assert.ok(json.results.fanout.length >= 14, 'every fan-out scenario ran');
    assert.equal(json.results.idle.length, 4);
    assert.equal(json.results.connections.length, 4);
  });
});
