/**
 * A `warren serve` process for the fault run, always on the same port so
 * that consumers reconnect to a restarted one. An exit the runner did not
 * ask for is a crash: recorded in the history with the end of its output, and
 * the process is started again so the run can go on.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { request } from 'node:http';
import type { History } from './history.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface GatewayProcessOptions {
  bin: string;
  amqpUrl: string;
  port: number;
  token: string;
  history: History;
  /** Told of every exit the runner did not ask for. */
  onExit?: (code: number | null, signal: string | null, tail: string) => void;
  /** Extra `warren serve` arguments. */
  args?: string[];
}

export class GatewayProcess {
  private child: ChildProcess | undefined;
  private expectingExit = false;
  private output = '';
  private stopped = false;
  /** Processes started (the first one included). */
  starts = 0;

  constructor(private readonly options: GatewayProcessOptions) {}

  get base(): string {
    return `http://127.0.0.1:${this.options.port}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Starts the process and waits until it listens. */
  async start(): Promise<void> {
    const o = this.options;
    this.expectingExit = false;
    this.output = '';
    const child = spawn(
      process.execPath,
      [o.bin, 'serve', '--amqp-url', o.amqpUrl, '--port', String(o.port), '--host', '127.0.0.1', '--log-level', 'warn', ...(o.args ?? [])],
      { env: { ...process.env, WARREN_PUBLISH_TOKEN: o.token }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.child = child;
    this.starts += 1;
    const collect = (b: Buffer) => {
      this.output = (this.output + b.toString()).slice(-20_000);
    };
    child.stdout!.on('data', collect);
    child.stderr!.on('data', collect);
    child.on('exit', (code, signal) => {
      if (this.child !== child) return;
      this.child = undefined;
      if (this.expectingExit || this.stopped) return;
      this.options.history.incident({ type: 'gateway-exit', at: Date.now(), code, signal, tail: this.output.slice(-2000) });
      this.options.onExit?.(code, signal, this.output.slice(-2000));
      // Start it again so the run goes on; the crash is already on record.
      setTimeout(() => {
        if (!this.stopped && this.child === undefined) void this.start().catch(() => undefined);
      }, 200);
    });
    const deadline = Date.now() + 15_000;
    while (!/Warren gateway on/.test(this.output)) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`warren serve did not start:\n${this.output}`);
      await sleep(50);
    }
  }

  /** kill -9 of the gateway, then a new process on the same port. */
  async kill9AndRestart(): Promise<void> {
    const child = this.child;
    if (child) {
      this.expectingExit = true;
      const exited = once(child, 'exit');
      child.kill('SIGKILL');
      await exited;
    }
    await this.start();
  }

  /** `GET /_warren/health` status, or 0 when it cannot be reached. */
  health(): Promise<number> {
    return new Promise((resolve) => {
      const req = request(`${this.base}/_warren/health`, { agent: false, timeout: 2000 }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('timeout', () => req.destroy());
      req.on('error', () => resolve(0));
      req.end();
    });
  }

  /** Stops the process (SIGINT: closed at once, not drained; SIGKILL after 5 s). Idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGINT');
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((r) => (timer = setTimeout(r, 5000)));
    await Promise.race([exited, late]);
    clearTimeout(timer);
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  }

  /** A synchronous last resort for process 'exit' handlers. */
  killNow(): void {
    this.stopped = true;
    this.child?.kill('SIGKILL');
  }
}
