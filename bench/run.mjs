// Warren's benchmark harness (issue 6): throughput, latency, memory, churn
// and long-poll figures of a `warren serve` process on RabbitMQ, each beside
// a ceiling measured in the same run (a minimal Node fan-out server; raw
// amqplib on the same queues), written to bench/results.md.
//
//   npm run bench                 the full run (14 minutes on 2 cores here; must stay under 25)
//   npm run bench -- --quick      tiny numbers, about 60 s (under 120 s): a smoke test
//   npm run bench -- --only connections   20,000 connections on one process (ulimit -Hn ≥ 20,064)
//   npm run bench -- --help       every flag
//
// Subscribers live in worker processes apart from the server under test, on
// loopback. Every phase is bounded (timeouts, stall detection) and every queue
// the run made is deleted at the end. Needs RabbitMQ on 127.0.0.1:5672 with
// the management plugin (enabled here).
import { mkdirSync, readdirSync, rmSync, readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { get as httpGet } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { AmqpPublisher, FeedPublisher, publish } from './lib/publisher.mjs';
import { httpBatch, httpSingle, rawPipelined, sdk } from './lib/http-publish.mjs';
import { mergeReports, now, Histogram, stampBody } from './lib/tracker.mjs';
import {
  beamPid,
  cpuMeter,
  deleteExchange,
  deleteQueues,
  erlangMemoryMiB,
  listQueueNames,
  fileLimit,
  forkHelper,
  hardFileLimit,
  portRange,
  timeWaitSockets,
  machine,
  Management,
  rssMiB,
  sleep,
  startServer,
  waitRabbitQuiet,
} from './lib/system.mjs';
import { markdown as profileMarkdown, summarize as summarizeProfile } from './profile-summary.mjs';
import { writeResults } from './lib/report.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
process.chdir(ROOT);

const FLAGS = {
  quick: { type: 'boolean', default: false, help: 'tiny numbers (about 60 s, under 120 s): a smoke test' },
  fanout: { type: 'string', help: 'subscriber counts of the throughput scenarios', full: '1000,5000', quickValue: '50,200' },
  messages: {
    type: 'string',
    help: 'messages per throughput phase, anonymous and Node ceiling (one value, or one per --fanout count)',
    full: '500',
    quickValue: '40',
  },
  'messages-identified': {
    type: 'string',
    help: 'messages per throughput phase, identified and RabbitMQ ceiling (one value, or one per --fanout count)',
    full: '100,30',
    quickValue: '20',
  },
  'latency-subscribers': { type: 'string', help: 'subscribers of the latency phases', full: '1000', quickValue: '50' },
  'latency-rate': { type: 'string', help: 'messages per second of the latency phases', full: '10', quickValue: '10' },
  'latency-seconds': { type: 'string', help: 'length of each latency phase', full: '15', quickValue: '1' },
  repeats: {
    type: 'string',
    help: 'throughput phases per anonymous and Node-ceiling scenario; the one with the median rate is reported (identified and RabbitMQ-ceiling scenarios run one: they are long)',
    full: '3',
    quickValue: '1',
  },
  'latency-repeats': {
    type: 'string',
    help: 'latency phases per scenario; the one with the median p99 is reported (a p99 of 150 messages rests on its two slowest)',
    full: '3',
    quickValue: '1',
  },
  'idle-connections': { type: 'string', help: 'connections of the idle-memory scenarios', full: '10000', quickValue: '300' },
  'idle-messages': { type: 'string', help: 'messages sent to every idle connection at the end', full: '20', quickValue: '5' },
  connections: {
    type: 'string',
    help: 'anonymous connections one server process holds in the connections group (a gateway, then the Node ceiling; SSE, then WS); each needs a file descriptor in the server: a hard open-file limit below this plus 64 caps it, and the report says so',
    full: '20000',
    quickValue: '200',
  },
  'connections-messages': {
    type: 'string',
    help: 'messages sent to every connection of the connections group, as fast as confirms allow',
    full: '20',
    quickValue: '5',
  },
  'churn-consumers': { type: 'string', help: 'known consumer ids of the reconnect scenario', full: '1000', quickValue: '60' },
  'churn-concurrency': { type: 'string', help: 'reconnect loops at once', full: '200', quickValue: '20' },
  'churn-seconds': { type: 'string', help: 'length of the reconnect scenario', full: '30', quickValue: '3' },
  'longpoll-consumers': { type: 'string', help: 'identified long-poll consumers', full: '200', quickValue: '20' },
  'longpoll-messages': { type: 'string', help: 'messages waiting for each long-poll consumer', full: '50', quickValue: '10' },
  size: { type: 'string', help: 'message body size in bytes', full: '100', quickValue: '100' },
  workers: { type: 'string', help: 'subscriber worker processes', full: '2', quickValue: '2' },
  'open-concurrency': { type: 'string', help: 'connection attempts in flight at once (all workers)', full: '100', quickValue: '50' },
  'transient-fanout': {
    type: 'string',
    help: 'subscriber counts at which the identified pair runs again with transient messages',
    full: '1000',
    quickValue: '50',
  },
  transient: {
    type: 'boolean',
    default: false,
    help: 'publish transient messages (delivery mode 1) instead of persistent ones, as the SDK does',
  },
  'no-profile': { type: 'boolean', default: false, help: 'skip the two CPU-profiled runs (the quick run skips them anyway)' },
  profile: { type: 'boolean', default: false, help: 'take the CPU profiles even with --quick' },
  only: {
    type: 'string',
    help: 'comma-separated groups to run: throughput, idle, connections, churn, longpoll, publish, profile; and, only when named, the A/B groups workers (warren serve --workers 1 vs 2), metrics (--metrics-port vs none) and logged (--log-routes vs none), and logged-identified (identified SSE on a logged channel against anonymous fan-out; a reconnect storm with Last-Event-ID)',
  },
  'publish-messages': {
    type: 'string',
    help: 'messages per run of the publish group (a tenth for the one-request-at-a-time HTTP client)',
    full: '20000',
    quickValue: '300',
  },
  'publish-batch': { type: 'string', help: 'messages per HTTP batch request in the publish group', full: '100', quickValue: '20' },
  'publish-rounds': {
    type: 'string',
    help: 'rounds of the publish group (every client once a round, interleaved)',
    full: '3',
    quickValue: '1',
  },
  'ab-fanout': { type: 'string', help: 'subscribers of the A/B groups (workers, metrics)', full: '1000', quickValue: '50' },
  'ab-pairs': { type: 'string', help: 'A,B pairs of runs per A/B comparison, interleaved A,B,A,B', full: '3', quickValue: '1' },
  'logged-fanout': {
    type: 'string',
    help: 'subscriber counts of the logged-identified group (anonymous fan-out, then identified SSE on a logged channel)',
    full: '1000,5000',
    quickValue: '50',
  },
  'logged-messages': {
    type: 'string',
    help: 'messages per throughput phase of the logged-identified group, the same for both variants (one value, or one per --logged-fanout count)',
    full: '100,30',
    quickValue: '20',
  },
  'logged-latency-rate': {
    type: 'string',
    help: 'messages per second of the latency phase of the logged-identified group',
    full: '2',
    quickValue: '5',
  },
  'logged-latency-subscribers': {
    type: 'string',
    help: 'the --logged-fanout counts that get that latency phase (a queue per subscriber falls far behind 2 msg/s at 5,000)',
    full: '1000',
    quickValue: '50',
  },
  'logged-latency-seconds': { type: 'string', help: 'length of that latency phase', full: '10', quickValue: '1' },
  'storm-subscribers': {
    type: 'string',
    help: 'identified subscribers of the reconnect storm (logged-identified group)',
    full: '1000',
    quickValue: '40',
  },
  'storm-rate': { type: 'string', help: 'reconnects per second of the storm (all workers)', full: '500', quickValue: '50' },
  'storm-seconds': { type: 'string', help: 'length of the storm', full: '10', quickValue: '1' },
  'storm-offline': {
    type: 'string',
    help: 'ms a subscriber stays away between hanging up and reconnecting',
    full: '1000',
    quickValue: '200',
  },
  'storm-publish-rate': { type: 'string', help: 'messages per second published during the storm', full: '2', quickValue: '10' },
  match: {
    type: 'string',
    help: 'run only the throughput scenarios whose name matches this regular expression (e.g. "anon-sse|node-sse")',
  },
  out: { type: 'string', help: 'where to write the results (default bench/results.md; bench/results-quick.md with --quick)' },
  help: { type: 'boolean', default: false, help: 'this text' },
};

const { values: flags } = parseArgs({
  options: Object.fromEntries(
    Object.entries(FLAGS).map(([k, v]) => [k, { type: v.type, ...(v.default === undefined ? {} : { default: v.default }) }]),
  ),
});
if (flags.help) {
  process.stdout.write('npm run bench -- [flags]\n\n');
  for (const [k, v] of Object.entries(FLAGS)) {
    process.stdout.write(`  --${k.padEnd(22)} ${v.help}${v.full === undefined ? '' : ` (default ${v.full}; --quick ${v.quickValue})`}\n`);
  }
  process.exit(0);
}
const quick = flags.quick;
const num = (k) => Number(flags[k] ?? (quick ? FLAGS[k].quickValue : FLAGS[k].full));
const list = (k) =>
  String(flags[k] ?? (quick ? FLAGS[k].quickValue : FLAGS[k].full))
    .split(',')
    .map(Number)
    .filter((n) => n > 0);
const cfg = {
  fanout: list('fanout'),
  messages: list('messages'),
  messagesIdentified: list('messages-identified'),
  latencySubscribers: num('latency-subscribers'),
  latencyRate: num('latency-rate'),
  latencySeconds: num('latency-seconds'),
  latencyRepeats: num('latency-repeats'),
  repeats: num('repeats'),
  idleConnections: num('idle-connections'),
  idleMessages: num('idle-messages'),
  connections: num('connections'),
  connectionsMessages: num('connections-messages'),
  churnConsumers: num('churn-consumers'),
  churnConcurrency: num('churn-concurrency'),
  churnSeconds: num('churn-seconds'),
  longpollConsumers: num('longpoll-consumers'),
  longpollMessages: num('longpoll-messages'),
  size: num('size'),
  workers: num('workers'),
  openConcurrency: num('open-concurrency'),
  profile: quick ? flags.profile : !flags['no-profile'],
  persistent: !flags.transient,
  transientFanout: list('transient-fanout'),
  abFanout: num('ab-fanout'),
  abPairs: num('ab-pairs'),
  loggedFanout: list('logged-fanout'),
  loggedMessages: list('logged-messages'),
  loggedLatencyRate: num('logged-latency-rate'),
  loggedLatencySeconds: num('logged-latency-seconds'),
  loggedLatencySubscribers: list('logged-latency-subscribers'),
  stormSubscribers: num('storm-subscribers'),
  stormRate: num('storm-rate'),
  stormSeconds: num('storm-seconds'),
  stormOfflineMs: num('storm-offline'),
  stormPublishRate: num('storm-publish-rate'),
  publishMessages: num('publish-messages'),
  publishBatch: num('publish-batch'),
  publishRounds: num('publish-rounds'),
};
const persistent = cfg.persistent;
/** The k-th value of a per-size list, or its last one. */
const nth = (xs, k) => xs[Math.min(k, xs.length - 1)];
const groups = new Set((flags.only ?? 'throughput,idle,connections,churn,longpoll,publish,profile').split(','));
if (!cfg.profile) groups.delete('profile');
const outPath = flags.out ?? (quick ? 'bench/results-quick.md' : 'bench/results.md');
const command = `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`;

const AMQP = process.env.WARREN_BENCH_AMQP_URL ?? process.env.WARREN_TEST_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const TOKEN = `bench-token-${Math.random().toString(36).slice(2)}-0123456789`;
const RUN = `b${Date.now().toString(36)}`;
/**
 * The exchange of the logged-identified group's gateways: its log shards are
 * `warren:log:<exchange>:<n>` and its positions `warren:positions:<exchange>`,
 * apart from any other deployment's, and their names hold the run id, so the
 * cleanup deletes them with the run's queues; the exchange goes too.
 */
const LOGGED_EXCHANGE = `bench-logged-${RUN}-${Math.random().toString(36).slice(2, 8)}`;
let loggedExchangeUsed = false;
const PROFILE_DIR = `${ROOT}bench/profiles`;
const STALL_MS = quick ? 5000 : 15_000;
const PHASE_MAX_MS = quick ? 20_000 : 180_000;
const OPEN_TIMEOUT_MS = quick ? 30_000 : 240_000;
const WATCHDOG_MS = quick ? 180_000 : 40 * 60_000;

/** A pause: `fullMs` in the full run, `quickMs` with --quick. */
const pause = (fullMs, quickMs) => sleep(quick ? quickMs : fullMs);
// A quick run's figures are not judged: it does not wait for a broker that others share to be quiet.
const quiet = (beam) => (quick ? Promise.resolve() : waitRabbitQuiet(beam, 0.15, 30_000, 1000));
const log = (...args) => process.stdout.write(`[bench ${(performance.now() / 1000).toFixed(0).padStart(4)} s] ${args.join(' ')}\n`);
const mgmt = new Management();
const started = new Date();
const t0 = performance.now();

// ---------------------------------------------------------------- processes

const workers = [];
const children = new Set();
let phaseCounter = 0;

function split(n, parts) {
  return Array.from({ length: parts }, (_, k) => Math.floor(n / parts) + (k < n % parts ? 1 : 0));
}

/** Consumer ids `bench-<run>-<scenario>-<k>` (1 to 64 characters of A-Z a-z 0-9 _ -). */
const consumerIds = (scenario, n) => Array.from({ length: n }, (_, k) => `bench-${RUN}-${scenario}-${k}`);

async function startWarren(profileName, extraArgs = []) {
  const server = await startServer('warren', {
    amqpUrl: AMQP,
    token: TOKEN,
    extraArgs,
    ...(profileName === undefined ? {} : { profileDir: PROFILE_DIR, profileName }),
  });
  const workers = extraArgs.indexOf('--workers');
  server.workers = workers < 0 ? 1 : Number(extraArgs[workers + 1]);
  children.add(server);
  return server;
}

/** `/_warren/stats` over a fresh connection: with --workers, each connection may reach another worker. */
function freshStats(server) {
  return new Promise((resolve, reject) => {
    const req = httpGet(
      `${server.url}/_warren/stats`,
      { agent: false, headers: { authorization: `Bearer ${TOKEN}` }, timeout: 10_000 },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve(JSON.parse(body)));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('stats timed out')));
    req.on('error', reject);
  });
}

/** Every worker's stats (by pid), asking over fresh connections until each answered (at most 40 tries). */
async function workerStats(server) {
  const seen = new Map();
  for (let k = 0; k < 40 && seen.size < server.workers; k++) {
    const s = await freshStats(server);
    seen.set(s.pid, s);
  }
  return [...seen.values()];
}

async function startNode() {
  const server = await startServer('node', {});
  children.add(server);
  return server;
}

async function stopServer(server) {
  await server.stop();
  children.delete(server);
}

async function warrenStats(server) {
  const res = await fetch(`${server.url}/_warren/stats`, {
    headers: { authorization: `Bearer ${TOKEN}` },
    signal: AbortSignal.timeout(10_000),
  });
  return res.json();
}

/** Streams the server holds now, as it counts them. */
async function serverStreams(server, { identified, transport }) {
  if (server.kind === 'warren') {
    const all = server.workers > 1 ? await workerStats(server) : [await warrenStats(server)];
    // An anonymous stream is the fan-out's, or, on a logged channel, a log tail's.
    return all.reduce((n, s) => n + (identified ? s.streams.identified : s.fanOut.subscribers + (s.logs?.subscribers ?? 0)), 0);
  }
  const s = await (await fetch(`${server.url}/stats`, { signal: AbortSignal.timeout(10_000) })).json();
  return transport === 'ws' ? s.websocket : s.sse;
}

/** Waits until the server holds `n` streams (they are subscribed), at most `maxMs`. */
async function waitStreams(server, n, how, maxMs = 30_000) {
  const start = performance.now();
  let seen = 0;
  while (performance.now() - start < maxMs) {
    seen = await serverStreams(server, how).catch(() => seen);
    if (seen >= n) return seen;
    await sleep(100);
  }
  return seen;
}

/** Opens `n` subscribers spread over the workers; connects/s from the first attempt to the last open. */
async function openSubscribers(server, { transport, path, consumers, n, trackIds }) {
  const sizes = split(n, workers.length);
  const lanes = split(cfg.openConcurrency, workers.length);
  let offset = 0;
  const start = now();
  const replies = await Promise.all(
    workers.map((w, k) => {
      const slice = consumers?.slice(offset, offset + sizes[k]);
      offset += sizes[k];
      return w.call(
        'open',
        { transport, base: server.url, path, consumers: slice, count: sizes[k], concurrency: Math.max(1, lanes[k]), trackIds },
        OPEN_TIMEOUT_MS,
      );
    }),
  );
  const ms = now() - start;
  const errors = {};
  for (const r of replies) for (const [e, c] of Object.entries(r.errors)) errors[e] = (errors[e] ?? 0) + c;
  const opened = replies.reduce((s, r) => s + r.opened, 0);
  return { opened, failed: n - opened, errors, ms, connectsPerSec: opened / (ms / 1000) };
}

async function closeSubscribers() {
  await Promise.all(workers.map((w) => w.call('close', {}, 30_000)));
}

/** Polls the targets' progress until `expected` deliveries, a stall or the phase limit. */
async function waitDeliveries(targets, expected) {
  const start = now();
  let last = -1;
  let lastChange = now();
  for (;;) {
    const progress = await Promise.all(targets.map((t) => t.call('progress', {}, 10_000)));
    const received = progress.reduce((s, p) => s + p.received, 0);
    if (received >= expected) return { complete: true, received };
    if (received !== last) {
      last = received;
      lastChange = now();
    } else if (now() - lastChange > STALL_MS) return { complete: false, stalled: true, received };
    if (now() - start > PHASE_MAX_MS) return { complete: false, timedOut: true, received };
    await sleep(100);
  }
}

/**
 * One phase: every target expects messages 0..m-1 of a new phase, the
 * publisher sends them (as fast as it can, or at `rate`), and the targets
 * count what arrives. CPU of the server, RabbitMQ and the workers over it.
 */
async function runPhase({ targets, publisher, channel, m, rate, server, beam, subscribers }) {
  const phase = ++phaseCounter;
  await Promise.all(targets.map((t) => t.call('expect', { phase, m }, 10_000)));
  const serverPids = server === undefined ? [] : [server.pid, ...(server.workerPids ?? [])];
  const pids = [beam, ...serverPids, ...targets.map((t) => t.pid)];
  const stopCpu = cpuMeter(pids);
  const pub = await publish(publisher, { channel, phase, m, size: cfg.size, rate, idPrefix: `bench-${RUN}`, timeoutMs: PHASE_MAX_MS });
  const wait = await waitDeliveries(targets, subscribers * m);
  const cpu = stopCpu();
  const reports = await Promise.all(targets.map((t) => t.call('report', {}, 30_000)));
  const merged = mergeReports(reports);
  const spanS = ((merged.lastAt || now()) - pub.startAt) / 1000;
  return {
    m,
    rate,
    publish: { ...pub, perSec: m / ((pub.sentAt - pub.startAt) / 1000) },
    wait,
    ...merged,
    deliveriesPerSec: merged.unique / spanS,
    spanS,
    cpu: {
      rabbit: cpu[0].cores,
      server: server === undefined ? undefined : cpu.slice(1, 1 + serverPids.length).reduce((s, c) => s + c.cores, 0),
      subscribers: cpu.slice(1 + serverPids.length).reduce((s, c) => s + c.cores, 0),
      other: cpu.wall >= 2 ? cpu.other : undefined,
    },
    beamRssMiB: rssMiB(beam),
  };
}

/** Deletes every queue of this run (their names contain the run id). */
async function cleanupQueues() {
  try {
    const names = await mgmt.queueNames(RUN);
    const deleted = await deleteQueues(AMQP, names);
    if (deleted > 0) log(`deleted ${deleted} queues`);
    if (loggedExchangeUsed) await deleteExchange(AMQP, LOGGED_EXCHANGE);
    return deleted;
  } catch (err) {
    log(`cleanup failed: ${err.message}`);
    return 0;
  }
}

// ---------------------------------------------------------------- scenarios

const results = {
  fanout: [],
  idle: [],
  connections: [],
  churn: undefined,
  longPoll: undefined,
  profiles: [],
  ab: [],
  loggedIdentified: undefined,
  publish: [],
  errors: [],
};

/** The pids of a process's children (a `warren serve --workers` primary's workers). */
function childPids(pid) {
  try {
    return execFileSync('pgrep', ['-P', String(pid)])
      .toString()
      .trim()
      .split('\n')
      .map(Number);
  } catch {
    return [];
  }
}

/**
 * The A/B groups: each comparison runs its two variants as fresh gateways,
 * interleaved A,B,A,B (others share this machine: its load moves), one
 * throughput phase each; every run is kept with the load average around it.
 */
const AB_GROUPS = {
  workers: {
    variants: [
      { tag: 'w1', serverArgs: ['--workers', '1'] },
      { tag: 'w2', serverArgs: ['--workers', '2'] },
    ],
    scenarios: [
      { system: 'warren', transport: 'sse', identified: false },
      { system: 'warren', transport: 'sse', identified: true },
    ],
  },
  metrics: {
    variants: [
      { tag: 'nometrics', serverArgs: [] },
      // Scraped every second while it runs (Prometheus would scrape every 15 s or so).
      { tag: 'metrics', serverArgs: ['--metrics-port', '<free>'], scrapeEveryMs: 1000 },
    ],
    scenarios: [{ system: 'warren', transport: 'sse', identified: false }],
  },
  // Anonymous SSE on a logged channel (issue 15: one log tail per shard and process) against the fan-out queue.
  logged: {
    variants: [
      { tag: 'unlogged', serverArgs: [] },
      { tag: 'logged', serverArgs: ['--log-routes', '/bench-', '--log-max-bytes', '64mb'] },
    ],
    scenarios: [{ system: 'warren', transport: 'sse', identified: false }],
  },
};

/** A port free a moment ago. */
async function freePort() {
  const server = createNetServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  server.close();
  return port;
}

/** GETs /metrics on `port` every `everyMs` until stopped; `stop()` gives the count of answered scrapes. */
function scrapeMetrics(port, everyMs) {
  let answered = 0;
  const timer = setInterval(() => {
    fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(everyMs) })
      .then((res) => res.text().then(() => (answered += res.ok ? 1 : 0)))
      .catch(() => undefined);
  }, everyMs);
  return {
    stop() {
      clearInterval(timer);
      return answered;
    },
  };
}

async function abGroup(group) {
  const { variants, scenarios } = AB_GROUPS[group];
  const S = cfg.abFanout;
  for (const spec of scenarios) {
    for (let pair = 1; pair <= cfg.abPairs; pair++) {
      for (const variant of variants) {
        const m = spec.identified ? nth(cfg.messagesIdentified, 0) : nth(cfg.messages, 0);
        const port = await freePort();
        const serverArgs = variant.serverArgs.map((a) => (a === '<free>' ? String(port) : a));
        const scraper = variant.scrapeEveryMs === undefined ? undefined : scrapeMetrics(port, variant.scrapeEveryMs);
        const loadBefore = loadavg()[0];
        const row = await fanOutScenario({ ...spec, S, m, latency: false, tag: `${variant.tag}-r${pair}`, serverArgs });
        const entry = { group, variant: variant.tag, run: pair, loadBefore, loadAfter: loadavg()[0], row, scrapes: scraper?.stop() };
        results.ab.push(entry);
        log(
          `${row.name}: load ${loadBefore.toFixed(2)} → ${entry.loadAfter.toFixed(2)}${entry.scrapes === undefined ? '' : `; ${entry.scrapes} scrapes`}`,
        );
      }
    }
  }
}

/**
 * A fan-out scenario: S subscribers of one system (Warren anonymous or
 * identified, the Node ceiling, the RabbitMQ ceiling) on one channel; an
 * optional latency phase at a fixed rate, then a throughput phase.
 */
function scenarioName({ system, transport, identified, S, profile, persistent = cfg.persistent, tag }) {
  return `${system === 'warren' ? `warren-${identified ? 'id' : 'anon'}` : system}-${transport}-${S}${persistent ? '' : '-transient'}${profile ? '-prof' : ''}${tag === undefined ? '' : `-${tag}`}`;
}

async function fanOutScenario({
  system,
  transport,
  identified,
  S,
  m,
  latency,
  profile,
  persistent = cfg.persistent,
  tag,
  serverArgs = [],
}) {
  const name = scenarioName({ system, transport, identified, S, profile, persistent, tag });
  const label = `${name}`;
  const channel = `/bench-${RUN}-${name}`;
  const beam = beamPid();
  const row = { name, system, transport, identified, S, persistent, profiled: profile === true };
  let server;
  let rabbit;
  let publisher;
  log(`${label}: start`);
  await quiet(beam);
  try {
    row.rabbitMemBeforeMiB = (await mgmt.node()).memUsedMiB;
    const consumers = identified ? consumerIds(name, S) : undefined;
    let targets;
    if (system === 'rabbit') {
      rabbit = forkHelper(new URL('./lib/rabbit-ceiling.mjs', import.meta.url).pathname, 'rabbit-ceiling');
      children.add({ stop: async () => rabbit.kill() });
      const r = await rabbit.call(
        'setup',
        { url: AMQP, channel, consumers, prefetch: 64, expiresMs: 30_000, maxLength: 10_000 },
        OPEN_TIMEOUT_MS,
      );
      row.open = { opened: r.opened, failed: 0, errors: {}, ms: r.ms, connectsPerSec: r.opened / (r.ms / 1000) };
      targets = [rabbit];
      publisher = await AmqpPublisher.connect(AMQP, { persistent });
    } else {
      server = system === 'warren' ? await startWarren(profile ? `${name}.cpuprofile` : undefined, serverArgs) : await startNode();
      await pause(500, 200);
      if (server.workers > 1) server.workerPids = childPids(server.pid);
      row.rssBeforeMiB = rssMiB(server.pid);
      const stopCpu = cpuMeter([beam, server.pid]);
      row.open = await openSubscribers(server, { transport, path: channel, consumers, n: S });
      row.subscribed = await waitStreams(server, row.open.opened, { identified, transport });
      const cpu = stopCpu();
      row.open.cpu = { rabbit: cpu[0].cpuSeconds, server: cpu[1].cpuSeconds };
      await pause(1000, 200);
      row.rssAfterOpenMiB = rssMiB(server.pid);
      targets = workers;
      publisher = system === 'node' ? await FeedPublisher.connect(server.feedPort) : await AmqpPublisher.connect(AMQP, { persistent });
    }
    log(
      `${label}: ${row.open.opened}/${S} open in ${(row.open.ms / 1000).toFixed(1)} s (${row.open.connectsPerSec.toFixed(0)}/s)${row.open.failed > 0 ? ` failures ${JSON.stringify(row.open.errors)}` : ''}`,
    );
    const ctx = { targets, publisher, channel, server, beam, subscribers: row.open.opened };
    if (latency) {
      const runs = [];
      for (let k = 0; k < cfg.latencyRepeats; k++) {
        const phase = await runPhase({ ...ctx, m: Math.round(cfg.latencyRate * cfg.latencySeconds), rate: cfg.latencyRate });
        runs.push(phase);
        log(
          `${label}: latency run ${k + 1}/${cfg.latencyRepeats}: p50 ${phase.latency.p50.toFixed(2)} p99 ${phase.latency.p99.toFixed(2)} ms, lost ${phase.lost} dup ${phase.dup} ooo ${phase.ooo}`,
        );
      }
      // The run with the median p99 stands for the scenario; every run's p99 is kept.
      row.latency = [...runs].sort((x, y) => x.latency.p99 - y.latency.p99)[Math.floor((runs.length - 1) / 2)];
      row.latencyP99s = runs.map((r) => r.latency.p99);
      row.latencyProblems = runs.filter((r) => r.lost + r.dup + r.ooo > 0).length;
    }
    const mono0 = Number(process.hrtime.bigint() / 1000n);
    const epoch0 = now();
    const repeats = profile || identified || system === 'rabbit' || tag !== undefined ? 1 : cfg.repeats;
    const phases = [];
    for (let k = 0; k < repeats; k++) {
      const phase = await runPhase({ ...ctx, m });
      phases.push(phase);
      log(
        `${label}: ${repeats > 1 ? `run ${k + 1}/${repeats}: ` : ''}${phase.deliveriesPerSec.toFixed(0)} deliveries/s (${phase.unique}/${phase.expected}), p99 ${phase.latency.p99.toFixed(1)} ms, lost ${phase.lost} dup ${phase.dup} ooo ${phase.ooo} drops ${phase.drops}`,
      );
    }
    // The phase with the median rate stands for the scenario; every rate is kept.
    row.throughput = [...phases].sort((x, y) => x.deliveriesPerSec - y.deliveriesPerSec)[Math.floor((phases.length - 1) / 2)];
    row.throughputRates = phases.map((p) => p.deliveriesPerSec);
    row.throughputProblems = phases.filter((p) => p.lost + p.dup + p.ooo + p.drops > 0).length;
    if (profile) {
      // The profile's clock is the monotonic one: map the phase's epoch times onto it.
      const toMono = (epoch) => mono0 + (epoch - epoch0) * 1000;
      row.profileWindow = { fromUs: toMono(row.throughput.publish.startAt), toUs: toMono(row.throughput.lastAt || now()) };
    }
    if (server?.kind === 'warren') row.gatewayStats = await warrenStats(server);
    row.rabbitMemAfterMiB = (await mgmt.node()).memUsedMiB;
    row.beamRssMiB = rssMiB(beam);
  } catch (err) {
    row.error = err.message;
    results.errors.push(`${label}: ${err.message}`);
    log(`${label}: FAILED ${err.message}`);
  } finally {
    await publisher?.close();
    if (server !== undefined) {
      await closeSubscribers().catch(() => undefined);
      await stopServer(server);
      if (server.kind === 'warren' && /error/i.test(server.stderr())) row.gatewayStderr = server.stderr().slice(-1500);
    }
    if (rabbit !== undefined) {
      await rabbit.call('teardown', {}, 120_000).catch(() => undefined);
      await rabbit.call('exit', {}, 5000).catch(() => undefined);
      rabbit.kill();
    }
    await cleanupQueues();
  }
  return row;
}

/**
 * Idle memory: N anonymous connections held open; the server's RSS growth per
 * connection; RabbitMQ's queues for the channel; then a few messages that must
 * reach every connection.
 */
async function idleScenario({ system, transport, n }) {
  const name = `idle-${system}-${transport}-${n}`;
  const channel = `/bench-${RUN}-${name}`;
  const beam = beamPid();
  const row = { name, system, transport, n };
  let server;
  let publisher;
  log(`${name}: start`);
  await quiet(beam);
  try {
    server = system === 'warren' ? await startWarren() : await startNode();
    if (system === 'warren') {
      // Warm the fan-out path (one subscriber, gone), so the baseline holds the channel's consumer.
      await openSubscribers(server, { transport, path: channel, n: 1 });
      await waitStreams(server, 1, { identified: false, transport });
      await closeSubscribers();
    }
    await pause(2000, 500);
    row.rssBeforeMiB = rssMiB(server.pid);
    row.rabbitMemBeforeMiB = (await mgmt.node()).memUsedMiB;
    row.beamRssBeforeMiB = rssMiB(beam);
    row.open = await openSubscribers(server, { transport, path: channel, n });
    row.subscribed = await waitStreams(server, row.open.opened, { identified: false, transport });
    log(
      `${name}: ${row.open.opened}/${n} open in ${(row.open.ms / 1000).toFixed(1)} s${row.open.failed > 0 ? ` failures ${JSON.stringify(row.open.errors)}` : ''}`,
    );
    await pause(6000, 1000); // idle; RabbitMQ's management figures refresh every 5 s
    row.rssAfterMiB = rssMiB(server.pid);
    row.kibPerConnection = ((row.rssAfterMiB - row.rssBeforeMiB) * 1024) / row.open.opened;
    row.rabbitMemAfterMiB = (await mgmt.node()).memUsedMiB;
    row.beamRssAfterMiB = rssMiB(beam);
    if (system === 'warren') {
      row.queuesForChannel = (await mgmt.queueNames(channel)).length;
      const s = await warrenStats(server);
      row.declares = s.broker.queueDeclares;
      row.consumers = s.broker.consumersStarted;
    }
    publisher = system === 'node' ? await FeedPublisher.connect(server.feedPort) : await AmqpPublisher.connect(AMQP, { persistent });
    row.delivery = await runPhase({
      targets: workers,
      publisher,
      channel,
      m: cfg.idleMessages,
      server,
      beam,
      subscribers: row.open.opened,
    });
    log(
      `${name}: ${row.kibPerConnection.toFixed(1)} KiB/connection; ${row.delivery.unique}/${n * cfg.idleMessages} delivered, lost ${row.delivery.lost} dup ${row.delivery.dup} drops ${row.delivery.drops}${row.queuesForChannel === undefined ? '' : `; ${row.queuesForChannel} queue(s) for the channel`}`,
    );
  } catch (err) {
    row.error = err.message;
    results.errors.push(`${name}: ${err.message}`);
    log(`${name}: FAILED ${err.message}`);
  } finally {
    await publisher?.close();
    if (server !== undefined) {
      await closeSubscribers().catch(() => undefined);
      await stopServer(server);
    }
    await cleanupQueues();
  }
  return row;
}

/** File descriptors a server process holds besides its connections (about 22 here: stdio, epoll, libuv, AMQP, listeners). */
const FD_HEADROOM = 64;

/** How many connections one server process can hold under the hard open-file limit `limit` (Node raises its soft limit to the hard one). */
const connectionsAllowed = (limit) => (Number.isFinite(limit) ? limit - FD_HEADROOM : Infinity);

/** The stable message of a connections scenario capped by the open-file limit. */
const fileLimitMessage = (n, limit) =>
  `EBENCH_NOFILE: ${n} connections on one process need an open-file limit of at least ${n + FD_HEADROOM}; the hard limit here is ${limit}, so ${connectionsAllowed(limit)} were opened. Raise it where the run starts (as root with CAP_SYS_RESOURCE: ulimit -Hn 65536; systemd: LimitNOFILE=65536; docker run --ulimit nofile=65536:65536)`;

/**
 * Many connections on one server process (issue 17): N anonymous SSE or WS
 * connections on one `warren serve` (one process, no --workers) or the Node
 * ceiling, all open at once; none may be refused; then messages as fast as
 * the confirms allow, each of which must reach every connection, once and in
 * order. The server's file descriptors, RSS and CPU beside the deliveries.
 */
async function connectionsScenario({ system, transport, n: requested }) {
  const limit = hardFileLimit();
  const n = Math.min(requested, connectionsAllowed(limit));
  const name = `conns-${system}-${transport}-${requested}`;
  const channel = `/bench-${RUN}-${name}`;
  const beam = beamPid();
  const row = { name, system, transport, requested, n, fileLimit: limit };
  let server;
  let publisher;
  log(`${name}: start`);
  if (n < requested) {
    row.capped = fileLimitMessage(requested, limit);
    log(`${name}: ${row.capped}`);
  }
  await quiet(beam);
  try {
    // Loopback clients take ports from ip_local_port_range; those still in TIME_WAIT from earlier scenarios point at other server ports.
    row.timeWaitBefore = timeWaitSockets();
    row.portRange = portRange();
    server = system === 'warren' ? await startWarren() : await startNode();
    await pause(500, 200);
    row.rssBeforeMiB = rssMiB(server.pid);
    row.fdsBefore = openFiles(server.pid);
    const stopCpu = cpuMeter([beam, server.pid]);
    row.open = await openSubscribers(server, { transport, path: channel, n });
    row.subscribed = await waitStreams(server, row.open.opened, { identified: false, transport }, quick ? 10_000 : 60_000);
    const cpu = stopCpu();
    row.open.cpu = { rabbit: cpu[0].cores, server: cpu[1].cores };
    row.fdsAfterOpen = openFiles(server.pid);
    log(
      `${name}: ${row.open.opened}/${n} open in ${(row.open.ms / 1000).toFixed(1)} s (${row.open.connectsPerSec.toFixed(0)}/s), ${row.subscribed} subscribed, ${row.fdsAfterOpen} fds; ${row.timeWaitBefore} sockets in TIME_WAIT before${row.open.failed > 0 ? `; failures ${JSON.stringify(row.open.errors)}` : ''}`,
    );
    await pause(1000, 200);
    row.rssAfterOpenMiB = rssMiB(server.pid);
    publisher = system === 'node' ? await FeedPublisher.connect(server.feedPort) : await AmqpPublisher.connect(AMQP, { persistent });
    // --repeats phases on the same connections (one phase of a few seconds varies by ±20% here); the median rate stands.
    const phases = [];
    for (let k = 0; k < cfg.repeats; k++) {
      const phase = await runPhase({
        targets: workers,
        publisher,
        channel,
        m: cfg.connectionsMessages,
        server,
        beam,
        subscribers: row.open.opened,
      });
      phases.push(phase);
      log(`${name}: run ${k + 1}/${cfg.repeats}: ${phase.deliveriesPerSec.toFixed(0)} deliveries/s (${phase.unique}/${phase.expected})`);
    }
    row.delivery = [...phases].sort((x, y) => x.deliveriesPerSec - y.deliveriesPerSec)[Math.floor((phases.length - 1) / 2)];
    row.deliveryRates = phases.map((p) => p.deliveriesPerSec);
    row.phases = phases.map((p) => ({ unique: p.unique, expected: p.expected, lost: p.lost, dup: p.dup, ooo: p.ooo, drops: p.drops }));
    row.rssAfterMiB = rssMiB(server.pid);
    if (system === 'warren') row.queuesForChannel = (await mgmt.queueNames(channel)).length;
    const d = row.delivery;
    log(
      `${name}: median run ${d.unique}/${n * cfg.connectionsMessages} delivered, ${d.deliveriesPerSec.toFixed(0)} deliveries/s, p99 ${d.latency.p99.toFixed(1)} ms, lost ${d.lost} dup ${d.dup} ooo ${d.ooo} drops ${d.drops}; server RSS ${row.rssAfterMiB.toFixed(0)} MiB, CPU ${pctLog(d.cpu.server)}; load ${loadavg()[0].toFixed(2)}`,
    );
  } catch (err) {
    row.error = err.message;
    results.errors.push(`${name}: ${err.message}`);
    log(`${name}: FAILED ${err.message}`);
  } finally {
    await publisher?.close();
    if (server !== undefined) {
      await closeSubscribers().catch(() => undefined);
      await stopServer(server);
      if (server.kind === 'warren' && /error/i.test(server.stderr())) row.gatewayStderr = server.stderr().slice(-1500);
    }
    await cleanupQueues();
  }
  row.loadAfter = loadavg();
  return row;
}

/** Open file descriptors of a process (NaN when it is gone). */
function openFiles(pid) {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return NaN;
  }
}

/** Known identified consumers reconnecting SSE streams as fast as they can for a while. */
async function churnScenario() {
  const n = cfg.churnConsumers;
  const name = `churn-${n}`;
  const channel = `/bench-${RUN}-${name}`;
  const beam = beamPid();
  const row = { name, n, concurrency: cfg.churnConcurrency, seconds: cfg.churnSeconds };
  let server;
  log(`${name}: start`);
  await quiet(beam);
  try {
    server = await startWarren();
    const consumers = consumerIds('churn', n);
    // First visit: every consumer's queue is declared and bound (the slow path, once).
    row.firstOpen = await openSubscribers(server, { transport: 'sse', path: channel, consumers, n });
    await waitStreams(server, row.firstOpen.opened, { identified: true });
    await closeSubscribers();
    for (let i = 0; i < 100 && (await serverStreams(server, { identified: true })) > 0; i++) await sleep(100);
    await pause(1000, 200);
    const before = await warrenStats(server);
    row.rssBeforeMiB = rssMiB(server.pid);
    row.rabbitMemBeforeMiB = (await mgmt.node()).memUsedMiB;
    const stopCpu = cpuMeter([beam, server.pid]);
    const sizes = split(n, workers.length);
    const lanes = split(cfg.churnConcurrency, workers.length);
    let offset = 0;
    const replies = await Promise.all(
      workers.map((w, k) => {
        const slice = consumers.slice(offset, offset + sizes[k]);
        offset += sizes[k];
        return w.call(
          'churn',
          { base: server.url, path: channel, consumers: slice, concurrency: Math.max(1, lanes[k]), durationMs: cfg.churnSeconds * 1000 },
          cfg.churnSeconds * 1000 + 60_000,
        );
      }),
    );
    const cpu = stopCpu();
    const afterLoops = await warrenStats(server);
    row.rssAfterMiB = rssMiB(server.pid);
    // The gateway answers the stream's head before it starts the consumer, so
    // it may still be starting and cancelling consumers for clients long gone.
    const endAt = now();
    let catchUpMs = NaN;
    while (now() - endAt < (quick ? 5000 : 15_000)) {
      const s = await warrenStats(server);
      if (
        s.streams.identified === 0 &&
        s.broker.activeConsumers === 0 &&
        s.broker.consumersStarted - before.broker.consumersStarted >= replies.reduce((x, r) => x + r.opens, 0)
      ) {
        catchUpMs = now() - endAt;
        break;
      }
      await sleep(100);
    }
    const after = await warrenStats(server);
    const ms = Math.max(...replies.map((r) => r.ms));
    const hist = new Histogram();
    for (const r of replies) hist.merge(r.openLatency);
    const errors = {};
    for (const r of replies) for (const [e, c] of Object.entries(r.errors)) errors[e] = (errors[e] ?? 0) + c;
    const opens = replies.reduce((x, r) => x + r.opens, 0);
    Object.assign(row, {
      opens,
      failures: replies.reduce((x, r) => x + r.failures, 0),
      errors,
      ms,
      openLatency: hist.summary(),
      consumersStarted: afterLoops.broker.consumersStarted - before.broker.consumersStarted,
      consumersStartedPerSec: (afterLoops.broker.consumersStarted - before.broker.consumersStarted) / (ms / 1000),
      consumersCancelledPerSec: (afterLoops.broker.consumersCancelled - before.broker.consumersCancelled) / (ms / 1000),
      // Streams the clients saw open whose consumer the gateway had not started yet when the loops stopped.
      backlogAtEnd: opens - (afterLoops.broker.consumersStarted - before.broker.consumersStarted),
      backlogAfterWait: opens - (after.broker.consumersStarted - before.broker.consumersStarted),
      declaresDuring: after.broker.queueDeclares - before.broker.queueDeclares,
      catchUpMs,
      cpu: { rabbit: cpu[0].cores, server: cpu[1].cores, other: cpu.wall >= 2 ? cpu.other : undefined },
      beamRssMiB: rssMiB(beam),
      rabbitMemAfterMiB: (await mgmt.node()).memUsedMiB,
    });
    row.opensPerSec = opens / (ms / 1000);
    log(
      `${name}: clients ${row.opensPerSec.toFixed(0)} opens/s, gateway ${row.consumersStartedPerSec.toFixed(0)} consumers started/s (backlog ${row.backlogAtEnd}, after ${Number.isFinite(catchUpMs) ? `caught up in ${catchUpMs.toFixed(0)} ms` : `15 s still ${row.backlogAfterWait}`}), failures ${row.failures} ${JSON.stringify(errors)}, RabbitMQ ${(row.cpu.rabbit * 100).toFixed(0)}% CPU`,
    );
  } catch (err) {
    row.error = err.message;
    results.errors.push(`${name}: ${err.message}`);
    log(`${name}: FAILED ${err.message}`);
  } finally {
    if (server !== undefined) {
      await closeSubscribers().catch(() => undefined);
      await stopServer(server);
    }
    await cleanupQueues();
  }
  return row;
}

/** Identified long-poll consumers, each with K messages waiting, polling as fast as they can. */
async function longPollScenario() {
  const n = cfg.longpollConsumers;
  const k = cfg.longpollMessages;
  const name = `longpoll-${n}`;
  const channel = `/bench-${RUN}-${name}`;
  const beam = beamPid();
  const row = { name, n, k };
  let server;
  let publisher;
  log(`${name}: start`);
  await quiet(beam);
  try {
    server = await startWarren(process.env.BENCH_PROFILE_LONGPOLL ? 'longpoll.cpuprofile' : undefined);
    const consumers = consumerIds('lp', n);
    const sizes = split(n, workers.length);
    const slices = [];
    let offset = 0;
    for (const s of sizes) {
      slices.push(consumers.slice(offset, offset + s));
      offset += s;
    }
    // One empty poll each declares the queues.
    await Promise.all(
      workers.map((w, i) =>
        w.call(
          'longPoll',
          { base: server.url, path: channel, consumers: slices[i], prime: true, durationMs: 60_000, concurrency: 50 },
          120_000,
        ),
      ),
    );
    publisher = await AmqpPublisher.connect(AMQP, { persistent });
    const phase = ++phaseCounter;
    const pub = await publish(publisher, { channel, phase, m: k, size: cfg.size, idPrefix: `bench-${RUN}`, timeoutMs: PHASE_MAX_MS });
    row.published = pub.confirmed;
    await pause(1000, 200);
    const before = await warrenStats(server);
    const stopCpu = cpuMeter([beam, server.pid, ...workers.map((w) => w.pid)]);
    const replies = await Promise.all(
      workers.map((w, i) =>
        w.call(
          'longPoll',
          { base: server.url, path: channel, consumers: slices[i], m: k, phase, durationMs: PHASE_MAX_MS },
          PHASE_MAX_MS + 30_000,
        ),
      ),
    );
    const cpu = stopCpu();
    const after = await warrenStats(server);
    const merged = mergeReports(replies);
    const ms = Math.max(...replies.map((r) => r.ms));
    const errors = {};
    for (const r of replies) for (const [e, c] of Object.entries(r.errors)) errors[e] = (errors[e] ?? 0) + c;
    Object.assign(row, merged, {
      cycles: replies.reduce((s, r) => s + r.cycles, 0),
      empty: replies.reduce((s, r) => s + r.empty, 0),
      failed: replies.reduce((s, r) => s + r.failed, 0),
      errors,
      ms,
      gets: after.broker.gets - before.broker.gets,
      consumersStarted: after.broker.consumersStarted - before.broker.consumersStarted,
      declares: after.broker.queueDeclares - before.broker.queueDeclares,
      cpu: {
        rabbit: cpu[0].cores,
        server: cpu[1].cores,
        subscribers: cpu.slice(2).reduce((s, c) => s + c.cores, 0),
        other: cpu.wall >= 2 ? cpu.other : undefined,
      },
    });
    row.cyclesPerSec = row.unique / (ms / 1000);
    log(
      `${name}: ${row.cyclesPerSec.toFixed(0)} cycles/s with a message, ${row.unique}/${row.expected} received, lost ${row.lost} dup ${row.dup} ooo ${row.ooo}, empty ${row.empty}, failed ${row.failed}`,
    );
  } catch (err) {
    row.error = err.message;
    results.errors.push(`${name}: ${err.message}`);
    log(`${name}: FAILED ${err.message}`);
  } finally {
    await publisher?.close();
    if (server !== undefined) await stopServer(server);
    await cleanupQueues();
  }
  return row;
}

// ---------------------------------------------------------------- logged channels, identified (issue 15)

/** The flags of a gateway whose `/bench-<run>-…` channels are logged, on the group's own exchange. */
function loggedArgs() {
  loggedExchangeUsed = true;
  return ['--exchange', LOGGED_EXCHANGE, '--log-routes', `/bench-${RUN}-`, '--log-max-bytes', '64mb'];
}

/**
 * What the broker holds (outside any measured window: rabbitmqctl starts an
 * Erlang VM): `erlang:memory(total)`, mem_used, every queue, the queues of
 * `channel` (consumer and fan-out queues) and the streams of the group's exchange.
 */
async function brokerSnapshot(channel) {
  const names = listQueueNames();
  return {
    erlangMiB: erlangMemoryMiB(),
    memUsedMiB: await mgmt.node().then(
      (n) => n.memUsedMiB,
      () => NaN,
    ),
    queues: names?.length,
    queuesForChannel: names?.filter((n) => n.includes(channel)).length,
    streamsOfExchange: names?.filter((n) => n.includes(LOGGED_EXCHANGE)).length,
  };
}

/** RabbitMQ's CPU over a second with nothing of ours going on: the broker is shared, this is what others cost it. */
async function idleCores(beam) {
  const stop = cpuMeter([beam]);
  await sleep(quick ? 300 : 1000);
  return stop()[0].cores;
}

/**
 * Readiness from the outside: probe messages (a phase of their own), one at a
 * time, until every subscriber got one. A queue-per-consumer stream has its
 * queue bound once its head came; a stream that reads a log from its end, or
 * a fan-out subscriber, may start a moment later: the next probe reaches it.
 * Then waits until the probes stop arriving.
 */
async function probeReady({ publisher, channel, subscribers }) {
  const phase = ++phaseCounter;
  const t0 = now();
  await Promise.all(workers.map((w) => w.call('expect', { phase, m: 100 }, 10_000)));
  const reachedNow = async () => (await Promise.all(workers.map((w) => w.call('reached', {}, 10_000)))).reduce((s, r) => s + r.reached, 0);
  let reached = 0;
  let probes = 0;
  while (probes < 20 && reached < subscribers) {
    await publisher.send(channel, `bench-${RUN}-probe-${phase}-${probes}`, stampBody(phase, probes, cfg.size));
    probes++;
    // Until all are reached, or no one new for a second (those left missed this probe), at most 20 s.
    const start = now();
    let last = -1;
    let lastChange = now();
    while (now() - start < 20_000) {
      reached = await reachedNow();
      if (reached >= subscribers) break;
      if (reached !== last) {
        last = reached;
        lastChange = now();
      } else if (now() - lastChange > 1000) break;
      await sleep(50);
    }
  }
  const ms = now() - t0;
  // Probes still on their way (queued behind others) would land in the next phase: let them arrive.
  let last = -1;
  for (let k = 0; k < 100; k++) {
    const received = (await Promise.all(workers.map((w) => w.call('progress', {}, 10_000)))).reduce((s, p) => s + p.received, 0);
    if (received === last) break;
    last = received;
    await sleep(300);
  }
  return { reached, probes, ms };
}

/**
 * One variant of the logged-identified comparison at S subscribers:
 * anonymous SSE fan-out (an unlogged channel, the gateway as the throughput
 * group starts it), or identified SSE (`Consumer-Id` header) on a channel
 * under `--log-routes`. Both through the same resumable-client parser, the
 * same readiness probes, a latency phase at a modest rate, then throughput
 * phases (repeated while they are short: up to --repeats within a minute).
 */
async function loggedFanOut({ identified, S, m }) {
  const name = `logged-${identified ? 'id' : 'anon'}-sse-${S}`;
  const channel = `/bench-${RUN}-${name}`;
  const beam = beamPid();
  const row = { name, identified, logged: identified, S, persistent };
  let server;
  let publisher;
  log(`${name}: start`);
  await quiet(beam);
  try {
    server = await startWarren(undefined, identified ? loggedArgs() : []);
    await pause(500, 200);
    row.brokerBefore = await brokerSnapshot(channel);
    row.rabbitIdleCores = await idleCores(beam);
    row.rssBeforeMiB = rssMiB(server.pid);
    publisher = await AmqpPublisher.connect(AMQP, { persistent, ...(identified ? { exchange: LOGGED_EXCHANGE } : {}) });
    const consumers = identified ? consumerIds(name, S) : undefined;
    const stopCpu = cpuMeter([beam, server.pid]);
    row.open = await openSubscribers(server, { transport: 'sse', path: channel, consumers, n: S, trackIds: true });
    row.ready = await probeReady({ publisher, channel, subscribers: row.open.opened });
    const cpu = stopCpu();
    row.open.cpu = { rabbitSeconds: cpu[0].cpuSeconds, serverSeconds: cpu[1].cpuSeconds, wallS: cpu.wall };
    log(
      `${name}: ${row.open.opened}/${S} open in ${(row.open.ms / 1000).toFixed(1)} s, ${row.ready.reached} reached by ${row.ready.probes} probe(s) after ${(row.ready.ms / 1000).toFixed(1)} s; RabbitMQ ${cpu[0].cpuSeconds.toFixed(2)} CPU s${row.open.failed > 0 ? `; failures ${JSON.stringify(row.open.errors)}` : ''}`,
    );
    await pause(2000, 300);
    row.rssAfterOpenMiB = rssMiB(server.pid);
    row.brokerAfterOpen = await brokerSnapshot(channel);
    const ctx = { targets: workers, publisher, channel, server, beam, subscribers: row.open.opened };
    if (cfg.loggedLatencySubscribers.includes(S)) {
      row.latency = await runPhase({
        ...ctx,
        m: Math.max(1, Math.round(cfg.loggedLatencyRate * cfg.loggedLatencySeconds)),
        rate: cfg.loggedLatencyRate,
      });
    }
    if (row.latency !== undefined)
      log(
        `${name}: latency at ${cfg.loggedLatencyRate} msg/s: p50 ${row.latency.latency.p50.toFixed(1)} p99 ${row.latency.latency.p99.toFixed(1)} ms, lost ${row.latency.lost} dup ${row.latency.dup} ooo ${row.latency.ooo}`,
      );
    const phases = [];
    const t0 = now();
    do {
      const phase = await runPhase({ ...ctx, m });
      phases.push(phase);
      log(
        `${name}: ${phase.deliveriesPerSec.toFixed(0)} deliveries/s (${phase.unique}/${phase.expected}), p50 ${phase.latency.p50.toFixed(1)} p99 ${phase.latency.p99.toFixed(1)} ms, RabbitMQ ${pctLog(phase.cpu.rabbit)}, lost ${phase.lost} dup ${phase.dup} ooo ${phase.ooo} drops ${phase.drops}`,
      );
    } while (phases.length < cfg.repeats && now() - t0 < (quick ? 5000 : 60_000));
    row.throughput = [...phases].sort((x, y) => x.deliveriesPerSec - y.deliveriesPerSec)[Math.floor((phases.length - 1) / 2)];
    row.throughputRates = phases.map((p) => p.deliveriesPerSec);
    row.throughputProblems = phases.filter((p) => p.lost + p.dup + p.ooo + p.drops > 0).length;
    row.gatewayStats = await warrenStats(server);
    row.brokerAfter = await brokerSnapshot(channel);
  } catch (err) {
    row.error = err.message;
    results.errors.push(`${name}: ${err.message}`);
    log(`${name}: FAILED ${err.message}`);
  } finally {
    await publisher?.close();
    if (server !== undefined) {
      await closeSubscribers().catch(() => undefined);
      await stopServer(server);
      if (/error/i.test(server.stderr())) row.gatewayStderr = server.stderr().slice(-1500);
    }
    await cleanupQueues();
  }
  return row;
}

const pctLog = (cores) => `${Math.round(cores * 100)}%`;

/**
 * The reconnect storm: M identified SSE subscribers on a logged channel; a
 * message every 1/rate s all along; the subscribers hang up and reconnect at
 * --storm-rate per second (all workers), each after --storm-offline ms away,
 * with `Last-Event-ID` of the last event it got. Per subscriber, every message
 * of the phase must arrive once, in order.
 */
async function stormScenario() {
  const M = cfg.stormSubscribers;
  const name = `logged-storm-${M}`;
  const channel = `/bench-${RUN}-${name}`;
  const beam = beamPid();
  const row = {
    name,
    M,
    rate: cfg.stormRate,
    seconds: cfg.stormSeconds,
    offlineMs: cfg.stormOfflineMs,
    publishRate: cfg.stormPublishRate,
    persistent,
  };
  let server;
  let publisher;
  let publishing;
  log(`${name}: start`);
  await quiet(beam);
  try {
    server = await startWarren(undefined, loggedArgs());
    await pause(500, 200);
    publisher = await AmqpPublisher.connect(AMQP, { persistent, exchange: LOGGED_EXCHANGE });
    row.open = await openSubscribers(server, {
      transport: 'sse',
      path: channel,
      consumers: consumerIds(name, M),
      n: M,
      trackIds: true,
    });
    row.ready = await probeReady({ publisher, channel, subscribers: row.open.opened });
    log(`${name}: ${row.open.opened}/${M} open, ${row.ready.reached} reached by ${row.ready.probes} probe(s)`);
    await pause(1000, 200);
    row.brokerBefore = await brokerSnapshot(channel);
    row.rabbitIdleCores = await idleCores(beam);
    // Publishing starts a second before the storm and goes on two seconds after the last reconnect.
    const leadMs = quick ? 300 : 1000;
    const tailMs = quick ? 500 : 2000;
    const m = Math.max(1, Math.ceil((cfg.stormPublishRate * (leadMs + cfg.stormSeconds * 1000 + cfg.stormOfflineMs + tailMs)) / 1000));
    const phase = ++phaseCounter;
    await Promise.all(workers.map((w) => w.call('expect', { phase, m }, 10_000)));
    publishing = publish(publisher, {
      channel,
      phase,
      m,
      size: cfg.size,
      rate: cfg.stormPublishRate,
      idPrefix: `bench-${RUN}`,
      timeoutMs: PHASE_MAX_MS,
    });
    await sleep(leadMs);
    const stopCpu = cpuMeter([beam, server.pid]);
    const loadBefore = loadavg()[0];
    const stormStartAt = now();
    const replies = await Promise.all(
      workers.map((w) =>
        w.call(
          'storm',
          { rate: cfg.stormRate / workers.length, durationMs: cfg.stormSeconds * 1000, offlineMs: cfg.stormOfflineMs },
          cfg.stormSeconds * 1000 + cfg.stormOfflineMs + 5 * 40_000,
        ),
      ),
    );
    const cpu = stopCpu();
    row.loadBefore = loadBefore;
    row.loadAfter = loadavg()[0];
    const pub = await publishing;
    publishing = undefined;
    row.publish = pub;
    row.wait = await waitDeliveries(workers, row.open.opened * m);
    const reports = await Promise.all(workers.map((w) => w.call('report', {}, 30_000)));
    Object.assign(row, mergeReports(reports), { m });
    // When each missed message was published, against the storm's start: which reconnect lost it.
    row.stormStartAt = stormStartAt;
    row.publishStartAt = pub.startAt;
    const hist = (key) => {
      const h = new Histogram();
      for (const r of replies) h.merge(r[key]);
      return h.summary();
    };
    const sum = (key) => replies.reduce((s, r) => s + r[key], 0);
    const errors = {};
    for (const r of replies) for (const [e, c] of Object.entries(r.errors)) errors[e] = (errors[e] ?? 0) + c;
    const scheduledS = Math.max(...replies.map((r) => r.scheduledMs)) / 1000;
    Object.assign(row, {
      started: sum('started'),
      dropReconnects: sum('dropReconnects'),
      reconnected: sum('reconnected'),
      failures: sum('failures'),
      skipped: sum('skipped'),
      noMessage: sum('noMessage'),
      gaps: sum('gaps'),
      resets: sum('resets'),
      errors,
      scheduledS,
      stormS: Math.max(...replies.map((r) => r.ms)) / 1000,
      reconnectsPerSec: sum('started') / scheduledS,
      head: hist('head'),
      first: hist('first'),
      firstReplayed: hist('firstReplayed'),
      cpu: {
        rabbitSeconds: cpu[0].cpuSeconds,
        rabbit: cpu[0].cores,
        serverSeconds: cpu[1].cpuSeconds,
        server: cpu[1].cores,
        wallS: cpu.wall,
      },
    });
    row.brokerAfter = await brokerSnapshot(channel);
    log(
      `${name}: ${row.started} reconnects in ${scheduledS.toFixed(1)} s (${row.reconnectsPerSec.toFixed(0)}/s; ${row.skipped} skipped, ${row.failures} failed), connect → first message p50 ${row.first.p50.toFixed(1)} p99 ${row.first.p99.toFixed(1)} ms (replayed: p50 ${row.firstReplayed.p50.toFixed(1)} p99 ${row.firstReplayed.p99.toFixed(1)} ms, ${row.firstReplayed.n}), RabbitMQ ${pctLog(row.cpu.rabbit)}; ${row.unique}/${row.expected} delivered, lost ${row.lost} (${row.subsWithLoss} subscribers) dup ${row.dup} (${row.subsWithDup}) ooo ${row.ooo}; load ${loadBefore.toFixed(2)} → ${row.loadAfter.toFixed(2)}`,
    );
  } catch (err) {
    row.error = err.message;
    results.errors.push(`${name}: ${err.message}`);
    log(`${name}: FAILED ${err.message}`);
  } finally {
    await publishing?.catch(() => undefined);
    await publisher?.close();
    if (server !== undefined) {
      await closeSubscribers().catch(() => undefined);
      await stopServer(server);
      if (/error/i.test(server.stderr())) row.gatewayStderr = server.stderr().slice(-1500);
    }
    await cleanupQueues();
  }
  return row;
}

/** The logged-identified group (named only): at each --logged-fanout count, anonymous fan-out then identified on a logged channel; then the storm. */
async function loggedIdentifiedGroup() {
  const group = { exchange: LOGGED_EXCHANGE, rows: [], storm: undefined, loadBefore: loadavg()[0] };
  results.loggedIdentified = group;
  const before = listQueueNames();
  group.queuesAtStart = before?.length;
  for (const [k, S] of cfg.loggedFanout.entries()) {
    const m = nth(cfg.loggedMessages, k);
    const anon = await loggedFanOut({ identified: false, S, m });
    const id = await loggedFanOut({ identified: true, S, m });
    group.rows.push({ S, m, anon, id });
  }
  if (cfg.stormSubscribers > 0) group.storm = await stormScenario();
  group.loadAfter = loadavg()[0];
  await cleanupQueues();
  const after = listQueueNames();
  group.queuesAtEnd = after?.length;
  group.leftover = after?.filter((n) => n.includes(RUN)).length;
}

/**
 * The publish group: messages/s confirmed by RabbitMQ, through the HTTP
 * endpoint (one message a request: serial, pipelined, over 8 connections;
 * batches) and through the producer SDK (AMQP, HTTP), against one gateway,
 * to one channel a consumer queue is bound to (so every message is routed
 * and written, as a real one would be). Clients interleave, round after round.
 */
async function publishScenario() {
  const server = await startWarren();
  const beam = beamPid();
  const channel = `/bench-${RUN}-publish`;
  const rows = [];
  try {
    for (let k = 0; k < 600 && (await fetch(`${server.url}/_warren/ready`)).status !== 200; k++) await sleep(100);
    const res = await fetch(`${server.url}${channel}?timeout=0`, { headers: { 'consumer-id': `bench-${RUN}-publish` } });
    if (res.status !== 204 && res.status !== 200) throw new Error(`the consumer queue was not made: ${res.status}`);
    const m = cfg.publishMessages;
    const B = cfg.publishBatch;
    const base = { url: server.url, token: TOKEN, channel, size: cfg.size };
    const clients = [
      {
        name: 'AMQP, producer SDK',
        how: '64 publishes unconfirmed',
        run: () => sdk({ ...base, url: AMQP, token: undefined, m, window: 64 }),
      },
      {
        name: 'HTTP, producer SDK',
        how: '64 publishes in flight (its pool: 8 connections, 8 pipelined on each)',
        run: () => sdk({ ...base, m, window: 64 }),
      },
      {
        name: 'HTTP, 1 connection, one at a time',
        how: '1 request in flight',
        run: () => httpSingle({ ...base, m: Math.ceil(m / 10), connections: 1, pipelining: 1 }),
      },
      {
        name: 'HTTP, 1 connection, pipelined',
        how: '16 requests pipelined (undici)',
        run: () => httpSingle({ ...base, m, connections: 1, pipelining: 16 }),
      },
      {
        name: 'HTTP, 1 connection, pipelined deeper',
        how: '64 requests pipelined (undici)',
        run: () => httpSingle({ ...base, m, connections: 1, pipelining: 64 }),
      },
      {
        name: 'HTTP, 1 connection, pipelined, raw client',
        how: '64 requests pipelined, by a minimal client',
        run: () => rawPipelined({ ...base, m, window: 64 }),
      },
      {
        name: `HTTP, 1 connection, batches of ${B}`,
        how: '4 batches pipelined',
        run: () => httpBatch({ ...base, m, batch: B, connections: 1, pipelining: 4 }),
      },
      {
        name: 'HTTP, 8 connections',
        how: '8 requests pipelined on each',
        run: () => httpSingle({ ...base, m, connections: 8, pipelining: 8 }),
      },
      {
        name: `HTTP, 8 connections, batches of ${B}`,
        how: '2 batches pipelined on each',
        run: () => httpBatch({ ...base, m, batch: B, connections: 8, pipelining: 2 }),
      },
    ];
    for (let round = 1; round <= cfg.publishRounds; round++) {
      for (const client of clients) {
        await quiet(beam);
        const loadBefore = loadavg()[0];
        const cpu = cpuMeter([server.pid, beam]);
        let r;
        try {
          r = await client.run();
        } catch (err) {
          r = { error: err.message };
        }
        const [gateway, rabbit] = cpu();
        const row = {
          client: client.name,
          how: client.how,
          round,
          ...r,
          cpu: { gateway: gateway.cores, rabbit: rabbit.cores, other: gateway.other },
          loadBefore,
          loadAfter: loadavg()[0],
        };
        rows.push(row);
        if (r.error !== undefined) results.errors.push(`publish ${client.name}: ${r.error}`);
        log(
          `publish ${client.name} (round ${round}): ${r.error ?? `${Math.round(r.perSec)} msg/s, ${r.m} in ${r.seconds.toFixed(1)} s, ${r.failed} failed`}`,
        );
      }
    }
  } finally {
    await stopServer(server);
    await cleanupQueues();
  }
  return rows;
}

// ---------------------------------------------------------------- main

async function killAll() {
  for (const c of children) await c.stop().catch(() => undefined);
  for (const w of workers) w.kill();
}

let watchdogFired = false;
const watchdog = setTimeout(async () => {
  watchdogFired = true;
  log(`watchdog: the run took longer than ${WATCHDOG_MS / 1000} s; stopping`);
  await killAll();
  await cleanupQueues();
  process.exit(3);
}, WATCHDOG_MS);
watchdog.unref();
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, async () => {
    log(`${sig}: stopping and cleaning up`);
    await killAll();
    await cleanupQueues();
    process.exit(130);
  });
}

async function main() {
  await mgmt.enable();
  const overview = await mgmt.get('/api/overview');
  const limit = fileLimit();
  const env = {
    ...machine(),
    rabbitmq: overview.rabbitmq_version,
    erlang: overview.erlang_version,
    fileLimit: limit,
    otherConnectionsAtStart: overview.object_totals.connections,
    otherQueuesAtStart: overview.object_totals.queues,
    tcpTwReuse: readFileSync('/proc/sys/net/ipv4/tcp_tw_reuse', 'utf8').trim(),
    rabbitMemStartMiB: (await mgmt.node()).memUsedMiB,
  };
  // Each worker and the server must hold their share of the idle connections (and of the connections group's).
  const most = Math.max(cfg.idleConnections, groups.has('connections') ? cfg.connections : 0);
  const perWorker = Math.ceil(most / cfg.workers);
  if (Number.isFinite(limit) && perWorker + 200 > limit) cfg.workers = Math.ceil(most / (limit - 200));
  if (Number.isFinite(limit) && cfg.idleConnections + 500 > limit) {
    log(`open-file limit ${limit}: idle connections capped at ${limit - 500}`);
    cfg.idleConnections = limit - 500;
  }
  log(
    `run ${RUN}: ${env.cores} cores, ${env.cpuModel}, Node ${env.node}, RabbitMQ ${env.rabbitmq}; ${quick ? 'quick' : 'full'} run; groups ${[...groups].join(', ')}`,
  );
  for (let k = 0; k < cfg.workers; k++) workers.push(forkHelper(new URL('./lib/worker.mjs', import.meta.url).pathname, `worker ${k}`));
  mkdirSync(PROFILE_DIR, { recursive: true });
  await cleanupQueues();

  if (groups.has('throughput')) {
    for (const [k, S] of cfg.fanout.entries()) {
      const latency = S === cfg.latencySubscribers;
      const m = nth(cfg.messages, k);
      const mi = nth(cfg.messagesIdentified, k);
      for (const spec of [
        { system: 'warren', transport: 'sse', identified: false, m },
        { system: 'node', transport: 'sse', identified: false, m },
        { system: 'warren', transport: 'ws', identified: false, m },
        { system: 'node', transport: 'ws', identified: false, m },
        { system: 'warren', transport: 'sse', identified: true, m: mi },
        { system: 'rabbit', transport: 'amqp', identified: true, m: mi },
        ...(cfg.persistent && cfg.transientFanout.includes(S)
          ? [
              { system: 'warren', transport: 'sse', identified: true, m: mi, persistent: false },
              { system: 'rabbit', transport: 'amqp', identified: true, m: mi, persistent: false },
            ]
          : []),
      ]) {
        if (flags.match !== undefined && !new RegExp(flags.match).test(scenarioName({ ...spec, S }))) continue;
        results.fanout.push(await fanOutScenario({ ...spec, S, latency: latency && spec.transport !== 'ws' }));
      }
    }
  }
  if (groups.has('idle')) {
    for (const [system, transport] of [
      ['warren', 'sse'],
      ['node', 'sse'],
      ['warren', 'ws'],
      ['node', 'ws'],
    ]) {
      results.idle.push(await idleScenario({ system, transport, n: cfg.idleConnections }));
    }
  }
  if (groups.has('connections')) {
    for (const [system, transport] of [
      ['warren', 'sse'],
      ['node', 'sse'],
      ['warren', 'ws'],
      ['node', 'ws'],
    ]) {
      results.connections.push(await connectionsScenario({ system, transport, n: cfg.connections }));
    }
  }
  for (const group of Object.keys(AB_GROUPS)) if (groups.has(group)) await abGroup(group);
  if (groups.has('logged-identified')) await loggedIdentifiedGroup();
  if (groups.has('churn')) results.churn = await churnScenario();
  if (groups.has('longpoll')) results.longPoll = await longPollScenario();
  if (groups.has('publish')) results.publish = await publishScenario();
  if (groups.has('profile')) {
    rmSync(PROFILE_DIR, { recursive: true, force: true });
    mkdirSync(PROFILE_DIR, { recursive: true });
    const S = cfg.latencySubscribers;
    for (const spec of [
      { system: 'warren', transport: 'sse', identified: false, m: nth(cfg.messages, 0) * 2 },
      // Transient messages: with persistent ones RabbitMQ's disk is the bottleneck and the gateway mostly waits.
      { system: 'warren', transport: 'sse', identified: true, m: nth(cfg.messagesIdentified, 0), persistent: false },
    ]) {
      const row = await fanOutScenario({ ...spec, S, latency: false, profile: true });
      const file = readdirSync(PROFILE_DIR).find((f) => f.startsWith(row.name));
      if (file === undefined || row.profileWindow === undefined) {
        results.profiles.push({ row, error: row.error ?? 'no profile written' });
        continue;
      }
      const profile = JSON.parse(readFileSync(`${PROFILE_DIR}/${file}`, 'utf8'));
      const summary = summarizeProfile(profile, row.profileWindow);
      results.profiles.push({
        row,
        file: `bench/profiles/${file}`,
        window: row.profileWindow,
        summary: { ...summary, functions: summary.functions.slice(0, 40) },
        markdown: profileMarkdown(summary, 15),
      });
      log(
        `${row.name}: profile ${file}, ${(summary.busyMs / 1000).toFixed(1)} s busy in the window; top: ${summary.functions
          .filter((f) => f.area !== 'idle')
          .slice(0, 3)
          .map((f) => f.name)
          .join(', ')}`,
      );
    }
  }

  for (const w of workers) await w.call('exit', {}, 5000).catch(() => undefined);
  for (const w of workers) w.kill();
  const leftover = await mgmt.queueNames(RUN).catch(() => []);
  env.rabbitMemEndMiB = await mgmt.node().then(
    (n) => n.memUsedMiB,
    () => NaN,
  );
  const elapsedS = (performance.now() - t0) / 1000;
  const correct = writeResults(outPath, {
    env,
    cfg,
    command,
    started,
    elapsedS,
    quick,
    run: RUN,
    results,
    leftoverQueues: leftover.length,
  });
  log(`done in ${elapsedS.toFixed(0)} s; results in ${outPath}${leftover.length > 0 ? `; ${leftover.length} queues left over!` : ''}`);
  // A smoke test: errors, lost / duplicated / reordered messages or refused connections fail the run.
  if (!correct) log('FAILED: errors, inexact delivery or refused connections (see the results)');
  return correct ? 0 : 1;
}

main()
  .then((code) => {
    clearTimeout(watchdog);
    process.exit(code);
  })
  .catch(async (err) => {
    if (watchdogFired) return;
    log(`failed: ${err.stack}`);
    await killAll();
    await cleanupQueues();
    process.exit(1);
  });
