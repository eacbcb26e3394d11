/**
 * The fault suite (`npm run chaos`, issue 11).
 *
 * Starts a private RabbitMQ node, a fault proxy in front of it, a
 * `warren serve` process connected through the proxy, a sequenced producer
 * (straight to the node) and one consumer per transport; then runs each fault
 * in its own phase with steady traffic before and after, drains, and checks
 * the history (see history.ts). Prints a table per phase and exits non-zero on
 * any lost confirmed message for an identified consumer, any gateway exit and
 * any hang beyond the stated bounds.
 *
 *   npm run chaos                     every fault (about 5 minutes)
 *   npm run chaos -- --quick          proxy cut, cut-after-connect, black-hole
 *   npm run chaos -- --faults a,b     the named faults
 *   npm run chaos -- --out file.md    also write the report there
 *   npm run chaos -- --heartbeat 5    the gateway's URL with ?heartbeat=5 (default: none, the gateway's --amqp-heartbeat)
 *
 * `CHAOS_QUICK=1` is the same as `--quick`. Loopback only; every child
 * process and the private node are stopped at the end, on failure and on
 * SIGINT/SIGTERM.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { once } from 'node:events';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { FaultProxy } from '../support/fault-proxy.js';
import { RabbitNode } from '../support/rabbit-node.js';
import { Consumer, EventSourceConsumer, LongPollConsumer, RawSseConsumer, WsConsumer, type ConsumerContext } from './consumers.js';
import { FAULTS, QUICK_FAULTS } from './faults.js';
import { GatewayProcess } from './gateway.js';
import { History, formatVerdict, type Bounds, type Phase, type Verdict } from './history.js';
import { SequencedProducer } from './producer.js';

// This file runs from test/dist/chaos/.
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const WARREN_BIN = join(ROOT, 'packages', 'cli', 'bin', 'warren.js');
const TOKEN = 'chaos-token-0123456789abcdef';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface ChaosOptions {
  /** Fault names, in order (see faults.ts). @default every fault */
  faults?: string[];
  /** Steady traffic before each fault. @default 4000 */
  beforeMs?: number;
  /** Steady traffic after each fault. @default 8000 */
  afterMs?: number;
  /** Length of a lasting fault (black-hole, delay, SIGSTOP). @default 10000 */
  faultMs?: number;
  /** Messages per second. @default 200 */
  rate?: number;
  /**
   * AMQP heartbeat the gateway asks for (`?heartbeat=` in its URL); 0 leaves
   * the URL without it, which shows the gateway's own default. @default 0
   */
  heartbeatS?: number;
  /** Filler bytes per message body. @default 0 */
  padBytes?: number;
  /**
   * Longest wait, after the last phase, for missing messages to arrive; the
   * drain also ends once nothing missing has arrived for `drainIdleMs`.
   * @default 120000
   */
  drainMs?: number;
  /** @default 10000 */
  drainIdleMs?: number;
  bounds?: Partial<Bounds>;
  log?: (line: string) => void;
}

export interface ChaosResult {
  verdict: Verdict;
  report: string;
  durationMs: number;
  nodeStartMs: number[];
  sent: number;
}

/**
 * The gateway's stated bounds: a poll is answered by its timeout + 2 s
 * (POLL_GRACE_MS; 0.5 s more for scheduling on a loaded 2-core machine); a
 * silent broker is reported within three heartbeats (4 s by default: 12 s;
 * 15 s allowed).
 */
const DEFAULT_BOUNDS: Bounds = { pollSlackMs: 2500, recoveryMs: 30_000, detectMs: 15_000 };

async function freePort(): Promise<number> {
  const s = createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** Everything a run started, so that one function can stop it all. */
class Rig {
  node: RabbitNode | undefined;
  proxy: FaultProxy | undefined;
  gateway: GatewayProcess | undefined;
  producer: SequencedProducer | undefined;
  consumers: Consumer[] = [];
  private closing: Promise<void> | undefined;

  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const c of this.consumers) c.stop();
      await this.producer?.stop(5000).catch(() => undefined);
      await this.gateway?.stop().catch(() => undefined);
      await this.proxy?.close().catch(() => undefined);
      await this.node?.stop().catch(() => undefined);
    })();
    return this.closing;
  }

  killNow(): void {
    this.gateway?.killNow();
    this.node?.killNow();
  }
}

let activeRig: Rig | undefined;

export async function runChaos(options: ChaosOptions = {}): Promise<ChaosResult> {
  const t0 = Date.now();
  const log = options.log ?? ((line: string) => process.stderr.write(`[chaos +${((Date.now() - t0) / 1000).toFixed(1)}s] ${line}\n`));
  const names = options.faults ?? FAULTS.map((f) => f.name);
  const faults = names.map((n) => {
    const f = FAULTS.find((x) => x.name === n);
    if (!f) throw new Error(`unknown fault ${n}; known: ${FAULTS.map((x) => x.name).join(', ')}`);
    return f;
  });
  const beforeMs = options.beforeMs ?? 4000;
  const afterMs = options.afterMs ?? 8000;
  const faultMs = options.faultMs ?? 10_000;
  const bounds: Bounds = { ...DEFAULT_BOUNDS, ...options.bounds };
  const history = new History(bounds);
  const heartbeatS = options.heartbeatS ?? 0;
  const runId = randomBytes(4).toString('hex');
  const channel = `/chaos/${runId}`;
  const rig = new Rig();
  activeRig = rig;
  // If this process ends abruptly (a test timeout), take the children with it.
  const onExit = () => rig.killNow();
  process.once('exit', onExit);
  try {
    rig.node = await RabbitNode.start({ name: `warren-chaos-${runId}` });
    log(`private RabbitMQ node ${rig.node.nodename} on 127.0.0.1:${rig.node.port} (started in ${rig.node.startTimesMs[0]} ms)`);
    rig.proxy = new FaultProxy({ targetHost: '127.0.0.1', targetPort: rig.node.port });
    const proxyPort = await rig.proxy.listen();
    rig.gateway = new GatewayProcess({
      bin: WARREN_BIN,
      amqpUrl: `amqp://guest:guest@127.0.0.1:${proxyPort}${heartbeatS > 0 ? `?heartbeat=${heartbeatS}` : ''}`,
      port: await freePort(),
      token: TOKEN,
      history,
      // Heartbeats and pings every 5 s, so a live stream is never silent for
      // the stall bound; queues long enough (500 s at 200/s) that their length
      // bound never drops a message and passes for a loss after an outage.
      args: ['--sse-heartbeat', '5s', '--ws-ping-interval', '5s', '--queue-max-length', '100000'],
      onExit: (code, signal, tail) =>
        log(
          `the gateway exited (code ${code}, signal ${signal}); restarting it. Its last output:\n${tail.split('\n').slice(-25).join('\n')}`,
        ),
    });
    await rig.gateway.start();
    log(`warren serve on ${rig.gateway.base}, broker through the fault proxy on ${proxyPort}`);

    const ctx: ConsumerContext = { base: rig.gateway.base, channel, history, pollTimeoutS: 5, stallMs: 20_000 };
    rig.consumers = [
      new LongPollConsumer(`chaos-${runId}-lp`, ctx),
      new RawSseConsumer(`chaos-${runId}-sse`, true, ctx),
      new WsConsumer(`chaos-${runId}-ws`, ctx),
      new EventSourceConsumer(`chaos-${runId}-es`, ctx),
      new RawSseConsumer(`anon-${runId}`, false, ctx),
    ];
    for (const c of rig.consumers) c.start();
    const readyBy = Date.now() + 15_000;
    while ([...history.consumers.values()].some((c) => c.readyAt === undefined)) {
      if (Date.now() > readyBy)
        throw new Error(
          `consumers not ready: ${[...history.consumers.values()]
            .filter((c) => c.readyAt === undefined)
            .map((c) => c.name)
            .join(', ')}`,
        );
      await sleep(50);
    }
    log(`consumers ready: ${rig.consumers.map((c) => c.transport).join(', ')}`);

    rig.producer = new SequencedProducer({
      url: rig.node.url,
      channel,
      runId,
      history,
      rate: options.rate ?? 200,
      padBytes: options.padBytes ?? 0,
    });
    rig.producer.start();

    for (const fault of faults) {
      const phase: Phase = { name: fault.name, startedAt: Date.now(), faultAt: 0, faultEndedAt: 0, endedAt: 0, notes: [] };
      history.phases.push(phase);
      for (const c of rig.consumers) c.phaseStarted();
      await sleep(beforeMs);
      log(`fault ${fault.name}: ${fault.what}`);
      phase.faultAt = Date.now();
      try {
        await fault.run({
          node: rig.node,
          proxy: rig.proxy,
          gateway: rig.gateway,
          phase,
          consumers: rig.consumers,
          faultMs,
          detectBoundMs: bounds.detectMs,
          log,
        });
      } catch (err) {
        phase.notes.push(`the fault itself failed: ${(err as Error).message.split('\n')[0]}`);
        log(`fault ${fault.name} failed: ${(err as Error).message}`);
      }
      phase.faultEndedAt = Date.now();
      log(`fault ${fault.name} over after ${phase.faultEndedAt - phase.faultAt} ms`);
      await sleep(afterMs);
      // A gateway that has not reconnected by the recovery bound would spoil
      // every later phase: record it, and start a new process.
      while ((await rig.gateway.health()) !== 200 && Date.now() - phase.faultEndedAt < bounds.recoveryMs) await sleep(250);
      if ((await rig.gateway.health()) !== 200) {
        history.incident({ type: 'gateway-stuck', at: Date.now(), unhealthyMs: Date.now() - phase.faultEndedAt });
        log(`the gateway is still unhealthy ${Date.now() - phase.faultEndedAt} ms after ${fault.name}: restarting it`);
        await rig.gateway.kill9AndRestart();
        const by = Date.now() + 30_000;
        while ((await rig.gateway.health()) !== 200 && Date.now() < by) await sleep(250);
        await sleep(2000);
      }
      phase.endedAt = Date.now();
    }

    log('stopping the producer, draining');
    // A page would be reloaded: an EventSource closed for good is opened again for the drain (noted).
    for (const c of rig.consumers) c.phaseStarted();
    await rig.producer.stop();
    // Wait while missing messages still arrive (a backlog after a long
    // outage), not for those that stopped coming.
    const drainStart = Date.now();
    const drainBy = drainStart + (options.drainMs ?? 120_000);
    const idleMs = options.drainIdleMs ?? 10_000;
    let missing = history.missing();
    let progressAt = Date.now();
    while (missing > 0 && Date.now() < drainBy && Date.now() - progressAt < idleMs) {
      await sleep(500);
      const now = history.missing();
      if (now < missing) progressAt = Date.now();
      missing = now;
    }
    log(`drained for ${((Date.now() - drainStart) / 1000).toFixed(1)} s (${missing} confirmed messages still missing)`);
    // Deliveries after this point do not count.
    const verdict = history.check();
    const nodeStartMs = [...rig.node.startTimesMs];
    const sent = rig.producer.sent;
    await rig.close();
    return { verdict, report: formatVerdict(verdict, bounds), durationMs: Date.now() - t0, nodeStartMs, sent };
  } finally {
    await rig.close();
    activeRig = undefined;
    process.off('exit', onExit);
  }
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const quick = argv.includes('--quick') || process.env.CHAOS_QUICK === '1';
  const arg = (name: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const faults = arg('--faults')?.split(',') ?? (quick ? QUICK_FAULTS : undefined);
  const out = arg('--out');
  const pad = arg('--pad');
  const heartbeat = arg('--heartbeat');
  const stopOn = (signal: NodeJS.Signals) =>
    process.once(signal, () => {
      process.stderr.write(`\n${signal}: stopping every child process and the private node\n`);
      void (activeRig?.close() ?? Promise.resolve()).finally(() => process.exit(130));
    });
  stopOn('SIGINT');
  stopOn('SIGTERM');
  const result = await runChaos({
    faults,
    ...(pad ? { padBytes: Number(pad) } : {}),
    ...(heartbeat ? { heartbeatS: Number(heartbeat) } : {}),
    ...(quick ? { beforeMs: 3000, afterMs: 6000 } : {}),
  });
  const header = `Fault run of ${new Date().toISOString()}: ${result.sent} messages sent, ${(result.durationMs / 1000).toFixed(0)} s; private node starts ${result.nodeStartMs.join(', ')} ms; gateway URL ${heartbeat === undefined || heartbeat === '0' ? "without ?heartbeat (the gateway's default --amqp-heartbeat, 4 s)" : `with ?heartbeat=${heartbeat}`}.\n\n`;
  process.stdout.write(`${header}${result.report}\n`);
  if (out) writeFileSync(out, `${header}${result.report}\n`);
  process.exitCode = result.verdict.failures.length === 0 ? 0 : 1;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err) => {
    process.stderr.write(`chaos: ${(err as Error).stack ?? err}\n`);
    process.exitCode = 2;
  });
}
