// Measures what N listeners on one channel cost RabbitMQ and the gateway, in
// the two designs: one queue per connection (each listener with its own
// consumer id) and Warren's per-process fan-out (anonymous listeners).
//
//   npm run build && node bench/anonymous-listeners.mjs [N ...]     (default: 1000 5000)
//
// Needs RabbitMQ on 127.0.0.1:5672 with the management plugin (enabled here).
// Loopback only; every phase is bounded; writes bench/anonymous-listeners.md.
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { cpus, totalmem } from 'node:os';

const AMQP = process.env.WARREN_TEST_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const TOKEN = 'bench-token-0123456789abcdef';
const counts = process.argv
  .slice(2)
  .map(Number)
  .filter((n) => n > 0);
if (counts.length === 0) counts.push(1000, 5000);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

execFileSync('rabbitmq-plugins', ['enable', 'rabbitmq_management'], { stdio: 'ignore' });
const mgmt = async (path) => {
  for (let i = 0; i < 60; i++) {
    try {
      const res = await fetch(`http://127.0.0.1:15672${path}`, {
        headers: { authorization: `Basic ${Buffer.from('guest:guest').toString('base64')}` },
      });
      if (res.ok) return res.json();
    } catch {}
    await sleep(500);
  }
  throw new Error(`management API ${path} unreachable`);
};
const beamPid = Number(execFileSync('pgrep', ['-o', '-f', 'beam.smp']).toString().trim());
const cpuSeconds = (pid) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // utime + stime, clock ticks of 1/100 s
};
const rssMiB = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;
const rabbitMemMiB = async () => {
  const nodes = await mgmt('/api/nodes');
  return nodes[0].mem_used / 2 ** 20;
};

async function startGateway() {
  const child = spawn(
    process.execPath,
    ['packages/cli/bin/warren.js', 'serve', '--port', '0', '--host', '127.0.0.1', '--log-level', 'warn', '--queue-expires', '10s'],
    {
      env: { ...process.env, WARREN_AMQP_URL: AMQP, WARREN_PUBLISH_TOKEN: TOKEN },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  let out = '';
  child.stdout.on('data', (c) => (out += c));
  for (let i = 0; i < 100 && !/on (http:\S+)/.test(out); i++) await sleep(100);
  const url = /on (http:\S+)/.exec(out)[1].replace('localhost', '127.0.0.1');
  return { child, url, port: Number(new URL(url).port) };
}

const stats = async (url) => (await fetch(`${url}/_warren/stats`, { headers: { authorization: `Bearer ${TOKEN}` } })).json();

function openSse(port, path, onEvent) {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers: { accept: 'text/event-stream' }, agent: false }, (res) => {
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        for (const m of chunk.matchAll(/^data: (.*)$/gm)) onEvent(m[1]);
      });
      resolve(req);
    });
    req.on('error', reject);
    req.end();
  });
}

/** Waits until the earlier runs' queues are gone and RabbitMQ's memory holds still (its stats refresh every 5 s). */
async function settle(queueBaseline) {
  for (let i = 0; i < 40; i++) {
    const queues = (await mgmt('/api/overview')).object_totals.queues;
    const a = await rabbitMemMiB();
    await sleep(5500);
    const b = await rabbitMemMiB();
    if (queues <= queueBaseline && Math.abs(b - a) < 2) return;
  }
}

const queueBaseline = (await mgmt('/api/overview')).object_totals.queues;

async function run(design, n) {
  await settle(queueBaseline);
  const gw = await startGateway();
  const channel = `/bench-${design}-${n}-${Date.now()}`;
  await sleep(500);
  const rabbitBefore = await rabbitMemMiB();
  const queuesBefore = (await mgmt('/api/overview')).object_totals.queues;
  const gwRssBefore = rssMiB(gw.child.pid);
  const cpu0 = cpuSeconds(beamPid);
  let received = 0;
  const sockets = [];
  const started = performance.now();
  // 100 connection attempts in flight at a time, as a crowd of browsers arriving.
  for (let i = 0; i < n; i += 100) {
    const batch = [];
    for (let j = i; j < Math.min(n, i + 100); j++) {
      const path = design === 'per-connection' ? `${channel}?consumer_id=b${j}x${Date.now().toString(36)}` : channel;
      batch.push(openSse(gw.port, path, () => received++));
    }
    sockets.push(...(await Promise.all(batch)));
  }
  const connectMs = performance.now() - started;
  const cpuConnect = cpuSeconds(beamPid) - cpu0;
  await sleep(6000); // management stats refresh every 5 s
  const rabbitAfter = await rabbitMemMiB();
  // What the run's own queues hold (RabbitMQ's per-queue \`memory\`), unlike the node total not blurred by the rest.
  const own = [];
  for (let page = 1; ; page++) {
    const res = await mgmt(`/api/queues?columns=name,memory&page_size=500&page=${page}&name=${encodeURIComponent(channel)}`);
    own.push(...(res.items ?? []));
    if (page >= (res.page_count ?? 1)) break;
  }
  const queueMemMiB = own.reduce((sum, q) => sum + (q.memory ?? 0), 0) / 2 ** 20;
  const queuesAfter = (await mgmt('/api/overview')).object_totals.queues;
  const gwRssAfter = rssMiB(gw.child.pid);
  // One message to everyone, timed.
  const t = performance.now();
  await fetch(`${gw.url}/_warren/publish?channel=${channel}`, {
    method: 'POST',
    body: 'ping',
    headers: { authorization: `Bearer ${TOKEN}` },
  });
  while (received < n && performance.now() - t < 30_000) await sleep(5);
  const fanOutMs = performance.now() - t;
  const s = await stats(gw.url);
  for (const req of sockets) req.destroy();
  gw.child.kill('SIGTERM');
  await new Promise((r) => gw.child.once('close', r));
  return {
    design,
    n,
    connectsPerSecond: Math.round(n / (connectMs / 1000)),
    connectMs: Math.round(connectMs),
    rabbitCpuSeconds: cpuConnect.toFixed(2),
    rabbitMemDeltaMiB: (rabbitAfter - rabbitBefore).toFixed(1),
    queueMemMiB: queueMemMiB.toFixed(2),
    queuesMatched: own.length,
    queuesAdded: queuesAfter - queuesBefore,
    declares: s.broker.queueDeclares,
    consumers: s.broker.consumersStarted,
    gatewayRssDeltaMiB: (gwRssAfter - gwRssBefore).toFixed(1),
    gatewayKiBPerConnection: (((gwRssAfter - gwRssBefore) * 1024) / n).toFixed(1),
    delivered: received,
    oneMessageToAllMs: Math.round(fanOutMs),
  };
}

const rows = [];
for (const n of counts) {
  for (const design of ['per-connection', 'fan-out']) {
    const row = await run(design, n);
    console.log(JSON.stringify(row));
    rows.push(row);
  }
}
const rabbitVersion = (await mgmt('/api/overview')).rabbitmq_version;
const table = [
  '| Listeners | Design | Connects/s | RabbitMQ CPU while connecting | Memory of the queues | RabbitMQ node memory change | Queues added | Declares | Consumers | Gateway RSS per connection | One message to all |',
  '|---|---|---|---|---|---|---|---|---|---|---|',
  ...rows.map(
    (r) =>
      `| ${r.n} | ${r.design} | ${r.connectsPerSecond} | ${r.rabbitCpuSeconds} s | ${r.queueMemMiB} MiB (${r.queuesMatched} queues) | ${r.rabbitMemDeltaMiB} MiB | ${r.queuesAdded} | ${r.declares} | ${r.consumers} | ${r.gatewayKiBPerConnection} KiB | ${r.oneMessageToAllMs} ms (${r.delivered} delivered) |`,
  ),
].join('\n');
const md = `# Anonymous listeners: one queue per connection vs per-process fan-out

Run: \`node bench/anonymous-listeners.mjs ${counts.join(' ')}\` on ${new Date().toISOString().slice(0, 10)}; ${cpus().length} cores (${cpus()[0].model}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, RabbitMQ ${rabbitVersion}, all on loopback. The gateway is one \`warren serve\` process on RabbitMQ; the listeners are SSE connections from one other process, opened 100 at a time. Each run starts once the earlier runs' queues have expired and RabbitMQ's memory figure holds still. "Memory of the queues" sums RabbitMQ's per-queue memory over the run's queues 6 s after the last connection (its statistics refresh every 5 s); the node's mem_used change is shown too but moves with everything else in the node. "per-connection" gives each listener its own consumer id, so its own queue (what a gateway without fan-out would do for anonymous listeners); "fan-out" is Warren's anonymous stream.

${table}
`;
writeFileSync('bench/anonymous-listeners.md', md);
console.log(md);
