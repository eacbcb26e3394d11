// Sums the self time of a V8 CPU profile (`node --cpu-prof`) per function and
// per area (gateway code, ws, amqplib, Node internals, GC…), optionally only
// over a time window, and prints the top entries as Markdown tables.
//
//   node bench/profile-summary.mjs <file.cpuprofile> [--top 20] [--from <µs> --to <µs>]
//
// --from/--to are in the profile's own clock (microseconds of the monotonic
// clock, the same as process.hrtime.bigint() / 1000n in any process on the
// machine), so a harness can cut out the phase it measured.
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Where a function lives, for the per-area totals. */
export function areaOf(functionName, url) {
  if (url === '') {
    if (functionName === '(garbage collector)') return 'GC';
    if (functionName === '(idle)') return 'idle';
    if (functionName === '(program)') return 'V8/native (program)';
    return 'native';
  }
  if (url.startsWith('node:')) return 'Node internals';
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (m !== null) return m[1];
  const p = /packages\/([^/]+)\//.exec(url);
  if (p !== null) return `@warren/${p[1]}`;
  return 'other';
}

function shortUrl(url) {
  if (url === '') return '';
  if (url.startsWith('file://')) {
    const rel = relative(ROOT, fileURLToPath(url));
    return rel.replace(/^node_modules\//, '');
  }
  return url;
}

/**
 * Self time per function and per area, in ms, over [fromUs, toUs].
 * @returns {{ totalMs, busyMs, functions: {name, url, area, ms}[], areas: {area, ms}[] }}
 */
export function summarize(profile, { fromUs = -Infinity, toUs = Infinity } = {}) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  let t = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i];
    // A sample stands for the time until the next one.
    const dt = i + 1 < profile.timeDeltas.length ? profile.timeDeltas[i + 1] : 0;
    if (t < fromUs || t > toUs) continue;
    self.set(profile.samples[i], (self.get(profile.samples[i]) ?? 0) + dt);
  }
  const functions = new Map();
  const areas = new Map();
  let totalUs = 0;
  let idleUs = 0;
  for (const [id, us] of self) {
    const { functionName, url, lineNumber } = byId.get(id).callFrame;
    const name = functionName === '' ? '(anonymous)' : functionName;
    const area = areaOf(functionName, url);
    const key = `${name}\u0000${url}\u0000${lineNumber}`;
    const entry = functions.get(key) ?? { name, url: url === '' ? '' : `${shortUrl(url)}:${lineNumber + 1}`, area, ms: 0 };
    entry.ms += us / 1000;
    functions.set(key, entry);
    areas.set(area, (areas.get(area) ?? 0) + us / 1000);
    totalUs += us;
    if (area === 'idle') idleUs += us;
  }
  const sorted = (xs) => [...xs].sort((a, b) => b.ms - a.ms);
  return {
    totalMs: totalUs / 1000,
    busyMs: (totalUs - idleUs) / 1000,
    functions: sorted(functions.values()),
    areas: sorted([...areas].map(([area, ms]) => ({ area, ms }))),
  };
}

/** Markdown tables of the top `top` functions and every area, as a share of busy (non-idle) time. */
export function markdown(summary, top = 20) {
  const pct = (ms) => `${((100 * ms) / summary.busyMs).toFixed(1)}%`;
  const lines = [
    `Window: ${(summary.totalMs / 1000).toFixed(2)} s sampled, ${(summary.busyMs / 1000).toFixed(2)} s busy (not idle). Shares are of busy time.`,
    '',
    '| Self time | Share | Function | Where | Area |',
    '|---:|---:|---|---|---|',
    ...summary.functions
      .filter((f) => f.area !== 'idle')
      .slice(0, top)
      .map((f) => `| ${f.ms.toFixed(0)} ms | ${pct(f.ms)} | \`${f.name}\` | ${f.url === '' ? '—' : `\`${f.url}\``} | ${f.area} |`),
    '',
    '| Area | Self time | Share |',
    '|---|---:|---:|',
    ...summary.areas.filter((a) => a.area !== 'idle').map((a) => `| ${a.area} | ${a.ms.toFixed(0)} ms | ${pct(a.ms)} |`),
  ];
  return lines.join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { top: { type: 'string', default: '20' }, from: { type: 'string' }, to: { type: 'string' } },
  });
  if (positionals.length !== 1) {
    process.stderr.write('usage: node bench/profile-summary.mjs <file.cpuprofile> [--top 20] [--from µs --to µs]\n');
    process.exit(2);
  }
  const profile = JSON.parse(readFileSync(positionals[0], 'utf8'));
  const summary = summarize(profile, {
    fromUs: values.from === undefined ? -Infinity : Number(values.from),
    toUs: values.to === undefined ? Infinity : Number(values.to),
  });
  process.stdout.write(`${markdown(summary, Number(values.top))}\n`);
}
