import cluster, { type Worker } from 'node:cluster';
import { fileURLToPath } from 'node:url';
import { createLogger, normalizeOptions, OptionError, serveClusterMetrics, type GatewayOptions, type Logger } from '@warren/gateway';
import { removeTokenFile, writeTokenFile } from './token-file.js';
import type { BannerOptions } from './serve.js';

/** Messages between the primary and its workers (over the cluster's IPC channel). */
export type PrimaryMessage = { type: 'warren:start'; input: Record<string, unknown> };
export type WorkerMessage =
  { type: 'warren:waiting' } | { type: 'warren:listening'; port: number } | { type: 'warren:failed'; message: string; status: number };

/** A worker could not start: its message (printed once, by the primary) and exit status. */
export class WorkerStartError extends Error {
  override readonly name = 'WorkerStartError';
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

export interface PrimaryOptions {
  count: number;
  /** The gateway's settings, as `createGateway()` takes them (the publish token set). */
  input: Record<string, unknown>;
  /** Whether the publish token was generated (and so goes into the token file). */
  generated: boolean;
  announce(port: number, options: BannerOptions, tokenFile: string | undefined, workers: number): void;
}

/** A worker that lived this long before it died is restarted at once: its crash is not a loop. */
const STABLE_MS = 30_000;
const RESTART_MIN_MS = 100;
const RESTART_MAX_MS = 10_000;

/**
 * `warren serve --workers n`: this process becomes a node:cluster primary
 * that forks `count` workers, each a gateway on the shared port (the
 * cluster hands out connections round-robin). The primary serves the
 * workers' metrics summed, writes the token file once, forwards signals and
 * restarts a worker that died.
 * @throws OptionError for a bad setting (before any worker starts)
 * @throws WorkerStartError when a worker could not start (the others are stopped)
 */
export async function runPrimary({ count, input, generated, announce }: PrimaryOptions): Promise<void> {
  const options = normalizeOptions(input as GatewayOptions);
  if (options.amqpUrl === undefined) {
    throw new OptionError(
      `--workers ${count} needs --amqp-url / WARREN_AMQP_URL: the embedded broker lives inside one process, so workers could not share messages; run one process, or RabbitMQ`,
    );
  }
  const log = createLogger(options.logLevel);
  const metrics =
    options.metricsPort === undefined ? undefined : serveClusterMetrics({ port: options.metricsPort, host: options.metricsHost }, log);
  await metrics?.listen();
  const pool = new WorkerPool(count, input, log);
  let port: number;
  try {
    port = await pool.start();
  } catch (err) {
    await metrics?.close();
    throw err;
  }
  const tokenFile = generated ? writeTokenFile(port, options.publishToken!) : undefined;
  announce(port, options, tokenFile, count);
  let stopping: Promise<void> | undefined;
  const stop = (signal: 'SIGTERM' | 'SIGINT'): void => {
    stopping ??= pool.stop(signal, options.shutdownTimeoutMs + 5000).then(async (clean) => {
      if (tokenFile !== undefined) removeTokenFile(port);
      await metrics?.close();
      process.exit(clean ? 0 : 1);
    });
  };
  // SIGTERM: every worker drains; SIGINT: every worker closes. The first signal decides.
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => pool.signal('SIGHUP'));
}

/** The workers: forked, watched, restarted with a back-off, stopped together. */
class WorkerPool {
  private readonly workers = new Map<Worker, { forkedAt: number }>();
  private stopping = false;
  /** Settled once every first worker listens, or one of them failed. */
  private starting: { resolve(port: number): void; reject(err: Error): void; listening: number } | undefined;
  private crashes = 0;
  private readonly restarts = new Set<NodeJS.Timeout>();
  private allGone: (() => void) | undefined;

  constructor(
    private readonly count: number,
    private readonly input: Record<string, unknown>,
    private readonly log: Logger,
  ) {
    cluster.setupPrimary({ exec: fileURLToPath(new URL('./worker.js', import.meta.url)), args: [] });
  }

  /** Forks every worker; resolves with the port once all listen. */
  start(): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      this.starting = { resolve, reject, listening: 0 };
      for (let k = 0; k < this.count; k++) this.fork();
    });
  }

  /** Sends `signal` to every worker. */
  signal(signal: NodeJS.Signals): void {
    for (const worker of this.workers.keys()) worker.process.kill(signal);
  }

  /**
   * Stops every worker with `signal` (each drains or closes itself); kills
   * what is left after `timeoutMs`. Resolves `true` when all left by themselves.
   */
  async stop(signal: 'SIGTERM' | 'SIGINT', timeoutMs: number): Promise<boolean> {
    this.stopping = true;
    for (const timer of this.restarts) clearTimeout(timer);
    this.restarts.clear();
    if (this.workers.size === 0) return true;
    const gone = new Promise<void>((resolve) => (this.allGone = resolve));
    this.signal(signal);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
    const clean = await Promise.race([gone.then(() => true), late]);
    clearTimeout(timer);
    if (!clean) {
      this.log.error('workers did not stop in time; killing them', { workers: this.workers.size });
      this.signal('SIGKILL');
      await gone;
    }
    return clean;
  }

  private fork(): void {
    const worker = cluster.fork();
    this.workers.set(worker, { forkedAt: Date.now() });
    worker.on('message', (message: WorkerMessage) => this.received(worker, message));
    worker.on('exit', (code, signal) => this.exited(worker, code, signal));
  }

  private received(worker: Worker, message: WorkerMessage): void {
    if (message.type === 'warren:waiting') {
      const start: PrimaryMessage = { type: 'warren:start', input: this.input };
      worker.send(start);
    } else if (message.type === 'warren:listening') {
      if (this.starting === undefined) {
        this.log.info('worker restarted', { pid: worker.process.pid });
      } else if (++this.starting.listening === this.count) {
        this.starting.resolve(message.port);
        this.starting = undefined;
      }
    } else if (message.type === 'warren:failed' && this.starting !== undefined) {
      this.failStart(new WorkerStartError(message.message, message.status));
    }
  }

  private exited(worker: Worker, code: number | null, signal: string | null): void {
    const { forkedAt } = this.workers.get(worker)!;
    this.workers.delete(worker);
    if (this.workers.size === 0) this.allGone?.();
    if (this.stopping) return;
    if (this.starting !== undefined) {
      this.failStart(new WorkerStartError(`a worker exited while starting (${signal ?? `status ${code}`})`, 1));
      return;
    }
    if (Date.now() - forkedAt > STABLE_MS) this.crashes = 0;
    const delay = Math.min(RESTART_MIN_MS * 2 ** this.crashes, RESTART_MAX_MS);
    this.crashes++;
    this.log.error('worker died; restarting it', { pid: worker.process.pid, code, signal, restartInMs: delay });
    const timer = setTimeout(() => {
      this.restarts.delete(timer);
      if (!this.stopping) this.fork();
    }, delay);
    this.restarts.add(timer);
  }

  /** A first worker failed: stop the others (at once), then reject `start()`. */
  private failStart(err: WorkerStartError): void {
    const starting = this.starting!;
    this.starting = undefined;
    void this.stop('SIGINT', 10_000).then(() => starting.reject(err));
  }
}
