// What an idle connection costs the JavaScript heap, by constructor, in the
// gateway and in the Node ceiling side by side: takes a heap snapshot of a
// `warren serve` process (embedded broker) and of bench/lib/node-ceiling.mjs
// before and after N idle anonymous connections, and prints the difference
// per connection. This is the profile behind the memory figures of
// `npm run bench` (which measure resident memory, heap and native together).
//
//   npm run build && node bench/heap-per-connection.mjs [sse|ws] [N]     (default sse 2000)
//
// Loopback only; the clients live in this process, each server in its own.
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';

const kind = process.argv[2] ?? 'sse';
const n = Number(process.argv[3] ?? 2000);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let server;
let port;
let dir;

async function startServer(target) {
  dir = mkdtempSync(join(tmpdir(), 'warren-heap-'));
  const args =
    target === 'warren'
      ? [
          join(process.cwd(), 'packages/cli/bin/warren.js'),
          'serve',
          '--port',
          '0',
          '--host',
          '127.0.0.1',
          '--log-level',
          'warn',
          '--max-connections-per-ip',
          '1000000',
        ]
      : [join(process.cwd(), 'bench/lib/node-ceiling.mjs')];
  server = spawn(process.execPath, ['--heapsnapshot-signal=SIGUSR2', ...args], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'inherit'],
    env: Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('WARREN_'))),
  });
  let out = '';
  server.stdout.on('data', (c) => (out += c));
  const ready = target === 'warren' ? /on (http:\S+)/ : /listening (\d+)/;
  for (let i = 0; i < 100 && !ready.test(out); i++) await sleep(100);
  const m = ready.exec(out);
  if (m === null) throw new Error(`${target} did not start: ${out}`);
  port = target === 'warren' ? Number(new URL(m[1]).port) : Number(m[1]);
}

async function snapshot() {
  const before = new Set(readdirSync(dir));
  server.kill('SIGUSR2');
  for (let i = 0; i < 600; i++) {
    await sleep(100);
    const file = readdirSync(dir).find((f) => f.endsWith('.heapsnapshot') && !before.has(f));
    if (file !== undefined) {
      // Written in pieces: parse once the size has stopped changing and the JSON is whole.
      let size = -1;
      for (let tries = 0; tries < 600; tries++) {
        await sleep(300);
        const text = readFileSync(join(dir, file), 'utf8');
        if (text.length > 0 && text.length === size) {
          try {
            return summarize(JSON.parse(text));
          } catch {
            // not finished yet
          }
        }
        size = text.length;
      }
      throw new Error('heap snapshot never finished');
    }
  }
  throw new Error('no heap snapshot');
}

/** Self size and count per "type:name" of the snapshot's nodes. */
function summarize(snap) {
  const fields = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const width = fields.length;
  const [t, nm, sz] = ['type', 'name', 'self_size'].map((f) => fields.indexOf(f));
  const by = new Map();
  for (let i = 0; i < snap.nodes.length; i += width) {
    const type = types[snap.nodes[i + t]];
    let name = snap.strings[snap.nodes[i + nm]];
    if (type === 'string' || type === 'concatenated string' || type === 'sliced string') name = '(strings)';
    else if (type === 'code' || type === 'hidden') name = `(${type})`;
    const key = `${type}:${name.slice(0, 60)}`;
    const e = by.get(key) ?? { size: 0, count: 0 };
    e.size += snap.nodes[i + sz];
    e.count++;
    by.set(key, e);
  }
  return by;
}

function openSse() {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/heap', headers: { accept: 'text/event-stream' }, agent: false }, (res) => {
      res.once('data', () => resolve(req));
    });
    req.on('error', reject);
    req.end();
  });
}

function openWs() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/heap`);
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

/** Heap bytes per connection by "type:constructor" for one server. */
async function measure(target) {
  await startServer(target);
  // One connection first, so the channel's fan-out and lazily loaded code are in both snapshots.
  const held = [kind === 'ws' ? await openWs() : await openSse()];
  await sleep(500);
  const a = await snapshot();
  for (let i = 1; i < n; i += 100)
    held.push(...(await Promise.all(Array.from({ length: Math.min(100, n - i) }, () => (kind === 'ws' ? openWs() : openSse())))));
  await sleep(1000);
  const b = await snapshot();
  const per = new Map();
  for (const [key, e] of b) {
    const before = a.get(key) ?? { size: 0, count: 0 };
    per.set(key, { size: (e.size - before.size) / (n - 1), count: (e.count - before.count) / (n - 1) });
  }
  for (const [key, e] of a) if (!b.has(key)) per.set(key, { size: -e.size / (n - 1), count: -e.count / (n - 1) });
  for (const c of held) {
    if (kind === 'ws') c.terminate();
    else c.destroy();
  }
  server.kill('SIGTERM');
  await sleep(500);
  rmSync(dir, { recursive: true, force: true });
  return per;
}

const total = (per) => [...per.values()].reduce((sum, e) => sum + e.size, 0);
const warren = await measure('warren');
const ceiling = await measure('ceiling');
console.log(
  `${kind}, ${n - 1} idle connections added: JS heap per connection (self sizes of live objects) Warren ${total(warren).toFixed(0)} B, Node ceiling ${total(ceiling).toFixed(0)} B`,
);
console.log(
  '\n| Warren B/conn | objects | Node ceiling B/conn | objects | Warren − ceiling | type:constructor |\n|---:|---:|---:|---:|---:|---|',
);
const keys = [...new Set([...warren.keys(), ...ceiling.keys()])];
const zero = { size: 0, count: 0 };
const rows = keys.map((key) => ({ key, w: warren.get(key) ?? zero, c: ceiling.get(key) ?? zero }));
rows.sort((x, y) => Math.abs(y.w.size - y.c.size) - Math.abs(x.w.size - x.c.size));
for (const r of rows.slice(0, 30)) {
  if (Math.abs(r.w.size - r.c.size) < 8) break;
  console.log(
    `| ${r.w.size.toFixed(0)} | ${r.w.count.toFixed(2)} | ${r.c.size.toFixed(0)} | ${r.c.count.toFixed(2)} | ${(r.w.size - r.c.size).toFixed(0)} | ${r.key.replace(/\|/g, '\\|')} |`,
  );
}
process.exit(0);
