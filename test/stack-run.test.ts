import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, join, relative } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { request } from 'undici';
import WebSocket from 'ws';
import {
  AMQP_URL,
  readSse,
  requireRabbit,
  ROOT,
  spawnNode,
  TOKEN,
  unique,
  until,
  warren,
  type NodeProcess,
  type SseReader,
} from './support/index.js';
import {
  chainInstructions,
  imageEnv,
  parseDockerfile,
  promqlLabels,
  promqlMetrics,
  readCompose,
  readYaml,
  sampleValue,
  scrapedNames,
  serviceEnv,
  type ComposeService,
  type Instruction,
} from './support/stack.js';

/*
 * docker-compose.yml without Docker: its services as processes on loopback,
 * started as the images would start them (the Dockerfile stage's CMD and ENV,
 * then the service's environment). RabbitMQ is the test broker (the compose
 * user becomes guest: no user is added to the shared broker), each service's
 * listening port becomes a free one, and every `http://<service>:<port>` in
 * the environment points at the process that stands for that service.
 */

const dockerfile = parseDockerfile(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'));
const { services } = readCompose();
const prometheus = readYaml<any>('deploy', 'prometheus', 'prometheus.yml');
const rules = readYaml<any>('deploy', 'prometheus', 'warren-rules.yml');
const dashboard = JSON.parse(readFileSync(join(ROOT, 'deploy', 'grafana', 'dashboards', 'warren.json'), 'utf8'));
/** The variables that name the port a service listens on. */
const LISTEN_VARIABLES = ['PORT', 'WARREN_PORT', 'WARREN_METRICS_PORT'];
/** Labels Prometheus adds to every series of a target. */
const TARGET_LABELS = ['job', 'instance'];
const WAIT = 15_000;

async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  return port;
}

/** The Dockerfile stage a service's image is built from: its build target, else the last stage. */
function stageOf(svc: ComposeService): string {
  return typeof svc.build === 'object' && svc.build.target !== undefined ? svc.build.target : dockerfile.at(-1)!.name;
}

/** Where each `<service>:<port>` of the stack is on loopback. */
type Places = Map<string, string>;

/** A value of the compose file as it reads on loopback: service addresses replaced, 0.0.0.0 → 127.0.0.1. */
function onLoopback(value: string, places: Places): string {
  if (value === '0.0.0.0') return '127.0.0.1';
  return value.replace(
    /\b([a-z][a-z0-9+.-]*):\/\/(?:[^@/\s]*@)?([a-z][a-z0-9-]*):(\d+)/g,
    (whole, scheme: string, host: string, port: string) => {
      if (services[host]?.image?.startsWith('rabbitmq:')) return AMQP_URL.replace(/\/$/, '');
      const place = places.get(`${host}:${port}`);
      return place === undefined ? whole : `${scheme}://${place}`;
    },
  );
}

/** The environment of a service's container: its image's ENV, then its compose environment; on loopback. */
function processEnv(name: string, places: Places): Record<string, string> {
  const svc = services[name]!;
  const env = { ...imageEnv(chainInstructions(dockerfile, stageOf(svc))), ...serviceEnv(svc) };
  for (const [key, value] of Object.entries(env)) {
    env[key] = LISTEN_VARIABLES.includes(key) ? places.get(`${name}:${value}`)!.split(':')[1]! : onLoopback(value, places);
  }
  return env;
}

/** Gives every port a service listens on a free port on loopback. */
async function placeServices(names: string[]): Promise<Places> {
  const places: Places = new Map();
  for (const name of names) {
    const svc = services[name]!;
    const env = { ...imageEnv(chainInstructions(dockerfile, stageOf(svc))), ...serviceEnv(svc) };
    for (const key of LISTEN_VARIABLES) if (env[key] !== undefined) places.set(`${name}:${env[key]}`, `127.0.0.1:${await freePort()}`);
  }
  return places;
}

/** Starts a service as its image would: the stage's CMD (or the service's command) from the repository root, which is the image's /app. */
function startService(name: string, places: Places): { process: NodeProcess; env: Record<string, string> } {
  const svc = services[name]!;
  const cmd =
    svc.command ??
    chainInstructions(dockerfile, stageOf(svc))
      .filter((i) => i.op === 'CMD')
      .at(-1)!.args;
  assert.ok(Array.isArray(cmd) && cmd[0] === 'node', `${name} runs node: ${String(cmd)}`);
  const env = processEnv(name, places);
  return { process: spawnNode(cmd.slice(1), { env, withoutWarrenEnv: true, stopSignal: 'SIGTERM', killAfterMs: 20_000 }), env };
}

/** Runs a health check's `node -e` command; resolves with its exit code. */
function runCheck(test: string[], env: Record<string, string>): Promise<number> {
  const args = test[0] === 'CMD' ? test.slice(1) : test;
  assert.equal(args[0], 'node');
  return new Promise((done) =>
    execFile(process.execPath, args.slice(1), { env: { ...process.env, ...env }, timeout: 10_000 }, (err) =>
      done(err === null ? 0 : typeof err.code === 'number' ? err.code : -1),
    ),
  );
}

/** The status of a GET, 0 when it fails. */
async function status(url: string): Promise<number> {
  try {
    const res = await request(url);
    await res.body.dump();
    return res.statusCode;
  } catch {
    return 0;
  }
}

async function scrape(url: string): Promise<string> {
  const res = await request(url);
  assert.equal(res.statusCode, 200);
  return res.body.text();
}

describe('docker-compose.yml as processes on loopback: RabbitMQ, the app, the gateway, the scrape target', () => {
  let places: Places;
  let app: { process: NodeProcess; env: Record<string, string> } | undefined;
  let gateway: { process: NodeProcess; env: Record<string, string> } | undefined;
  let base: string;
  let metricsUrl: string;
  let firstScrape: string;
  const room = unique('r');
  const user = unique('u');
  let cookie: string;
  let sse: SseReader | undefined;

  before(async () => {
    await requireRabbit();
    places = await placeServices(['app', 'gateway']);
    app = startService('app', places);
    await app.process.waitFor(/^app: http:\/\/127\.0\.0\.1:\d+/m, WAIT);
    gateway = startService('gateway', places);
    await gateway.process.waitFor(/Warren gateway on /, WAIT);
    base = `http://${places.get(`gateway:${serviceEnv(services.gateway!).WARREN_PORT}`)}`;
    // The target Prometheus scrapes, as prometheus.yml names it.
    const job = prometheus.scrape_configs.find((c: any) => c.job_name === 'warren');
    metricsUrl = `http://${places.get(job.static_configs[0].targets[0])}${job.metrics_path ?? '/metrics'}`;
    firstScrape = await scrape(metricsUrl);
  });

  after(async () => {
    sse?.close();
    await Promise.all([gateway?.process.stop(), app?.process.stop()]);
  });

  it("answers the probes, and the image's HEALTHCHECK and the app's compose health check pass", async () => {
    for (const probe of ['/_warren/live', '/_warren/ready']) assert.equal(await status(`${base}${probe}`), 200, probe);
    const healthcheck = chainInstructions(dockerfile, dockerfile.at(-1)!.name).find((i) => i.op === 'HEALTHCHECK')!;
    // The app's check asks its own port inside the container: here, the port that stands for it.
    const appCheck = services.app!.healthcheck!.test.map((a) =>
      a.replace(/127\.0\.0\.1:(\d+)/, (w, port: string) => places.get(`app:${port}`) ?? w),
    );
    assert.deepEqual(
      await Promise.all([runCheck(healthcheck.args, gateway!.env), runCheck(appCheck, {})]),
      [0, 0],
      'the gateway and the app are healthy',
    );
  });

  /** Logs in through the gateway (the app's form); returns the session cookie. */
  async function login(name: string): Promise<string> {
    const res = await request(`${base}/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `name=${name}`,
    });
    assert.equal(res.statusCode, 303);
    await res.body.dump();
    const sid = String(res.headers['set-cookie']).split(';')[0]!;
    assert.match(sid, /^sid=/);
    return sid;
  }

  it('proxies the app through the gateway: its login page, its session cookie, its auth answers', async () => {
    const page = await request(`${base}/`);
    assert.equal(page.statusCode, 200);
    assert.match(await page.body.text(), /<form[^>]*action="\/login"/);
    assert.equal(await status(`${base}/live/rooms/${room}?timeout=0`), 401, 'the app refuses a subscription without a session');
    cookie = await login(user);
    assert.equal(await status(`${base}/chat`), 303, 'the app sends a visitor without a session to its login page');
  });

  it("an SSE subscriber gets a chat message the app published to RabbitMQ, and one from compose's `warren publish`", async () => {
    sse = readSse(base, `/live/rooms/${room}`, { cookie });
    assert.equal(await sse.status, 200);
    await until(
      async () => sampleValue(await scrape(metricsUrl), 'warren_connections', { transport: 'sse' }) === 1,
      'the stream',
      WAIT,
      100,
    );

    // The chat page's way: a warren.v1 `send` → POST to the app → the producer → RabbitMQ → the stream.
    const ws = new WebSocket(`${base.replace('http', 'ws')}/_warren/ws`, 'warren.v1', { headers: { cookie }, origin: base });
    const frames: any[] = [];
    ws.on('message', (data) => frames.push(JSON.parse(String(data))));
    await once(ws, 'open');
    ws.send(JSON.stringify({ type: 'send', id: 's1', channel: `/live/rooms/${room}`, data: { text: 'through the app' } }));
    await until(() => frames.some((f) => f.id === 's1'), 'the reply', WAIT);
    assert.deepEqual(frames.find((f) => f.id === 's1')?.status, 204);
    ws.close();
    await until(() => sse!.events.some((e) => e.event === 'chat'), 'the chat message', WAIT);
    const chat = JSON.parse(sse.events.find((e) => e.event === 'chat')!.data);
    assert.deepEqual([chat.from, chat.text], [user, 'through the app']);

    // The compose file's `docker compose exec gateway node packages/cli/bin/warren.js publish …`, with the gateway's environment.
    // A long-poll of another user waits for it, as the compose file's `curl -b jar …/live/rooms/lobby` does.
    const poll = request(`${base}/live/rooms/${room}?timeout=10`, { headers: { cookie: await login(unique('v')) } });
    await until(async () => sampleValue(await scrape(metricsUrl), 'warren_long_polls_waiting') === 1, 'the long-poll', WAIT, 100);
    const published = await warren(['publish', `/live/rooms/${room}`, 'hi there!'], { env: gateway!.env });
    assert.equal(published.code, 0, published.stderr);
    await until(() => sse!.events.some((e) => e.data === 'hi there!'), 'the published message', WAIT);
    const answer = await poll;
    assert.deepEqual([answer.statusCode, await answer.body.text()], [200, 'hi there!']);
  });

  it("Prometheus's target serves metrics that moved with that traffic, and every name the dashboard and rules use", async () => {
    const text = await scrape(metricsUrl);
    const moved = (name: string, labels: Record<string, string> = {}) =>
      sampleValue(text, name, labels) - sampleValue(firstScrape, name, labels);
    assert.equal(moved('warren_connections', { transport: 'sse', kind: 'identified' }), 1);
    assert.ok(moved('warren_broker_deliveries_total') >= 2);
    assert.ok(moved('warren_upstream_request_duration_seconds_count', { call: 'auth', result: 'allowed' }) >= 1);
    assert.ok(moved('warren_upstream_request_duration_seconds_count', { call: 'message', result: 'answered' }) >= 1);

    const names = scrapedNames(text);
    const labels = new Set([...text.matchAll(/[{,]([a-z_]+)="/g)].map((m) => m[1]!).concat(TARGET_LABELS));
    const exprs: string[] = [
      ...dashboard.panels.flatMap((p: any) => p.targets.map((t: any) => t.expr)),
      ...rules.groups.flatMap((g: any) => g.rules.map((r: any) => r.expr)),
    ];
    for (const expr of exprs) {
      // `up` is Prometheus's own series for each target.
      for (const name of promqlMetrics(expr)) assert.ok(names.has(name) || name === 'up', `${name} (in ${expr}) is in the scrape`);
      for (const label of promqlLabels(expr)) assert.ok(labels.has(label), `label ${label} (in ${expr}) is in the scrape`);
    }
  });

  it("stops on compose's stop signal: not ready at once, drains, exits 0 within stop_grace_period", async () => {
    const started = Date.now();
    const exited = gateway!.process.stop();
    await until(async () => (await status(`${base}/_warren/ready`)) === 503, 'not ready', WAIT, 50);
    await sse?.closed;
    assert.equal(await exited, 0);
    const grace = Number(/^(\d+)s$/.exec(services.gateway!.stop_grace_period!)![1]) * 1000;
    assert.ok(Date.now() - started < grace, `${Date.now() - started} ms`);
  });
});

/*
 * The image's runtime without Docker: in a directory outside the repository,
 * the final stage's chain (and the example app's stage) replayed instruction
 * by instruction: each COPY from the build context (less .dockerignore) or
 * from the build stage (this repository's own build output), each RUN's
 * `npm ci`; then the stage's CMD with its ENV, and its HEALTHCHECK.
 */

/** Whether .dockerignore leaves a path of the build context out. */
function dockerignored(): (path: string) => boolean {
  const patterns = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
  const regexes = patterns.map((p) => {
    const body = p
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*\*\//g, '\u0000')
      .replace(/\*/g, '[^/]*')
      .replace(/\u0000/g, '(?:.*/)?');
    return new RegExp(`^${body}(?:/|$)`);
  });
  return (path) => regexes.some((r) => r.test(path));
}

/** The environment of a user's shell: without what `npm test` adds (npm_*), which would make npm act on the repository. */
function userEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k) && k !== 'INIT_CWD' && !k.startsWith('WARREN_')));
}

function run(
  command: string,
  args: string[],
  cwd: string,
  env: NodeJS.ProcessEnv,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) =>
    execFile(command, args, { cwd, env, timeout: 120_000, killSignal: 'SIGKILL' }, (err, stdout, stderr) =>
      done({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr }),
    ),
  );
}

class Replay {
  readonly env: Record<string, string> = {};
  private readonly ignored = dockerignored();
  private readonly workdirs = new Map(dockerfile.map((s) => [s.name, s.instructions.find((i) => i.op === 'WORKDIR')?.args[0]]));

  constructor(readonly dir: string) {}

  async apply(instructions: Instruction[]): Promise<void> {
    for (const i of instructions) {
      if (i.op === 'COPY') this.copy(i);
      else if (i.op === 'RUN') await this.run(i.text);
      else if (i.op === 'ENV') Object.assign(this.env, imageEnv([i]));
      else if (i.op === 'WORKDIR') assert.equal(i.args[0], '/app', 'every runtime stage works in /app');
    }
  }

  private copy(i: Instruction): void {
    const dest = i.args.at(-1)!;
    for (const src of i.args.slice(0, -1)) {
      const from = i.flags.from === undefined ? join(ROOT, src) : join(ROOT, relative(this.workdirs.get(i.flags.from)!, src));
      const into = dest.endsWith('/') && !statSync(from).isDirectory() ? join(this.dir, dest, basename(src)) : join(this.dir, dest);
      const keep = (path: string) => i.flags.from !== undefined || !this.ignored(relative(ROOT, path));
      cpSync(from, into, { recursive: true, filter: keep });
    }
  }

  private async run(text: string): Promise<void> {
    for (const command of text.split('&&').map((c) => c.trim())) {
      // It empties the image's npm cache; here it would empty this machine's.
      if (command === 'npm cache clean --force') continue;
      const [tool, ...args] = command.split(/\s+/);
      assert.ok(tool === 'npm' && args[0] === 'ci', `a RUN this test can replay: ${command}`);
      const result = await run('npm', [...args, '--prefer-offline', '--loglevel=error'], this.dir, { ...userEnv(), ...this.env });
      assert.equal(result.code, 0, result.stderr);
    }
  }
}

describe("the image's final stage, replayed outside Docker", () => {
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8'));
  const final = chainInstructions(dockerfile, dockerfile.at(-1)!.name);
  let dir: string;

  before(() => void (dir = mkdtempSync(join(tmpdir(), 'warren-image-'))));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('npm ci --omit=dev and the COPY lines make a tree with no dev tool, no source and no test', async () => {
    const replay = new Replay(dir);
    await replay.apply(final);
    await replay.apply(dockerfile.find((s) => s.name === 'example-app')!.instructions);
    // Every package the lockfile marks dev-only (TypeScript, eslint, prettier, yaml, …) is absent.
    const devOnly = Object.entries(lock.packages as Record<string, { dev?: boolean }>).filter(([path, p]) => p.dev && path !== '');
    assert.ok(devOnly.some(([path]) => path === 'node_modules/typescript'));
    for (const [path] of devOnly) assert.ok(!existsSync(join(dir, path)), `${path} is not installed`);
    for (const name of ['prom-client', 'amqplib', 'ws', 'commander'])
      assert.ok(existsSync(join(dir, 'node_modules', name)), `${name} is installed`);
    for (const path of ['packages/gateway/src', 'packages/gateway/tsconfig.json', 'test', 'scripts', 'docs'])
      assert.ok(!existsSync(join(dir, path)), path);
    assert.ok(existsSync(join(dir, 'packages', 'gateway', 'dist', 'index.js')));
  });

  it("runs the stage's CMD with its ENV; its HEALTHCHECK passes, and fails once the gateway stopped", async () => {
    const env = {
      ...imageEnv(final),
      WARREN_HOST: '127.0.0.1',
      WARREN_PORT: String(await freePort()),
      WARREN_LOG_LEVEL: 'warn',
      WARREN_PUBLISH_TOKEN: TOKEN,
    };
    const cmd = final.filter((i) => i.op === 'CMD').at(-1)!.args;
    const gateway = spawnNode(cmd.slice(1), { cwd: dir, env, withoutWarrenEnv: true, stopSignal: 'SIGINT' });
    try {
      await gateway.waitFor(/Warren gateway on /, WAIT);
      const healthcheck = final.find((i) => i.op === 'HEALTHCHECK')!.args;
      assert.equal(await runCheck(healthcheck, env), 0);
      await gateway.stop();
      assert.equal(await runCheck(healthcheck, env), 1);
    } finally {
      await gateway.stop();
    }
    // The example app's stage: its module and @warren/producer resolve inside the tree.
    const script =
      "const m = await import('./examples/app-in-front/app.mjs'); console.log(typeof m.createApp, import.meta.resolve('@warren/producer'))";
    const loaded = await run(process.execPath, ['--input-type=module', '-e', script], dir, userEnv());
    assert.equal(
      loaded.stdout.trim(),
      `function ${pathToFileURL(join(dir, 'packages', 'producer', 'dist', 'index.js')).href}`,
      loaded.stderr,
    );
  });
});
