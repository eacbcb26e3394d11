// Writes the run's figures as Markdown (and the raw numbers as JSON beside it).
import { writeFileSync } from 'node:fs';

const f0 = (x) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '—');
const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : '—');
const f2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : '—');
const pct = (cores) => (Number.isFinite(cores) ? `${Math.round(cores * 100)}%` : '—');
const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? `${(a / b).toFixed(2)}×` : '—');
const pass = (ok) => (ok ? '**pass**' : '**FAIL**');
/** Rate targets are not judged on a quick run's tiny numbers; correctness checks are. */
let judgeRates = true;
const passRate = (ok) => (judgeRates ? pass(ok) : '— (quick run: not judged)');
const exact = (r) => (r === undefined ? '—' : `${f0(r.lost)} / ${f0(r.dup)} / ${f0(r.ooo)}${r.drops > 0 ? ` (${r.drops} dropped)` : ''}`);
const isExact = (r) => r !== undefined && r.lost === 0 && r.dup === 0 && r.ooo === 0 && (r.drops ?? 0) === 0;
const title = (row) =>
  (row.system === 'warren'
    ? `Warren ${row.identified ? 'identified' : 'anonymous'} ${row.transport.toUpperCase()}`
    : row.system === 'node'
      ? `Node ceiling ${row.transport.toUpperCase()}`
      : 'RabbitMQ ceiling (amqplib)') + (row.identified && !row.persistent ? ', transient messages' : '');

/** The storm reconnects dropped streams (as EventSource would): drops are shown, not failed; what counts is each message once, in order. */
const stormExact = (r) => r.lost === 0 && r.dup === 0 && r.ooo === 0 && r.unique === r.expected;
/** Whether a latency phase delivered what was offered: deliveries/s over the phase against rate × subscribers. */
function keptUp(row) {
  const l = row.latency;
  // The phase lasts m / rate seconds plus one delivery time; allow 10% for the tail.
  const offered = (l.m * l.subs) / (l.m / l.rate);
  const got = l.unique / l.spanS;
  return got >= 0.9 * offered ? 'yes' : `**no**: ${f0(got)}/s of ${f0(offered)}/s`;
}

function find(rows, q) {
  return rows.find((r) => Object.entries(q).every(([k, v]) => r[k] === v));
}

export function writeResults(path, { env, cfg, command, started, elapsedS, quick, run, results, leftoverQueues }) {
  const out = [];
  const fan = results.fanout;
  judgeRates = !quick;
  out.push(`# Warren benchmark results${quick ? ' (quick run: smoke-test numbers, not figures)' : ''}`);
  out.push('');
  out.push(`- Date: ${started.toISOString().replace('T', ' ').slice(0, 16)} UTC; run \`${run}\`; took ${Math.round(elapsedS)} s`);
  out.push(`- Command: \`${command}\``);
  out.push(
    `- Machine: ${env.cores} cores (${env.cpuModel}), ${env.ramGiB.toFixed(0)} GiB RAM, ${env.os}, Linux ${env.kernel}; open-file limit ${env.fileLimit}; tcp_tw_reuse ${env.tcpTwReuse}`,
  );
  out.push(
    `- Software: Node ${env.node}, RabbitMQ ${env.rabbitmq} (Erlang ${env.erlang}) on 127.0.0.1:5672; everything on loopback, on the same 2 cores`,
  );
  out.push(
    `- RabbitMQ at start: ${env.otherConnectionsAtStart} connections and ${env.otherQueuesAtStart} queues of others; its memory (mem_used) ${f0(env.rabbitMemStartMiB)} MiB at the start, ${f0(env.rabbitMemEndMiB)} MiB at the end`,
  );
  out.push(
    `- Settings: ${cfg.workers} subscriber worker processes, ${cfg.openConcurrency} connection attempts in flight, ${cfg.size}-byte JSON bodies; ${cfg.persistent ? 'persistent' : 'transient'} messages; throughput phases of ${cfg.messages.join(' / ')} messages (anonymous, Node ceiling) and ${cfg.messagesIdentified.join(' / ')} (identified, RabbitMQ ceiling) at ${cfg.fanout.join(' / ')} subscribers; latency phases ${cfg.latencyRate} msg/s for ${cfg.latencySeconds} s`,
  );
  out.push('');
  out.push(
    `How it measures: see [README.md](README.md) in this folder. Ratios are Warren ÷ ceiling: for throughput higher is better (1.00× = as fast as the ceiling), for latency and memory lower is better. Scenarios that are quick to run are repeated (${cfg.repeats ?? 1} throughput phases for anonymous and Node-ceiling scenarios, ${cfg.latencyRepeats ?? 1} latency phases) and the phase with the median figure is reported, all of them beside it: on a shared 2-core machine one phase varies by ±20%.`,
  );
  out.push('');

  // ---- targets
  const churn = results.churn;
  const lp = results.longPoll;
  const idleW = results.idle.filter((r) => r.system === 'warren');
  const warrenRows = fan.filter((r) => r.system === 'warren');
  const targets = [];
  if (churn !== undefined && churn.error === undefined) {
    targets.push([
      `Identified SSE reconnects (known consumer ids, ${churn.seconds} s, ${churn.concurrency} loops at once)`,
      `${f0(churn.consumersStartedPerSec)} streams/s started by the gateway (clients saw ${f0(churn.opensPerSec)} stream heads/s)`,
      '≥ 500/s',
      churn.failures === 0 ? passRate(churn.consumersStartedPerSec >= 500) : pass(false),
    ]);
  }
  if (lp !== undefined && lp.error === undefined) {
    targets.push([
      `Long-poll cycles, ${lp.n} identified consumers with messages waiting`,
      `${f0(lp.cyclesPerSec)} cycles/s`,
      '≥ 2,000/s',
      isExact(lp) ? passRate(lp.cyclesPerSec >= 2000) : pass(false),
    ]);
  }
  for (const r of idleW) {
    if (r.error !== undefined) continue;
    const ok = r.open.failed === 0 && isExact(r.delivery) && r.delivery.unique === r.delivery.expected;
    targets.push([
      `${f0(r.n)} concurrent anonymous ${r.transport.toUpperCase()} connections: none refused or dropped, every message delivered`,
      `${f0(r.open.failed)} refused, ${f0(r.delivery.drops)} dropped, ${f0(r.delivery.unique)}/${f0(r.open.opened * r.delivery.m)} delivered`,
      'all',
      pass(ok),
    ]);
    targets.push([
      `No RabbitMQ queue per anonymous ${r.transport.toUpperCase()} connection (${f0(r.n)} connections)`,
      `${r.queuesForChannel} queue(s), ${r.declares} declare(s), ${r.consumers} consumer(s)`,
      '1 per gateway and channel',
      pass(r.queuesForChannel === 1),
    ]);
  }
  // The ratio targets of issue 6, each judged within this run.
  const ratioTarget = (label, w, c, value, limit, higherIsBetter) => {
    if (w === undefined || c === undefined || w.error !== undefined || c.error !== undefined) return;
    const [a, b] = value(w, c);
    if (!Number.isFinite(a) || !Number.isFinite(b) || b === 0) return;
    const r = a / b;
    const fmt = (x) => (Math.abs(x) >= 100 ? f0(x) : f1(x));
    targets.push([
      label,
      `${ratio(a, b)} (${fmt(a)} ÷ ${fmt(b)})`,
      `${higherIsBetter ? '≥' : '≤'} ${limit.toFixed(1)}×`,
      passRate(higherIsBetter ? r >= limit : r <= limit),
    ]);
  };
  const plain = fan.filter((r) => !r.profiled);
  for (const S of [...new Set(plain.map((r) => r.S))]) {
    const rows = plain.filter((r) => r.S === S);
    const rate = (w, c) => [w.throughput?.deliveriesPerSec, c.throughput?.deliveriesPerSec];
    ratioTarget(
      `Anonymous SSE fan-out ÷ Node ceiling, ${f0(S)} subscribers (deliveries/s)`,
      find(rows, { system: 'warren', transport: 'sse', identified: false }),
      find(rows, { system: 'node', transport: 'sse' }),
      rate,
      0.8,
      true,
    );
    ratioTarget(
      `Anonymous WebSocket fan-out ÷ Node ceiling, ${f0(S)} subscribers (deliveries/s)`,
      find(rows, { system: 'warren', transport: 'ws', identified: false }),
      find(rows, { system: 'node', transport: 'ws' }),
      rate,
      0.8,
      true,
    );
    for (const persistent of [true, false]) {
      ratioTarget(
        `Identified SSE ÷ RabbitMQ ceiling, ${f0(S)} subscribers, ${persistent ? 'persistent' : 'transient'} (deliveries/s)`,
        find(rows, { system: 'warren', identified: true, persistent }),
        find(rows, { system: 'rabbit', persistent }),
        rate,
        0.8,
        true,
      );
    }
    const lat = rows.filter((r) => r.latency !== undefined);
    const p99 = (w, c) => [w.latency.latency.p99, c.latency.latency.p99];
    const latencyLabel = (what, w, c) => {
      const behind = [w, c]
        .filter((r) => r !== undefined && !keptUp(r).startsWith('yes'))
        .map((r) => (r.system === 'warren' ? 'Warren' : 'the ceiling'));
      return `Latency p99, ${what}, ${f0(S)} subscribers at ${cfg.latencyRate} msg/s (ms)${behind.length > 0 ? `; did not keep up: ${behind.join(' and ')}` : ''}`;
    };
    {
      const w = find(lat, { system: 'warren', transport: 'sse', identified: false });
      const c = find(lat, { system: 'node', transport: 'sse' });
      ratioTarget(latencyLabel('anonymous SSE ÷ Node ceiling', w, c), w, c, p99, 1.3, false);
    }
    for (const persistent of [true, false]) {
      const w = find(lat, { system: 'warren', identified: true, persistent });
      const c = find(lat, { system: 'rabbit', persistent });
      ratioTarget(
        latencyLabel(`identified SSE ÷ RabbitMQ ceiling, ${persistent ? 'persistent' : 'transient'}`, w, c),
        w,
        c,
        p99,
        1.5,
        false,
      );
    }
  }
  for (const transport of ['sse', 'ws']) {
    const w = results.idle.find((r) => r.system === 'warren' && r.transport === transport);
    const c = results.idle.find((r) => r.system === 'node' && r.transport === transport);
    const limit = transport === 'sse' ? 1.0 : 1.2;
    ratioTarget(
      `Memory per idle ${transport === 'sse' ? 'SSE' : 'WebSocket'} connection ÷ Node ceiling, ${f0(w?.n)} connections (KiB)`,
      w,
      c,
      (a, b) => [a.kibPerConnection, b.kibPerConnection],
      limit,
      false,
    );
  }
  // Many connections on one process (issue 17), the Node ceiling's beside.
  const conns = results.connections ?? [];
  const connsOk = (r) =>
    r !== undefined &&
    r.error === undefined &&
    r.n === r.requested &&
    r.open.failed === 0 &&
    (r.phases ?? [r.delivery]).every((p) => isExact(p) && p.unique === p.expected);
  const held = (r) =>
    r === undefined
      ? '—'
      : r.error !== undefined
        ? `error: ${r.error}`
        : `${f0(r.open.failed)} refused, ${f0(r.delivery.drops)} dropped, ${f0(r.delivery.unique)}/${f0(r.open.opened * r.delivery.m)} delivered`;
  for (const transport of ['sse', 'ws']) {
    const w = find(conns, { system: 'warren', transport });
    const c = find(conns, { system: 'node', transport });
    if (w === undefined) continue;
    const T = transport.toUpperCase();
    targets.push([
      `${f0(w.requested)} concurrent anonymous ${T} connections on one gateway process: none refused or dropped, every message delivered`,
      `${w.n < w.requested ? `**only ${f0(w.n)} opened**: the hard open-file limit is ${f0(w.fileLimit)} (EBENCH_NOFILE, below); ` : ''}${held(w)}; Node ceiling: ${held(c)}`,
      'all',
      pass(connsOk(w)),
    ]);
    ratioTarget(
      `Anonymous ${transport === 'sse' ? 'SSE' : 'WebSocket'} fan-out ÷ Node ceiling, ${f0(w.n)} connections on one process (deliveries/s)`,
      w,
      c,
      (a, b) => [a.delivery?.deliveriesPerSec, b.delivery?.deliveriesPerSec],
      0.8,
      true,
    );
  }
  const li = results.loggedIdentified;
  for (const { S, anon, id } of li?.rows ?? []) {
    ratioTarget(
      `Identified SSE on a logged channel ÷ anonymous SSE fan-out, ${f0(S)} subscribers (deliveries/s)`,
      id,
      anon,
      (w, c) => [w.throughput?.deliveriesPerSec, c.throughput?.deliveriesPerSec],
      0.8,
      true,
    );
  }
  const storm = li?.storm;
  if (storm !== undefined && storm.error === undefined) {
    targets.push([
      `Reconnect storm: ${f0(storm.M)} identified SSE subscribers on a logged channel reconnecting with \`Last-Event-ID\``,
      `${f0(storm.reconnectsPerSec)} reconnects/s for ${f1(storm.scheduledS)} s`,
      `≥ ${f0(storm.rate)}/s`,
      storm.failures === 0 ? passRate(storm.reconnectsPerSec >= 0.95 * storm.rate) : pass(false),
    ]);
    targets.push([
      'Reconnect storm: every subscriber got every message once, in order',
      `${f0(storm.unique)}/${f0(storm.expected)}; lost ${f0(storm.lost)} (${f0(storm.subsWithLoss)} subscribers), dup ${f0(storm.dup)} (${f0(storm.subsWithDup)}), ooo ${f0(storm.ooo)}`,
      'exact',
      pass(stormExact(storm)),
    ]);
  }
  const loggedPhases = (li?.rows ?? []).flatMap(({ anon, id }) => [anon, id].flatMap((r) => [r.latency, r.throughput].filter(Boolean)));
  const inexact = [
    ...warrenRows.flatMap((r) => [r.latency, r.throughput].filter(Boolean)),
    ...idleW.map((r) => r.delivery).filter(Boolean),
    ...conns.filter((r) => r.system === 'warren').flatMap((r) => r.phases ?? [r.delivery].filter(Boolean)),
    ...loggedPhases,
  ].filter((r) => !isExact(r));
  if (warrenRows.length + idleW.length + conns.length + loggedPhases.length > 0) {
    targets.push([
      'Every Warren stream scenario: nothing lost, duplicated or out of order',
      inexact.length === 0 ? 'exact' : `${inexact.length} phase(s) inexact (see tables)`,
      'exact',
      pass(inexact.length === 0),
    ]);
  }
  if (targets.length > 0) {
    out.push('## Targets');
    out.push('');
    out.push('| Check | Measured | Target | Result |');
    out.push('|---|---|---|---|');
    for (const t of targets) out.push(`| ${t.join(' | ')} |`);
    out.push('');
    out.push('Ratios are judged within this run (issue 6); the tables below show every phase behind them.');
    out.push('');
  }

  // ---- throughput
  if (fan.length > 0) {
    out.push('## Fan-out throughput');
    out.push('');
    out.push(
      'S subscribers on one channel, the publisher sending as fast as RabbitMQ\'s confirms (or the Node ceiling\'s feed acknowledgements) allow, 64 unconfirmed at most. "p99 in the flood" includes the time messages wait in queues because the publisher outruns the subscribers. Deliveries/s = messages received by all subscribers ÷ time from the first publish to the last receipt. Lost / dup / out-of-order are summed over subscribers. CPU is cores used over the phase (100% = one core).',
    );
    out.push('');
    out.push(
      '| S | Warren | Deliveries/s | Ceiling | Deliveries/s | Ratio | Warren p99 in the flood | Ceiling p99 | Lost / dup / ooo (Warren) | Lost / dup / ooo (ceiling) | Gateway CPU | RabbitMQ CPU | Subscribers CPU | Connects/s | Deliveries/s of each phase (Warren; ceiling) |',
    );
    out.push('|---:|---|---:|---|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---|');
    const pairs = [
      [
        { system: 'warren', transport: 'sse', identified: false },
        { system: 'node', transport: 'sse' },
      ],
      [
        { system: 'warren', transport: 'ws', identified: false },
        { system: 'node', transport: 'ws' },
      ],
      [
        { system: 'warren', transport: 'sse', identified: true, persistent: true },
        { system: 'rabbit', persistent: true },
      ],
      [
        { system: 'warren', transport: 'sse', identified: true, persistent: false },
        { system: 'rabbit', persistent: false },
      ],
    ];
    const sizes = [...new Set(fan.filter((r) => !r.profiled).map((r) => r.S))];
    for (const S of sizes) {
      const rows = fan.filter((r) => r.S === S && !r.profiled);
      for (const [wq, cq] of pairs) {
        const w = find(rows, wq);
        const c = find(rows, cq);
        if (w === undefined) continue;
        const wt = w.throughput;
        const ct = c?.throughput;
        out.push(
          `| ${f0(S)} | ${title(w)}${w.error ? ` (error: ${w.error})` : ''} | ${f0(wt?.deliveriesPerSec)} | ${c === undefined ? '—' : title(c)} | ${f0(ct?.deliveriesPerSec)} | ${ratio(wt?.deliveriesPerSec, ct?.deliveriesPerSec)} | ${f1(wt?.latency.p99)} ms | ${f1(ct?.latency.p99)} ms | ${exact(wt)} | ${exact(ct)} | ${pct(wt?.cpu.server)} | ${pct(wt?.cpu.rabbit)} | ${pct(wt?.cpu.subscribers)} | ${f0(w.open?.connectsPerSec)} | ${(w.throughputRates ?? []).map(f0).join(', ')}; ${(c?.throughputRates ?? []).map(f0).join(', ')}${(w.throughputProblems ?? 0) + (c?.throughputProblems ?? 0) > 0 ? ' (losses in some phase)' : ''} |`,
        );
      }
    }
    out.push('');
    out.push("Detail per run (how the phase ended; the publisher's send rate, which the confirm window holds back; memory):");
    out.push('');
    out.push(
      '| Run | Opened | Messages | Delivered | Ended | Send rate | Span | Server RSS before → after open | RabbitMQ memory before → after (beam RSS) | Gateway stats |',
    );
    out.push('|---|---:|---:|---:|---|---:|---:|---|---|---|');
    for (const r of fan) {
      const t = r.throughput;
      const s = r.gatewayStats;
      out.push(
        `| ${r.name} | ${f0(r.open?.opened)}/${f0(r.S)} | ${f0(t?.m)} | ${f0(t?.unique)}/${f0(t?.expected)} | ${t === undefined ? (r.error ?? '—') : t.wait.complete ? 'all in' : t.wait.stalled ? 'stalled' : 'timed out'} | ${f0(t?.publish.perSec)}/s | ${f1(t?.spanS)} s | ${r.rssBeforeMiB === undefined ? '—' : `${f1(r.rssBeforeMiB)} → ${f1(r.rssAfterOpenMiB)} MiB`} | ${f0(r.rabbitMemBeforeMiB)} → ${f0(r.rabbitMemAfterMiB)} MiB (${f0(r.beamRssMiB)}) | ${s === undefined ? '—' : `declares ${s.broker.queueDeclares}, consumers ${s.broker.consumersStarted}, acked ${s.broker.acked}, requeued ${s.broker.requeued}, slow-closed ${s.fanOut.slowClosed}`} |`,
      );
    }
    out.push('');
  }

  // ---- latency
  const lat = fan.filter((r) => r.latency !== undefined);
  if (lat.length > 0) {
    out.push(`## Latency at ${cfg.latencyRate} msg/s`);
    out.push('');
    out.push(
      `From the publisher's stamp (taken just before the message is handed to amqplib or to the Node ceiling's feed socket) to the subscriber's receipt; ${cfg.latencyRate} msg/s for ${cfg.latencySeconds} s, percentiles over every delivery to every subscriber (1% bucket resolution). ${cfg.latencyRepeats ?? 1} phase(s) per scenario: the table shows the one with the median p99, and every phase's p99.`,
    );
    out.push('');
    out.push(
      '"Kept up" compares the deliveries per second over the phase with what was offered (rate × subscribers): a system that does not keep up queues messages, and its latency grows with the length of the phase (it is then not a steady-state figure).',
    );
    out.push('');
    out.push(
      '| S | Warren | p50 | p90 | p99 | max | Kept up | Ceiling | p50 | p90 | p99 | max | Kept up | p99 ratio | p99 of each phase (Warren; ceiling) | Lost / dup / ooo (Warren) |',
    );
    out.push('|---:|---|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---|---:|---|---|');
    for (const [wq, cq] of [
      [
        { system: 'warren', transport: 'sse', identified: false },
        { system: 'node', transport: 'sse' },
      ],
      [
        { system: 'warren', transport: 'sse', identified: true, persistent: true },
        { system: 'rabbit', persistent: true },
      ],
      [
        { system: 'warren', transport: 'sse', identified: true, persistent: false },
        { system: 'rabbit', persistent: false },
      ],
    ]) {
      const w = find(lat, wq);
      const c = find(lat, cq);
      if (w === undefined) continue;
      const a = w.latency.latency;
      const b = c?.latency.latency;
      out.push(
        `| ${f0(w.S)} | ${title(w)} | ${f2(a.p50)} ms | ${f2(a.p90)} ms | ${f2(a.p99)} ms | ${f1(a.max)} ms | ${keptUp(w)} | ${c === undefined ? '—' : title(c)} | ${f2(b?.p50)} ms | ${f2(b?.p90)} ms | ${f2(b?.p99)} ms | ${f1(b?.max)} ms | ${c === undefined ? '—' : keptUp(c)} | ${ratio(a.p99, b?.p99)} | ${(w.latencyP99s ?? [a.p99]).map(f1).join(', ')}; ${c === undefined ? '—' : (c.latencyP99s ?? [b?.p99]).map(f1).join(', ')} ms | ${exact(w.latency)}${w.latencyProblems > 0 ? ` (problems in ${w.latencyProblems} phase(s))` : ''} |`,
      );
    }
    out.push('');
  }

  // ---- idle memory
  if (results.idle.length > 0) {
    out.push('## Memory per idle connection, and many connections at once');
    out.push('');
    out.push(
      "Anonymous connections opened and left idle; the server process's resident memory before (server started, channel subscribed once) and after (6 s idle), divided by the connections. Then a few messages, which must reach every connection.",
    );
    out.push('');
    out.push(
      '| Transport | Server | Opened | Refused | RSS before → after | KiB per connection | Ratio to Node ceiling | Delivered | Dropped | RabbitMQ queues for the channel | RabbitMQ memory (mem_used) before → after | Connects/s |',
    );
    out.push('|---|---|---:|---:|---|---:|---:|---:|---:|---|---|---:|');
    for (const r of results.idle) {
      const c = results.idle.find((x) => x.system === 'node' && x.transport === r.transport);
      out.push(
        `| ${r.transport.toUpperCase()} | ${r.system === 'warren' ? 'Warren' : 'Node ceiling'}${r.error ? ` (error: ${r.error})` : ''} | ${f0(r.open?.opened)} | ${f0(r.open?.failed)}${r.open?.failed > 0 ? ` ${JSON.stringify(r.open.errors)}` : ''} | ${f1(r.rssBeforeMiB)} → ${f1(r.rssAfterMiB)} MiB | ${f1(r.kibPerConnection)} | ${r.system === 'warren' ? ratio(r.kibPerConnection, c?.kibPerConnection) : '—'} | ${f0(r.delivery?.unique)}/${f0(r.delivery?.expected)} | ${f0(r.delivery?.drops)} | ${r.queuesForChannel === undefined ? '—' : `${r.queuesForChannel} (declares ${r.declares}, consumers ${r.consumers})`} | ${f1(r.rabbitMemBeforeMiB)} → ${f1(r.rabbitMemAfterMiB)} MiB | ${f0(r.open?.connectsPerSec)} |`,
      );
    }
    out.push('');
  }

  // ---- many connections on one process
  if (conns.length > 0) {
    const asked = Math.max(...conns.map((r) => r.requested));
    out.push(`## ${f0(asked)} connections on one process`);
    out.push('');
    out.push(
      `Anonymous connections, all open at once on one server process (\`warren serve\` without \`--workers\`; the Node ceiling), from ${cfg.workers} subscriber worker processes on loopback; then ${f0(cfg.connectionsMessages)} messages as fast as the confirms allow, each of which must reach every connection once and in order (${cfg.repeats ?? 1} such phase(s) on the same connections; the one with the median rate is shown, every rate beside it). Each connection holds a file descriptor in the server and one in a worker: Node raises its soft open-file limit to the hard one when it starts, and the harness needs ${f0(asked)} + 64 in the server process; below that it opens what fits and says so (EBENCH_NOFILE). Clients draw ports from ip_local_port_range (${conns[0].portRange?.join('–') ?? '?'}); sockets left in TIME_WAIT by earlier scenarios point at other server ports (each server listens on a fresh one), so they do not collide.`,
    );
    out.push('');
    const capped = [...new Set(conns.map((r) => r.capped).filter(Boolean))];
    for (const message of capped) out.push(`**Capped here:** ${message}`, '');
    out.push(
      '| Transport | Server | Opened / asked | Refused | Subscribed | Server fds | Connects/s | RSS before → open → after messages | Delivered | Lost / dup / ooo | Deliveries/s | Ratio to Node ceiling | Deliveries/s of each phase | p50 / p99 in the flood | Server CPU (open; flood) | RabbitMQ queues for the channel | TIME_WAIT before | Load after (1 / 5 min) |',
    );
    out.push('|---|---|---:|---:|---:|---:|---:|---|---:|---|---:|---:|---|---|---|---:|---:|---|');
    for (const r of conns) {
      const c = find(conns, { system: 'node', transport: r.transport });
      const d = r.delivery;
      out.push(
        `| ${r.transport.toUpperCase()} | ${r.system === 'warren' ? 'Warren' : 'Node ceiling'}${r.error ? ` (error: ${r.error})` : ''} | ${f0(r.open?.opened)} / ${f0(r.requested)} | ${f0(r.open?.failed)}${r.open?.failed > 0 ? ` ${JSON.stringify(r.open.errors)}` : ''} | ${f0(r.subscribed)} | ${f0(r.fdsAfterOpen)} | ${f0(r.open?.connectsPerSec)} | ${f0(r.rssBeforeMiB)} → ${f0(r.rssAfterOpenMiB)} → ${f0(r.rssAfterMiB)} MiB | ${f0(d?.unique)}/${f0(d?.expected)} | ${exact(d)} | ${f0(d?.deliveriesPerSec)} | ${r.system === 'warren' ? ratio(d?.deliveriesPerSec, c?.delivery?.deliveriesPerSec) : '—'} | ${(r.deliveryRates ?? []).map(f0).join(', ')} | ${f1(d?.latency?.p50)} / ${f1(d?.latency?.p99)} ms | ${pct(r.open?.cpu?.server)}; ${pct(d?.cpu?.server)} | ${r.queuesForChannel ?? '—'} | ${f0(r.timeWaitBefore)} | ${r.loadAfter?.slice(0, 2).map(f2).join(' / ') ?? '—'} |`,
      );
    }
    out.push('');
  }

  // ---- churn
  if (churn !== undefined) {
    out.push('## Reconnect churn (identified SSE)');
    out.push('');
    out.push(
      `${f0(churn.n)} known consumer ids (their queues declared by a first visit), ${churn.concurrency} reconnect loops at once for ${churn.seconds} s: each opens an identified SSE stream, waits for the response head (the stream is open) and hangs up.`,
    );
    out.push('');
    if (churn.error !== undefined) out.push(`Error: ${churn.error}`);
    else {
      out.push(
        "The gateway sends a stream's response head before it starts the stream's RabbitMQ consumer (the queue is declared before; the consume follows), so the clients can open streams faster than the gateway attaches consumers. The figure judged is the gateway's own: consumers started per second over the window (from its `/_warren/stats`); the backlog is the streams the clients had opened (and already left) whose consumer was not started yet.",
      );
      out.push('');
      out.push(
        '| Gateway streams started/s | Target | Client stream heads/s | Backlog at the end | Gateway caught up | Failures | Head time p50 / p99 | Consumers cancelled/s | Declares during churn | Gateway CPU | RabbitMQ CPU | Gateway RSS before → after | RabbitMQ memory before → after | First visit (declare + bind) connects/s |',
      );
      out.push('|---:|---:|---:|---:|---|---|---|---:|---:|---:|---:|---|---|---:|');
      out.push(
        `| ${f0(churn.consumersStartedPerSec)} | ≥ 500 | ${f0(churn.opensPerSec)} | ${f0(churn.backlogAtEnd)} | ${Number.isFinite(churn.catchUpMs) ? `after ${f1(churn.catchUpMs / 1000)} s` : `no: ${f0(churn.backlogAfterWait)} still pending ${quick ? 5 : 15} s later`} | ${f0(churn.failures)}${churn.failures > 0 ? ` ${JSON.stringify(churn.errors)}` : ''} | ${f1(churn.openLatency.p50)} / ${f1(churn.openLatency.p99)} ms | ${f0(churn.consumersCancelledPerSec)} | ${f0(churn.declaresDuring)} | ${pct(churn.cpu.server)} | ${pct(churn.cpu.rabbit)} | ${f1(churn.rssBeforeMiB)} → ${f1(churn.rssAfterMiB)} MiB | ${f1(churn.rabbitMemBeforeMiB)} → ${f1(churn.rabbitMemAfterMiB)} MiB | ${f0(churn.firstOpen.connectsPerSec)} |`,
      );
    }
    out.push('');
  }

  // ---- long-poll
  if (lp !== undefined) {
    out.push('## Long-poll with messages waiting');
    out.push('');
    out.push(
      `${f0(lp.n)} identified consumers, each with ${f0(lp.k)} messages waiting in its queue, each polling \`?timeout=0\` on its own keep-alive connection as fast as it can until it has them all. A cycle = one request answered with a message.`,
    );
    out.push('');
    if (lp.error !== undefined) out.push(`Error: ${lp.error}`);
    else {
      out.push(
        '| Cycles/s | Target | Received | Lost / dup / ooo | Empty answers | Failed | basic.get | Consumers started | Declares | Gateway CPU | RabbitMQ CPU | Pollers CPU |',
      );
      out.push('|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|');
      out.push(
        `| ${f0(lp.cyclesPerSec)} | ≥ 2,000 | ${f0(lp.unique)}/${f0(lp.expected)} | ${exact(lp)} | ${f0(lp.empty)} | ${f0(lp.failed)}${lp.failed > 0 ? ` ${JSON.stringify(lp.errors)}` : ''} | ${f0(lp.gets)} | ${f0(lp.consumersStarted)} | ${f0(lp.declares)} | ${pct(lp.cpu.server)} | ${pct(lp.cpu.rabbit)} | ${pct(lp.cpu.subscribers)} |`,
      );
    }
    out.push('');
  }

  // ---- profiles
  if (results.profiles.length > 0) {
    out.push('## Where the gateway spends its CPU');
    out.push('');
    out.push(
      'Separate runs (not the measured ones) with the gateway under `node --cpu-prof`; the self time of each function, summed by `bench/profile-summary.mjs` over the throughput phase only (first publish to last receipt). The .cpuprofile files stay in `bench/profiles/` (not committed).',
    );
    out.push('');
    for (const p of results.profiles) {
      const r = p.row;
      out.push(
        `### ${title(r)}, ${f0(r.S)} subscribers, ${f0(r.throughput?.m)} messages (${f0(r.throughput?.deliveriesPerSec)} deliveries/s while profiled)`,
      );
      out.push('');
      out.push(p.error !== undefined ? `No profile: ${p.error}` : p.markdown);
      out.push('');
    }
  }

  publishSection(out, results.publish ?? [], cfg);
  abSection(out, results.ab ?? []);
  loggedSection(out, li, cfg);

  // ---- problems
  const notes = [...results.errors.map((e) => `Error: ${e}`)];
  for (const { row } of results.ab ?? []) {
    if (row.throughput !== undefined && !isExact(row.throughput))
      notes.push(`${row.name}: inexact delivery (lost, duplicated or reordered)`);
  }
  const loggedRows = [...(li?.rows ?? []).flatMap(({ anon, id }) => [anon, id]), ...(storm === undefined ? [] : [storm])];
  if (li?.leftover > 0) notes.push(`${li.leftover} queues or streams of the logged-identified group were still on the broker at the end`);
  const cappedRows = conns.filter((r) => r.capped !== undefined);
  if (cappedRows.length > 0) notes.push(`${cappedRows.map((r) => r.name).join(', ')}: ${cappedRows[0].capped}`);
  for (const r of [...fan, ...results.idle, ...conns, ...loggedRows])
    if (r.gatewayStderr) notes.push(`${r.name}: the gateway wrote to stderr: \`${r.gatewayStderr.replace(/\s+/g, ' ').slice(0, 400)}\``);
  for (const r of fan) {
    for (const phase of [r.latency, r.throughput]) {
      if (phase !== undefined && phase.negative > 0)
        notes.push(`${r.name}: ${phase.negative} deliveries stamped later than received (clock), counted as 0 ms`);
      if (phase !== undefined && phase.stray > 0) notes.push(`${r.name}: ${phase.stray} messages of another phase or out of range`);
    }
  }
  const busy = [];
  for (const r of [...fan, ...results.idle, ...conns]) {
    for (const phase of [r.latency, r.throughput, r.delivery]) if (phase?.cpu?.other > 0.15) busy.push(`${r.name} ${pct(phase.cpu.other)}`);
  }
  for (const r of [churn, lp]) if (r?.cpu?.other > 0.15) busy.push(`${r.name} ${pct(r.cpu.other)}`);
  if (busy.length > 0) notes.push(`Processes outside the benchmark used more than 15% of a core during: ${busy.join(', ')}`);
  if (leftoverQueues > 0) notes.push(`${leftoverQueues} queues of this run were still in RabbitMQ at the end`);
  out.push('## Problems seen in this run');
  out.push('');
  out.push(notes.length === 0 ? 'None: no errors, no stray messages, no queue left behind.' : notes.map((n) => `- ${n}`).join('\n'));
  out.push('');
  writeFileSync(path, out.join('\n'));
  const refused = [...results.idle, ...conns.filter((r) => r.system === 'warren')].some(
    (r) => r.open?.failed > 0 || (r.queuesForChannel !== undefined && r.queuesForChannel !== 1),
  );
  const correct =
    results.errors.length === 0 &&
    (results.ab ?? []).every(({ row }) => row.throughput === undefined || isExact(row.throughput)) &&
    inexact.length === 0 &&
    !refused &&
    (lp === undefined || isExact(lp)) &&
    (churn === undefined || churn.failures === 0) &&
    (storm === undefined || (storm.error === undefined && storm.failures === 0 && stormExact(storm)));
  const strip = (key, value) => (key === 'hist' || key === 'pairs' || key === 'markdown' ? undefined : value);
  writeFileSync(path.replace(/\.md$/, '.json'), `${JSON.stringify({ env, cfg, command, started, elapsedS, run, results }, strip, 1)}\n`);
  return correct;
}

/** The A/B groups (`--only workers,metrics`): every run, in the order it ran, with the load around it. */
function abSection(out, ab) {
  if (ab.length === 0) return;
  out.push('## A/B comparisons');
  out.push('');
  out.push(
    'Each run is a fresh gateway, the variants interleaved A,B,A,B; one throughput phase per run. Load: the 1-minute load average before and after the run (others share this machine). Gateway CPU counts every worker.',
  );
  out.push('');
  out.push('| Comparison | Scenario | Variant | Run | Deliveries/s | Gateway CPU | RabbitMQ CPU | Subscribers CPU | Load before → after |');
  out.push('|---|---|---|---|---|---|---|---|---|');
  for (const { group, variant, run, loadBefore, loadAfter, row, scrapes } of ab) {
    const t = row.throughput;
    const scenario = `${row.identified ? 'identified' : 'anonymous'} ${row.transport.toUpperCase()}, ${f0(row.S)} subscribers, ${f0(t?.m)} messages`;
    out.push(
      `| ${group} | ${scenario} | ${variant}${scrapes === undefined ? '' : ` (${scrapes} scrapes)`} | ${run} | ${row.error === undefined ? f0(t?.deliveriesPerSec) : `error: ${row.error}`} | ${pct(t?.cpu?.server)} | ${pct(t?.cpu?.rabbit)} | ${pct(t?.cpu?.subscribers)} | ${f2(loadBefore)} → ${f2(loadAfter)} |`,
    );
  }
  out.push('');
}

/** Per-queue figures of bench/anonymous-listeners.md (2026-11-22), to state the logged figures beside. */
const PER_QUEUE = { cpuSecondsPer1000: [4.54, 21.24 / 5], queueMiBPer1000: [24.81, 88.72 / 5], nodeMiBPer1000: [44.7, 243.5 / 5] };

/** The logged-identified group (`--only logged-identified`). */
function loggedSection(out, li, cfg) {
  if (li === undefined) return;
  const per1000 = (x, n) => (Number.isFinite(x) && n > 0 ? (x * 1000) / n : NaN);
  const d = (a, b, key) => (a?.[key] === undefined || b?.[key] === undefined ? NaN : b[key] - a[key]);
  out.push('## Identified subscribers on a logged channel (issue 15)');
  out.push('');
  out.push(
    `For each S: anonymous SSE fan-out on an unlogged channel (the throughput group's gateway), then identified SSE (a \`Consumer-Id\` header each) on a channel under \`--log-routes\`, on a gateway of its own exchange (\`${li.exchange}\`). Both read by the same client code, made ready by probe messages until every subscriber got one, then a latency phase at ${cfg.loggedLatencyRate} msg/s for ${cfg.loggedLatencySeconds} s, then throughput phases of the same message count for both (repeated up to ${cfg.repeats} times while they take under a minute; the median is shown). RabbitMQ CPU "to open" runs from the first connection to the last subscriber reached by a probe; broker memory is \`erlang:memory(total)\` (rabbitmqctl) before the gateway's subscribers and 2 s after they are all reached; queues are \`rabbitmqctl list_queues\`. Load average (1 min): ${f2(li.loadBefore)} before the group, ${f2(li.loadAfter)} after.`,
  );
  out.push('');
  out.push(
    '| S | Variant | Deliveries/s | Ratio to anonymous | Flood p50 / p99 | Latency p50 / p99 at the fixed rate | Kept up | Lost / dup / ooo | RabbitMQ CPU s to open, per 1,000 | RabbitMQ CPU in the flood (idle before) | Broker memory (erlang) added, per 1,000 | Queues for the channel / log streams | Deliveries/s of each phase |',
  );
  out.push('|---:|---|---:|---:|---|---|---|---|---:|---:|---:|---|---|');
  for (const { S, anon, id } of li.rows) {
    for (const r of [anon, id]) {
      const t = r.throughput;
      const l = r.latency;
      const mem = d(r.brokerBefore, r.brokerAfterOpen, 'erlangMiB');
      out.push(
        `| ${f0(S)} | ${r.identified ? 'identified, logged channel' : 'anonymous, unlogged'}${r.error ? ` (error: ${r.error})` : ''} | ${f0(t?.deliveriesPerSec)}${t === undefined || t.wait.complete ? '' : ` (${t.wait.stalled ? 'stalled' : 'timed out'}: ${f0(t.unique)}/${f0(t.expected)} in)`} | ${r.identified ? ratio(t?.deliveriesPerSec, anon.throughput?.deliveriesPerSec) : '—'} | ${f1(t?.latency.p50)} / ${f1(t?.latency.p99)} ms | ${f1(l?.latency.p50)} / ${f1(l?.latency.p99)} ms | ${l === undefined ? '—' : keptUp({ latency: l })} | ${exact(l)}; ${exact(t)} | ${f2(per1000(r.open?.cpu?.rabbitSeconds, r.open?.opened))} | ${pct(t?.cpu.rabbit)} (${pct(r.rabbitIdleCores)}) | ${f1(per1000(mem, r.open?.opened))} MiB (${f1(mem)} MiB) | ${r.brokerAfterOpen?.queuesForChannel ?? '—'} / ${r.brokerAfterOpen?.streamsOfExchange ?? '—'} | ${(r.throughputRates ?? []).map(f0).join(', ')} |`,
      );
    }
  }
  out.push('');
  out.push(
    `Beside the per-queue figures of [anonymous-listeners.md](anonymous-listeners.md) (one queue per listener, 2026-11-22): RabbitMQ CPU while connecting ${PER_QUEUE.cpuSecondsPer1000.map(f2).join(' / ')} s per 1,000 (at 1,000 / 5,000), memory of the queues ${PER_QUEUE.queueMiBPer1000.map(f1).join(' / ')} MiB per 1,000, node memory ${PER_QUEUE.nodeMiBPer1000.map(f1).join(' / ')} MiB per 1,000.`,
  );
  out.push('');
  out.push(
    '| Run | Opened | Probes (reached) | Gateway RSS before → after open | Broker erlang memory before → after open → after phases | mem_used before → after | Queues on the broker before → after open | Gateway stats |',
  );
  out.push('|---|---:|---|---|---|---|---|---|');
  for (const r of li.rows.flatMap(({ anon, id }) => [anon, id])) {
    const s = r.gatewayStats;
    out.push(
      `| ${r.name} | ${f0(r.open?.opened)}/${f0(r.S)} | ${f0(r.ready?.probes)} (${f0(r.ready?.reached)}) | ${f1(r.rssBeforeMiB)} → ${f1(r.rssAfterOpenMiB)} MiB | ${f1(r.brokerBefore?.erlangMiB)} → ${f1(r.brokerAfterOpen?.erlangMiB)} → ${f1(r.brokerAfter?.erlangMiB)} MiB | ${f0(r.brokerBefore?.memUsedMiB)} → ${f0(r.brokerAfterOpen?.memUsedMiB)} MiB | ${f0(r.brokerBefore?.queues)} → ${f0(r.brokerAfterOpen?.queues)} | ${s === undefined ? '—' : `declares ${s.broker.queueDeclares}, consumers ${s.broker.consumersStarted}, identified streams ${s.streams.identified}, log subscribers ${s.logs?.subscribers ?? '—'}`} |`,
    );
  }
  out.push('');
  const st = li.storm;
  if (st === undefined) return;
  out.push('### Reconnect storm');
  out.push('');
  out.push(
    `${f0(st.M)} identified SSE subscribers on a logged channel; ${f1(st.publishRate)} messages/s published throughout (${f0(st.m)} in all, ${st.persistent ? 'persistent' : 'transient'}); for ${f1(st.seconds)} s the subscribers hang up in turn at ${f0(st.rate)}/s and each connects again ${f0(st.offlineMs)} ms later with \`Last-Event-ID\`: the id of the last event it received. "First message" is connect → the first message on the new connection; "replayed" counts those published before that connect (a resume from the log or the queue), the others waited for the next publish. Every subscriber must get every message of the phase once and in order across its connections; a stream the server ends is connected again 250 ms later with its \`Last-Event-ID\` (as EventSource does), and counted. RabbitMQ is shared with other work on this machine: its CPU with nothing of ours running is shown in parentheses.`,
  );
  out.push('');
  if (st.error !== undefined) {
    out.push(`Error: ${st.error}`);
    out.push('');
    return;
  }
  out.push(
    '| Reconnects/s | Reconnects (skipped, failed) | Head p50 / p99 | First message p50 / p99 | Replayed first message p50 / p99 (n) | No message within 30 s | Streams ended by the server (reconnected) | RabbitMQ CPU in the storm (idle before) | Gateway CPU | Delivered | Lost (subscribers) | Dup (subscribers) | Ooo | Signals gap / reset | Queues for the channel | Broker erlang memory before → after | Load before → after |',
  );
  out.push('|---:|---|---|---|---|---:|---|---|---|---|---|---|---:|---|---|---|---|');
  out.push(
    `| ${f0(st.reconnectsPerSec)} | ${f0(st.started)} (${f0(st.skipped)}, ${f0(st.failures)}${st.failures > 0 ? ` ${JSON.stringify(st.errors)}` : ''}) | ${f1(st.head.p50)} / ${f1(st.head.p99)} ms | ${f1(st.first.p50)} / ${f1(st.first.p99)} ms | ${f1(st.firstReplayed.p50)} / ${f1(st.firstReplayed.p99)} ms (${f0(st.firstReplayed.n)}) | ${f0(st.noMessage)} | ${f0(st.drops)} (${f0(st.dropReconnects)}) | ${f2(st.cpu.rabbitSeconds)} s, ${pct(st.cpu.rabbit)} (${pct(st.rabbitIdleCores)}) | ${pct(st.cpu.server)} | ${f0(st.unique)}/${f0(st.expected)} | ${f0(st.lost)} (${f0(st.subsWithLoss)}) | ${f0(st.dup)} (${f0(st.subsWithDup)}) | ${f0(st.ooo)} | ${f0(st.gaps)} / ${f0(st.resets)} | ${st.brokerAfter?.queuesForChannel ?? '—'} | ${f1(st.brokerBefore?.erlangMiB)} → ${f1(st.brokerAfter?.erlangMiB)} MiB | ${f2(st.loadBefore)} → ${f2(st.loadAfter)} |`,
  );
  if (st.lostSample?.length > 0) {
    out.push('');
    out.push(
      `Subscribers that missed messages (the first sequence numbers missed; messages go out every ${f0(1000 / st.publishRate)} ms from ${f0(st.stormStartAt - st.publishStartAt)} ms before the storm's first hang-up): ${st.lostSample.map((x) => `${x.label.replace(/^bench-[^-]+-/, '')} missed ${x.missed.join(', ')}`).join('; ')}.`,
    );
  }
  out.push('');
}

/** The publish group: messages/s confirmed by RabbitMQ per client, every round, the median beside the AMQP SDK's. */
function publishSection(out, rows, cfg) {
  if (rows.length === 0) return;
  out.push('## Publishing rate: HTTP endpoint and producer SDK');
  out.push('');
  out.push(
    `One gateway (\`warren serve\` on RabbitMQ), one channel with one consumer queue bound to it (every message routed and written), ${cfg.size}-byte JSON messages, persistent. A rate is messages confirmed by RabbitMQ per second, from the first request to the last answer. Clients take turns, round after round (others share this machine); the median of the rounds is compared with the AMQP SDK's median.`,
  );
  out.push('');
  out.push('| Client | In flight | Messages/s per round | Median | × AMQP SDK | Gateway CPU | RabbitMQ CPU | Load before → after |');
  out.push('|---|---|---|---:|---:|---:|---:|---|');
  const names = [...new Set(rows.map((r) => r.client))];
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const medianOf = (name) => median(rows.filter((r) => r.client === name && r.error === undefined).map((r) => r.perSec));
  const sdk = medianOf(names[0]);
  for (const name of names) {
    const runs = rows.filter((r) => r.client === name);
    const m = medianOf(name);
    out.push(
      `| ${name} | ${runs[0].how} | ${runs.map((r) => (r.error === undefined ? f0(r.perSec) : 'error')).join(', ')} | ${f0(m)} | ${name === names[0] ? '1×' : ratio(m, sdk)} | ${runs.map((r) => pct(r.cpu?.gateway)).join(', ')} | ${runs.map((r) => pct(r.cpu?.rabbit)).join(', ')} | ${runs.map((r) => `${f2(r.loadBefore)} → ${f2(r.loadAfter)}`).join('; ')} |`,
    );
  }
  out.push('');
}
