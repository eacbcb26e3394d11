/**
 * A private RabbitMQ node for the fault suite, so that stopping, pausing or
 * killing it never disturbs the machine's own broker on 5672 (which other
 * tests use).
 *
 * The node gets its own directory under the system temp dir (owned by the
 * `rabbitmq` user), its own config file (the machine's
 * /etc/rabbitmq/rabbitmq.conf pins the listener to 5672), its own env file
 * (the machine's sets NODENAME), no plugins, and free ports picked at start.
 * It runs as the `rabbitmq` user (`runuser`) when started as root, so it shares
 * that user's Erlang cookie with `rabbitmqctl`.
 *
 * Measured on the project's machine (2 cores, RabbitMQ 3.10.8, Erlang 25,
 * 2026-12-02): a fresh node answers `await_startup` 4.6 to 6.5 s after spawn
 * when the machine is otherwise idle (up to 8 s beside a running gateway and
 * clients); a restart after `kill -9` on the same data takes about 4.5 s;
 * `stop_app` + `start_app` about 2 s; a clean stop 1.5 s. Each `rabbitmqctl`
 * run costs most of a second of CPU, which is most of that.
 *
 * @example
 * const node = await RabbitNode.start();
 * // amqp://guest:guest@127.0.0.1:${node.port}
 * await node.pause(); await node.resume();
 * await node.stop();
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, chownSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { promisify } from 'node:util';

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resolves true when `p` settles within `ms`, else false; leaves no timer behind. */
async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms)));
  try {
    return await Promise.race([p.then(() => true), late]);
  } finally {
    clearTimeout(timer);
  }
}

/** The server script itself, not the /usr/sbin wrapper that re-runs it through `su`. */
const SERVER = '/usr/lib/rabbitmq/bin/rabbitmq-server';
const CTL = 'rabbitmqctl';

async function portFree(port: number): Promise<boolean> {
  const server = createServer();
  // Not events.once(server, 'listening'): it rejects on 'error' (the port in use).
  const ok = await new Promise<boolean>((resolve) => {
    server.once('error', () => resolve(false));
    server.once('listening', () => resolve(true));
    server.listen(port, '127.0.0.1');
  });
  if (ok) await new Promise((r) => server.close(r));
  return ok;
}

/** The first `base + k` for which both `base + k` and `distBase + k` are free. */
async function freePorts(base: number, distBase: number): Promise<[number, number]> {
  for (let k = 0; k < 200; k++) {
    if ((await portFree(base + k)) && (await portFree(distBase + k))) return [base + k, distBase + k];
  }
  throw new Error(`RabbitNode: no free port pair from ${base}/${distBase}`);
}

function rabbitmqIds(): { uid: number; gid: number } | undefined {
  for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
    const f = line.split(':');
    if (f[0] === 'rabbitmq') return { uid: Number(f[2]), gid: Number(f[3]) };
  }
  return undefined;
}

export interface RabbitNodeOptions {
  /** Node name without host. @default `warren-chaos-<pid>` */
  name?: string;
  /** Lowest AMQP port to try. @default 5673 */
  basePort?: number;
  /** Lowest distribution port to try. @default 25673 */
  baseDistPort?: number;
  /** Longest wait for the node to start. @default 60000 */
  startTimeoutMs?: number;
  /** Runs the management plugin, its HTTP API on a free port from 15673 (see `managementUrl`). @default false */
  management?: boolean;
}

export class RabbitNode {
  /** How long each start (first and restarts) took, in ms. */
  readonly startTimesMs: number[] = [];
  private server: ChildProcess | undefined;
  private paused = false;
  private stopped = false;
  private log = '';

  private constructor(
    readonly nodename: string,
    readonly port: number,
    readonly distPort: number,
    readonly dir: string,
    private readonly startTimeoutMs: number,
  ) {}

  /** Creates the node's directory and config, starts it and waits until it is up. */
  static async start(options: RabbitNodeOptions = {}): Promise<RabbitNode> {
    const [port, distPort] = await freePorts(options.basePort ?? 5673, options.baseDistPort ?? 25673);
    let managementPort: number | undefined;
    if (options.management) for (let p = 15673; managementPort === undefined && p < 15873; p++) if (await portFree(p)) managementPort = p;
    if (port === 5672) throw new Error('RabbitNode: refusing port 5672 (the machine broker)');
    const name = `${options.name ?? `warren-chaos-${process.pid}`}@localhost`;
    const dir = mkdtempSync(join(tmpdir(), 'warren-rabbit-'));
    mkdirSync(join(dir, 'mnesia'));
    mkdirSync(join(dir, 'log'));
    const managementConf = managementPort === undefined ? '' : `management.tcp.port = ${managementPort}\nmanagement.tcp.ip = 127.0.0.1\n`;
    writeFileSync(join(dir, 'rabbitmq.conf'), `listeners.tcp.local = 127.0.0.1:${port}\nloopback_users = none\n${managementConf}`);
    writeFileSync(join(dir, 'enabled_plugins'), managementPort === undefined ? '[].\n' : '[rabbitmq_management].\n');
    writeFileSync(join(dir, 'rabbitmq-env.conf'), '');
    const ids = process.getuid?.() === 0 ? rabbitmqIds() : undefined;
    if (ids)
      for (const f of ['', 'mnesia', 'log', 'rabbitmq.conf', 'enabled_plugins', 'rabbitmq-env.conf'])
        chownSync(join(dir, f), ids.uid, ids.gid);
    const node = new RabbitNode(name, port, distPort, dir, options.startTimeoutMs ?? 60_000);
    node.managementPort = managementPort;
    try {
      await node.launch();
    } catch (err) {
      await node.stop();
      throw err;
    }
    return node;
  }

  /** The management plugin's port, when started with `management`. */
  managementPort: number | undefined;

  /** The management HTTP API (`http://guest:guest@127.0.0.1:<port>`), when started with `management`. */
  get managementUrl(): string | undefined {
    return this.managementPort === undefined ? undefined : `http://guest:guest@127.0.0.1:${this.managementPort}`;
  }

  get url(): string {
    return `amqp://guest:guest@127.0.0.1:${this.port}`;
  }

  /** What the server script printed (for failure reports). */
  output(): string {
    return this.log.slice(-4000);
  }

  /** Runs `rabbitmqctl -n <node> ...args`. */
  async ctl(...args: string[]): Promise<string> {
    const { stdout } = await run(CTL, ['-n', this.nodename, ...args], { timeout: 60_000 });
    return stdout;
  }

  /** `rabbitmqctl stop_app`: the node stays up, AMQP goes away. */
  async stopApp(): Promise<void> {
    await this.ctl('stop_app');
  }

  async startApp(): Promise<void> {
    await this.ctl('start_app');
    await this.ctl('await_startup', '--timeout', String(Math.ceil(this.startTimeoutMs / 1000)));
  }

  async closeAllConnections(reason = 'warren chaos'): Promise<void> {
    await this.ctl('close_all_connections', reason);
  }

  /** The beam process's pid (from the pid file the node writes). */
  beamPid(): number {
    const pid = Number(readFileSync(join(this.dir, 'pid'), 'utf8').trim());
    if (!Number.isInteger(pid) || pid <= 1) throw new Error('RabbitNode: no pid');
    return pid;
  }

  /** SIGSTOP of the node: sockets stay open, nothing answers. */
  pause(): void {
    process.kill(this.beamPid(), 'SIGSTOP');
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    process.kill(this.beamPid(), 'SIGCONT');
    this.paused = false;
  }

  /** kill -9 of the node; waits until the server process is gone. */
  async kill9(): Promise<void> {
    this.resume();
    const exited = this.server && this.server.exitCode === null ? once(this.server, 'exit') : undefined;
    try {
      process.kill(this.beamPid(), 'SIGKILL');
    } catch {
      // already gone
    }
    if (exited) await within(exited, 10_000);
    this.server = undefined;
  }

  /** Starts the node again on the same directory and ports (after kill9 or a stop). */
  async restart(): Promise<void> {
    if (this.server) await this.kill9();
    await this.launch();
  }

  /** Stops the node (cleanly, else kill -9) and removes its directory. Idempotent. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const server = this.server;
    try {
      this.resume();
    } catch {
      // no pid file: the node never came up
    }
    if (server && server.exitCode === null) {
      const exited = once(server, 'exit');
      await this.ctl('stop').catch(() => undefined);
      const clean = await within(exited, 15_000);
      if (!clean) {
        try {
          process.kill(this.beamPid(), 'SIGKILL');
        } catch {
          // gone
        }
        server.kill('SIGKILL');
      }
    }
    this.server = undefined;
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** A synchronous last resort for process 'exit' handlers. */
  killNow(): void {
    try {
      process.kill(this.beamPid(), 'SIGCONT');
      process.kill(this.beamPid(), 'SIGKILL');
    } catch {
      // gone
    }
    try {
      rmSync(this.dir, { recursive: true, force: true });
    } catch {
      // best effort
    }
  }

  private async launch(): Promise<void> {
    const t0 = Date.now();
    rmSync(join(this.dir, 'pid'), { force: true });
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      HOME: '/var/lib/rabbitmq',
      LANG: 'C.UTF-8',
      RABBITMQ_CONF_ENV_FILE: join(this.dir, 'rabbitmq-env.conf'),
      RABBITMQ_CONFIG_FILE: join(this.dir, 'rabbitmq.conf'),
      RABBITMQ_NODENAME: this.nodename,
      RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
      RABBITMQ_NODE_PORT: String(this.port),
      RABBITMQ_DIST_PORT: String(this.distPort),
      RABBITMQ_MNESIA_BASE: join(this.dir, 'mnesia'),
      RABBITMQ_LOG_BASE: join(this.dir, 'log'),
      RABBITMQ_ENABLED_PLUGINS_FILE: join(this.dir, 'enabled_plugins'),
      RABBITMQ_PID_FILE: join(this.dir, 'pid'),
      ERL_EPMD_ADDRESS: '127.0.0.1',
      ERL_FLAGS: '-kernel inet_dist_use_interface {127,0,0,1}',
    };
    const envArgs = Object.entries(env).map(([k, v]) => `${k}=${v}`);
    const asRoot = process.getuid?.() === 0;
    const server = asRoot
      ? spawn('runuser', ['-u', 'rabbitmq', '--', 'env', '-i', ...envArgs, SERVER], { cwd: this.dir, stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn(SERVER, [], { cwd: this.dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.server = server;
    const collect = (b: Buffer) => {
      this.log = (this.log + b.toString()).slice(-20_000);
    };
    server.stdout!.on('data', collect);
    server.stderr!.on('data', collect);
    const deadline = Date.now() + this.startTimeoutMs;
    // await_startup fails at once while the node is not yet registered with
    // epmd, and each rabbitmqctl run costs most of a second of CPU: wait for
    // the pid file the node writes early in its boot, then retry.
    while (!existsSync(join(this.dir, 'pid')) && server.exitCode === null && Date.now() < deadline) await sleep(100);
    for (;;) {
      if (server.exitCode !== null) throw new Error(`RabbitNode: the server exited (${server.exitCode}) while starting:\n${this.output()}`);
      try {
        await this.ctl('await_startup', '--timeout', '30');
        break;
      } catch (err) {
        if (Date.now() > deadline)
          throw new Error(
            `RabbitNode: ${this.nodename} did not start within ${this.startTimeoutMs} ms: ${(err as Error).message}\n${this.output()}`,
          );
        await sleep(250);
      }
    }
    this.startTimesMs.push(Date.now() - t0);
  }
}
