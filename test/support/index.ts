import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { connect as netConnect, type Socket as NetSocket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import amqp from 'amqplib';
import { request } from 'undici';
import { createGateway, silentLogger, type Gateway, type GatewayOptions } from '@warren/gateway';

const run = promisify(execFile);

// This file runs from test/dist/support/.
export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const WARREN_BIN = join(ROOT, 'packages', 'cli', 'bin', 'warren.js');
export const AMQP_URL = process.env.WARREN_TEST_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
export const BROKERS = ['memory', 'rabbitmq'] as const;
export type BrokerKindUnderTest = (typeof BROKERS)[number];
export const TOKEN = 'test-token-0123456789abcdef';

/** A name no other test (or earlier run) uses. */
export function unique(prefix: string): string {
  return `${prefix}${randomBytes(6).toString('hex')}`;
}

let rabbitChecked: Promise<void> | undefined;
/**
 * Fails (never skips) when RabbitMQ is not reachable: the RabbitMQ tests are
 * the point of the suite. `.ci/run` starts the broker before `npm test`.
 */
export function requireRabbit(): Promise<void> {
  rabbitChecked ??= (async () => {
    try {
      const conn = await amqp.connect(AMQP_URL, { timeout: 5000 });
      await conn.close();
    } catch (err) {
      throw new Error(`RabbitMQ is required at ${AMQP_URL} (start it with 'rabbitmq-server -detached'): ${(err as Error).message}`);
    }
  })();
  return rabbitChecked;
}

export interface TestGateway {
  gateway: Gateway;
  url: string;
  close(): Promise<void>;
}

export async function startGateway(kind: BrokerKindUnderTest, options: GatewayOptions = {}): Promise<TestGateway> {
  if (kind === 'rabbitmq') await requireRabbit();
  const gateway = createGateway({
    port: 0,
    host: '127.0.0.1',
    publishToken: TOKEN,
    logger: silentLogger,
    ...(kind === 'rabbitmq' ? { amqpUrl: AMQP_URL } : {}),
    ...options,
  });
  const address = await gateway.listen();
  return { gateway, url: `http://127.0.0.1:${address.port}`, close: () => gateway.close() };
}

export interface PollResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One long-poll with undici. */
export async function poll(
  base: string,
  channel: string,
  opts: { consumerId?: string; timeout?: number; headers?: Record<string, string>; query?: string } = {},
): Promise<PollResult> {
  const url = new URL(channel, base);
  if (opts.timeout !== undefined) url.searchParams.set('timeout', String(opts.timeout));
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.consumerId !== undefined) headers['consumer-id'] = opts.consumerId;
  const res = await request(`${url.toString()}${opts.query ?? ''}`, { headers });
  return { status: res.statusCode, headers: res.headers, body: await res.body.text() };
}

/** A raw HTTP request with node:http (so a test controls the socket). */
export function rawRequest(
  base: string,
  path: string,
  opts: { method?: string; headers?: Record<string, string>; body?: string | Buffer } = {},
): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: url.hostname, port: url.port, path, method: opts.method ?? 'GET', headers: opts.headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** Publishes through the gateway's HTTP endpoint. */
export async function httpPublish(
  base: string,
  channel: string | string[],
  body: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; json: any }> {
  const query = new URLSearchParams();
  for (const c of Array.isArray(channel) ? channel : [channel]) query.append('channel', c);
  const res = await request(`${base}/_warren/publish?${query}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'text/plain', ...headers },
    body,
  });
  const text = await res.body.text();
  return { status: res.statusCode, json: text === '' ? undefined : JSON.parse(text) };
}

/** Runs curl and returns what it printed. */
export async function curl(args: string[], timeoutMs = 30_000): Promise<string> {
  const { stdout } = await run('curl', ['-sS', ...args], { timeout: timeoutMs });
  return stdout;
}

export async function rabbitmqctl(...args: string[]): Promise<string> {
  const { stdout } = await run('rabbitmqctl', args, { timeout: 120_000 });
  return stdout;
}

/** Names of the queues RabbitMQ holds now that start with `prefix`. */
export async function rabbitQueues(prefix: string): Promise<string[]> {
  const out = await rabbitmqctl('list_queues', '-q', '--no-table-headers', 'name');
  return out
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith(prefix));
}

/** Waits until `check` returns true, polling every `everyMs`. */
export async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000, everyMs = 20): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Runs the `warren` command to completion. */
export async function warren(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [WARREN_BIN, ...args], { env: { ...process.env, ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  child.stdin.end(opts.input);
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
  const [code] = (await once(child, 'close')) as [number | null];
  clearTimeout(timer);
  return { code, stdout, stderr };
}

/** Starts `warren serve` as a real process and waits for its banner. */
export async function spawnServe(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ child: ChildProcess; url: string; output: () => string; stop: () => Promise<void> }> {
  const child = spawn(process.execPath, [WARREN_BIN, 'serve', '--port', '0', '--host', '127.0.0.1', '--log-level', 'warn', ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
  await until(() => /Warren gateway on (https?:\/\/\S+)/.test(output) || child.exitCode !== null, 'warren serve to start', 15_000);
  const m = /Warren gateway on (https?:\/\/\S+)/.exec(output);
  if (m === null) throw new Error(`warren serve did not start:\n${output}`);
  return {
    child,
    url: m[1]!.replace('localhost', '127.0.0.1'),
    output: () => output,
    // SIGINT closes at once; SIGTERM would drain (tests of the drain send it themselves).
    stop: async () => {
      // Already gone (exited, or killed by a signal: 'close' was emitted then).
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGINT');
      await once(child, 'close');
    },
  };
}

const MANAGEMENT = process.env.WARREN_TEST_MANAGEMENT_URL ?? 'http://guest:guest@127.0.0.1:15672';

/** Enables RabbitMQ's management plugin (idempotent) and waits for its HTTP API. */
export async function enableManagement(): Promise<void> {
  await requireRabbit();
  await run('rabbitmq-plugins', ['enable', 'rabbitmq_management'], { timeout: 120_000 });
  await awaitManagement(MANAGEMENT);
}

/** Waits until the management API at `base` answers. */
export async function awaitManagement(base: string): Promise<void> {
  await until(
    async () => {
      try {
        await managementGet('/api/overview', base);
        return true;
      } catch {
        return false;
      }
    },
    'the RabbitMQ management API',
    60_000,
    250,
  );
}

export async function managementGet(path: string, base: string = MANAGEMENT): Promise<any> {
  const url = new URL(path, base);
  const auth = Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64');
  url.username = '';
  url.password = '';
  const res = await request(url, { headers: { authorization: `Basic ${auth}` } });
  if (res.statusCode !== 200) throw new Error(`management API ${path}: ${res.statusCode}`);
  return res.body.json();
}

export type Churn = Record<'queue_declared' | 'queue_created' | 'queue_deleted' | 'channel_created' | 'connection_created', number>;

/**
 * RabbitMQ's own churn counters (totals since the node started), once they
 * stop moving. The management plugin publishes them every 5 s
 * (`collect_statistics_interval`), so only two equal reads more than 5 s
 * apart show that nothing is still on its way.
 */
export async function settledChurn(base: string = MANAGEMENT): Promise<Churn> {
  const read = async (): Promise<Churn> => {
    const c = (await managementGet('/api/overview', base)).churn_rates ?? {};
    return {
      queue_declared: c.queue_declared ?? 0,
      queue_created: c.queue_created ?? 0,
      queue_deleted: c.queue_deleted ?? 0,
      channel_created: c.channel_created ?? 0,
      connection_created: c.connection_created ?? 0,
    };
  };
  let last = await read();
  for (let i = 0; i < 10; i++) {
    await new Promise((r) => setTimeout(r, 5500));
    const now = await read();
    if (JSON.stringify(now) === JSON.stringify(last)) return now;
    last = now;
  }
  throw new Error('RabbitMQ churn counters did not settle');
}

/** A raw SSE reader over node:http: collects parsed events; `pause()` stops reading the socket. */
export interface SseReader {
  events: Array<{ id?: string; event?: string; data: string }>;
  raw: () => string;
  status: Promise<number>;
  headers: Promise<IncomingHttpHeaders>;
  closed: Promise<void>;
  close(): void;
}

export function readSse(base: string, path: string, headers: Record<string, string> = {}): SseReader {
  const url = new URL(base);
  const events: SseReader['events'] = [];
  let raw = '';
  let buffer = '';
  let resolveStatus!: (n: number) => void;
  let resolveHeaders!: (h: IncomingHttpHeaders) => void;
  let resolveClosed!: () => void;
  const status = new Promise<number>((r) => (resolveStatus = r));
  const headersP = new Promise<IncomingHttpHeaders>((r) => (resolveHeaders = r));
  const closed = new Promise<void>((r) => (resolveClosed = r));
  const req = httpRequest(
    { host: url.hostname, port: url.port, path, headers: { accept: 'text/event-stream', ...headers }, agent: false },
    (res) => {
      resolveStatus(res.statusCode ?? 0);
      resolveHeaders(res.headers);
      res.setEncoding('utf8');
      // A 20 MB event arrives in hundreds of chunks: keep them apart until one
      // ends an event (searching a string grown by += flattens it each time: quadratic).
      let parts: string[] = [];
      let last = '';
      res.on('data', (chunk: string) => {
        raw += chunk;
        const ends = (last + chunk).includes('\n\n');
        parts.push(chunk);
        last = chunk.slice(-1);
        if (!ends) return;
        buffer = parts.join('');
        parts = [];
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event: { id?: string; event?: string; data: string } = { data: '' };
          const data: string[] = [];
          for (const line of block.split('\n')) {
            if (line.startsWith('id: ')) event.id = line.slice(4);
            else if (line.startsWith('event: ')) event.event = line.slice(7);
            else if (line.startsWith('data: ')) data.push(line.slice(6));
          }
          if (data.length > 0) {
            event.data = data.join('\n');
            events.push(event);
          }
        }
        parts = [buffer];
      });
      res.on('close', () => resolveClosed());
      res.on('error', () => resolveClosed());
    },
  );
  req.on('error', () => {
    resolveStatus(0);
    resolveClosed();
  });
  req.end();
  return { events, raw: () => raw, status, headers: headersP, closed, close: () => req.destroy() };
}

/**
 * Makes the message at the head of a consumer's queue come back
 * unacknowledged (redelivered): a long-poll takes it, but its client never
 * reads and hangs up with the response unwritten. The message must be too
 * large for loopback's socket buffers (20 MiB does).
 */
export async function hangUpMidResponse(gw: TestGateway, channel: string, consumerId: string): Promise<void> {
  const url = new URL(gw.url);
  const socket = netConnect(Number(url.port), url.hostname);
  socket.on('error', () => undefined);
  socket.pause();
  socket.write(`GET ${channel}?timeout=10 HTTP/1.1\r\nHost: x\r\nConsumer-Id: ${consumerId}\r\n\r\n`);
  const before = gw.gateway.stats().broker;
  await until(() => gw.gateway.stats().broker.delivered > before.delivered, 'the long-poll to take the message');
  socket.destroy();
  await until(() => gw.gateway.stats().broker.requeued > before.requeued, 'the message to be requeued');
}

/** A node process a test started: its output, a wait for a line, and a clean stop. */
export interface NodeProcess {
  child: ChildProcess;
  output(): string;
  /** Waits until the output matches `pattern`; throws if the process exits first or time runs out. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  /** `stopSignal` once (a second would kill it mid-shutdown), SIGKILL after `killAfterMs`. Idempotent; resolves with the exit code. */
  stop(): Promise<number | null>;
}

/**
 * Starts `node <args>` from the repository root (or `cwd`), collecting stdout and
 * stderr. `withoutWarrenEnv` leaves this environment's `WARREN_*` variables
 * out (an example that starts its own gateway must not pick them up).
 * `stopSignal` (SIGTERM) is what `stop()` sends: SIGINT makes `warren serve`
 * close at once instead of draining.
 */
export function spawnNode(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; withoutWarrenEnv?: boolean; killAfterMs?: number; stopSignal?: NodeJS.Signals; cwd?: string } = {},
): NodeProcess {
  const base = opts.withoutWarrenEnv
    ? Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('WARREN_')))
    : process.env;
  const killAfterMs = opts.killAfterMs ?? 5000;
  const child = spawn(process.execPath, args, { cwd: opts.cwd ?? ROOT, env: { ...base, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  let stopping: Promise<number | null> | undefined;
  return {
    child,
    output: () => output,
    async waitFor(pattern, timeoutMs = 15_000) {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const m = pattern.exec(output);
        if (m !== null) return m;
        if (child.exitCode !== null || child.signalCode !== null)
          throw new Error(`${args.join(' ')} exited before printing ${pattern}:\n${output}`);
        if (Date.now() > end) throw new Error(`timed out waiting for ${pattern} from ${args.join(' ')}:\n${output}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    stop() {
      stopping ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill(opts.stopSignal ?? 'SIGTERM');
          const timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
          await exited;
          clearTimeout(timer);
        }
        return exited;
      })();
      return stopping;
    },
  };
}

/** Sends raw bytes and returns the raw answer (for requests no client library would send). */
export function rawExchange(base: string, bytes: string): Promise<string> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = netConnect(Number(url.port), url.hostname);
    let answer = '';
    socket.on('data', (c: Buffer) => (answer += c.toString('latin1')));
    socket.on('end', () => resolve(answer));
    socket.on('close', () => resolve(answer));
    socket.on('error', reject);
    socket.end(bytes);
  });
}

/** The JSON error body `{ code, message }`, checked to carry a message. */
export function jsonError(body: string): { code: string; message: string } {
  const parsed = JSON.parse(body) as { code: string; message: string };
  if (typeof parsed.message !== 'string' || parsed.message.length === 0) throw new Error(`no error message in ${body}`);
  return parsed;
}

/** An SSE request whose client never reads: its socket is paused from the start. */
export function stalledSse(base: string, path: string): NetSocket {
  const url = new URL(base);
  const socket = netConnect(Number(url.port), url.hostname);
  socket.on('error', () => undefined);
  socket.pause();
  socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n`);
  return socket;
}
