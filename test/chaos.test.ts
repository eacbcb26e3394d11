import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runChaos } from './chaos/run.js';

// The short version of `npm run chaos` (issue 11): a private RabbitMQ node, a
// `warren serve` process behind the fault proxy, a producer at 200 msg/s and a
// consumer per transport, through three faults. The full run is
// `npm run chaos`; its results are in test/chaos/RESULTS.md.
describe('faults between the gateway and RabbitMQ (short version of npm run chaos)', () => {
  it('loses no confirmed message, never exits and never hangs through a cut, cuts right after reconnects and a black-hole', async () => {
    const result = await runChaos({
      faults: ['proxy-cut', 'cut-after-connect', 'proxy-blackhole'],
      beforeMs: 2000,
      afterMs: 5000,
      drainMs: 60_000,
      log: (line) => process.stderr.write(`chaos: ${line.split('\n')[0]}\n`),
    });
    process.stderr.write(`${result.report}\n`);
    assert.deepEqual(result.verdict.failures, [], result.report);
  });
});
