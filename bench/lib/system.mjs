// Processes and the machine: spawning the servers under test and the
// workers, reading /proc, RabbitMQ's management API, cleaning up queues.
import { execFileSync, fork, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import amqp from 'amqplib';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const TICKS = 100; // clock ticks per second in /proc/<pid>/stat (USER_HZ)

/** CPU seconds (user + system) a process has used so far. */
export function cpuSeconds(pid) {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(f[11]) + Number(f[12])) / TICKS;
  } catch {
    return NaN;
  }
}

/** Resident memory of a process, MiB. */
export function rssMiB(pid) {
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;
  } catch {
    return NaN;
  }
}

/**
 * CPU seconds all processes of the machine have run (user, nice, system
 * from /proc/stat; not interrupts and softirqs, where the kernel's loopback
 * networking shows up without being charged to a process).
 */
export function machineBusySeconds() {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    return (f[0] + f[1] + f[2]) / TICKS;
  } catch {
    return NaN;
  }
}

/**
 * A CPU meter over a set of pids: `stop()` gives cores used (CPU seconds /
 * wall seconds) per pid, and as its `other` property the cores that the rest
 * of the machine used meanwhile (neither those pids nor this process).
 */
export function cpuMeter(pids) {
  const t0 = performance.now();
  const c0 = pids.map(cpuSeconds);
  const self0 = cpuSeconds(process.pid);
  const m0 = machineBusySeconds();
  return () => {
    const wall = (performance.now() - t0) / 1000;
    const used = pids.map((pid, k) => ({ cpuSeconds: cpuSeconds(pid) - c0[k], cores: (cpuSeconds(pid) - c0[k]) / wall }));
    const mine = used.reduce((sum, u) => sum + u.cpuSeconds, 0) + (cpuSeconds(process.pid) - self0);
    used.other = (machineBusySeconds() - m0 - mine) / wall;
    used.wall = wall;
    return used;
  };
}

export function beamPid() {
  return Number(execFileSync('pgrep', ['-o', '-f', 'beam.smp']).toString().trim());
}

export class Management {
  constructor(base = 'http://127.0.0.1:15672', user = 'guest', pass = 'guest') {
    this.base = base;
    this.auth = `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
  }

  /** Enables the management plugin when its API does not answer (rabbitmq-plugins starts an Erlang VM: seconds) and waits for it. */
  async enable() {
    const up = await this.get('/api/overview', 1).then(
      () => true,
      () => false,
    );
    if (up) return;
    try {
      execFileSync('rabbitmq-plugins', ['enable', 'rabbitmq_management'], { stdio: 'ignore', timeout: 60_000 });
    } catch {}
    await this.get('/api/overview', 60);
  }

  async get(path, attempts = 20) {
    let last;
    for (let i = 0; i < attempts; i++) {
      try {
        const res = await fetch(`${this.base}${path}`, { headers: { authorization: this.auth }, signal: AbortSignal.timeout(10_000) });
        if (res.ok) return res.json();
        last = new Error(`${res.status} ${path}`);
      } catch (err) {
        last = err;
      }
      await sleep(500);
    }
    throw new Error(`management API ${path}: ${last?.message}`);
  }

  async node() {
    const nodes = await this.get('/api/nodes');
    return { memUsedMiB: nodes[0].mem_used / 2 ** 20, name: nodes[0].name };
  }

  /** Names of the queues whose name contains `text`. */
  async queueNames(text) {
    const names = [];
    for (let page = 1; page < 1000; page++) {
      const res = await this.get(`/api/queues/%2F?columns=name&page_size=500&page=${page}&name=${encodeURIComponent(text)}`);
      names.push(...(res.items ?? []).map((q) => q.name));
      if (page >= (res.page_count ?? 1)) break;
    }
    return names;
  }
}

/** Deletes `names` over `lanes` AMQP channels. */
export async function deleteQueues(url, names, lanes = 8) {
  if (names.length === 0) return 0;
  const conn = await amqp.connect(url, { noDelay: true, clientProperties: { connection_name: 'warren-bench cleanup' } });
  conn.on('error', () => undefined);
  let deleted = 0;
  try {
    const channels = await Promise.all(Array.from({ length: Math.min(lanes, names.length) }, () => conn.createChannel()));
    await Promise.all(
      channels.map(async (ch, lane) => {
        ch.on('error', () => undefined);
        for (let k = lane; k < names.length; k += channels.length) {
          await ch.deleteQueue(names[k]);
          deleted++;
        }
      }),
    );
  } finally {
    await conn.close().catch(() => undefined);
  }
  return deleted;
}

/** Deletes the exchange `name` (a no-op when it does not exist). */
export async function deleteExchange(url, name) {
  const conn = await amqp.connect(url, { noDelay: true, clientProperties: { connection_name: 'warren-bench cleanup' } });
  conn.on('error', () => undefined);
  try {
    const ch = await conn.createChannel();
    ch.on('error', () => undefined);
    await ch.deleteExchange(name);
  } finally {
    await conn.close().catch(() => undefined);
  }
}

/** `rabbitmqctl <args>` (it starts an Erlang VM of its own: about 1.5 s and some CPU; not inside a measured window). */
function rabbitmqctl(args) {
  return execFileSync('rabbitmqctl', args, { timeout: 60_000, stdio: ['ignore', 'pipe', 'ignore'] }).toString();
}

/** The broker's `erlang:memory(total)`, MiB (NaN when rabbitmqctl cannot reach it). */
export function erlangMemoryMiB() {
  try {
    return Number(rabbitmqctl(['eval', 'erlang:memory(total).']).trim()) / 2 ** 20;
  } catch {
    return NaN;
  }
}

/** Every queue name on the broker (`rabbitmqctl list_queues name`), or undefined when rabbitmqctl cannot reach it. */
export function listQueueNames() {
  try {
    return rabbitmqctl(['list_queues', 'name', '-q', '--no-table-headers'])
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '');
  } catch {
    return undefined;
  }
}

/** Waits until RabbitMQ uses less than `cores` of CPU over `sampleMs` (at most `maxMs`). */
export async function waitRabbitQuiet(pid, cores = 0.1, maxMs = 30_000, sampleMs = 1000) {
  const t0 = performance.now();
  while (performance.now() - t0 < maxMs) {
    const stop = cpuMeter([pid]);
    await sleep(sampleMs);
    if (stop()[0].cores < cores) return;
  }
}

/** The largest number of open files a child process gets here. */
export function fileLimit() {
  try {
    return Number(execFileSync('sh', ['-c', 'ulimit -n']).toString().trim());
  } catch {
    return NaN;
  }
}

/** The hard open-file limit (`ulimit -Hn`): as far as a Node process raises its own soft limit when it starts. */
export function hardFileLimit() {
  try {
    const v = execFileSync('sh', ['-c', 'ulimit -Hn']).toString().trim();
    return v === 'unlimited' ? Infinity : Number(v);
  } catch {
    return NaN;
  }
}

/** The ephemeral ports loopback clients draw from: [low, high] of ip_local_port_range. */
export function portRange() {
  try {
    return readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
  } catch {
    return undefined;
  }
}

/** TCP sockets in TIME_WAIT on this machine (IPv4 and IPv6), NaN when /proc/net/tcp cannot be read. */
export function timeWaitSockets() {
  let n = 0;
  try {
    for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
      for (const line of readFileSync(f, 'utf8').split('\n').slice(1)) if (line.split(/\s+/)[4] === '06') n++;
    }
    return n;
  } catch {
    return NaN;
  }
}

export function machine() {
  const cpu = cpus();
  let os = '';
  try {
    os = /PRETTY_NAME="([^"]+)"/.exec(readFileSync('/etc/os-release', 'utf8'))[1];
  } catch {}
  let kernel = '';
  try {
    kernel = execFileSync('uname', ['-r']).toString().trim();
  } catch {}
  return { cpuModel: cpu[0]?.model ?? '?', cores: cpu.length, ramGiB: totalmem() / 2 ** 30, node: process.version, os, kernel };
}

/**
 * A server under test as a child process that prints its URL on stdout:
 * `warren serve` or the Node ceiling.
 */
export async function startServer(kind, { amqpUrl, token, profileDir, profileName, extraArgs = [] }) {
  const nodeArgs = profileDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${profileName}`];
  const args =
    kind === 'warren'
      ? [
          ...nodeArgs,
          'packages/cli/bin/warren.js',
          'serve',
          '--port',
          '0',
          '--host',
          '127.0.0.1',
          '--log-level',
          'warn',
          '--queue-expires',
          '30s',
          '--max-connections-per-ip',
          '1000000',
          '--max-connections-per-identity',
          '1000000',
          // Every subscriber comes from 127.0.0.1: a budget of 120 new queues a minute would refuse most identified ones.
          '--queue-budget',
          '1000000',
          // Stopping is outside every measured window: no 5 s for load balancers (there are none) at each of the run's ~30 stops.
          '--drain-delay',
          '0',
          ...extraArgs,
        ]
      : [...nodeArgs, 'bench/lib/node-ceiling.mjs'];
  const child = spawn(process.execPath, args, {
    env: { ...process.env, WARREN_AMQP_URL: amqpUrl, WARREN_PUBLISH_TOKEN: token },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (c) => (out += c));
  child.stderr.on('data', (c) => {
    err += c;
    if (err.length > 20_000) err = err.slice(-10_000);
  });
  const pattern = kind === 'warren' ? /on (http:\/\/\S+)/ : /listening (\d+) (\d+)/;
  for (let i = 0; i < 200 && !pattern.test(out); i++) {
    if (child.exitCode !== null) break;
    await sleep(50);
  }
  const m = pattern.exec(out);
  if (m === null) {
    child.kill('SIGKILL');
    throw new Error(`${kind} did not start: ${err.slice(-2000)}`);
  }
  const url = kind === 'warren' ? m[1].replace('localhost', '127.0.0.1') : `http://127.0.0.1:${m[1]}`;
  return {
    kind,
    child,
    pid: child.pid,
    url,
    feedPort: kind === 'warren' ? undefined : Number(m[2]),
    stderr: () => err,
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      const exited = await Promise.race([new Promise((r) => child.once('exit', () => r(true))), sleep(15_000).then(() => false)]);
      if (!exited) child.kill('SIGKILL');
    },
  };
}

/**
 * A child process driven over IPC: `call(type, args, timeoutMs)` resolves
 * with its answer or rejects after the timeout.
 */
export function forkHelper(script, label) {
  const child = fork(script, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced' });
  const pending = new Map();
  let seq = 0;
  child.on('message', (msg) => {
    const p = pending.get(msg.id);
    if (p === undefined) return;
    pending.delete(msg.id);
    clearTimeout(p.timer);
    if (msg.ok) p.resolve(msg);
    else p.reject(new Error(`${label}: ${msg.error}`));
  });
  child.on('exit', (code) => {
    for (const p of pending.values()) {
      clearTimeout(p.timer);
      p.reject(new Error(`${label} exited (${code})`));
    }
    pending.clear();
  });
  return {
    child,
    pid: child.pid,
    call(type, args = {}, timeoutMs = 60_000) {
      const id = ++seq;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(new Error(`${label}: ${type} timed out after ${timeoutMs} ms`));
        }, timeoutMs);
        pending.set(id, { resolve, reject, timer });
        child.send({ id, type, ...args });
      });
    },
    kill() {
      if (child.exitCode === null) child.kill('SIGKILL');
    },
  };
}
