/**
 * The history of a fault run and its checker.
 *
 * Everything the runner sees is written here with a timestamp: each publish
 * (its sequence number, when it was sent, whether the broker confirmed it or
 * the error code it failed with), when each consumer's queue existed, each
 * delivery, each phase (a fault with steady traffic before and after), and
 * the incidents (gateway exits, polls answered late, an EventSource closed for
 * good, streams silent past the bound). `check()` turns that into one row per
 * phase and transport.
 *
 * The rule checked: a confirmed message must reach every identified consumer
 * whose queue existed when the message was sent (its first open or its first
 * 2xx poll came before the publish started). Anonymous streams are counted,
 * never required to be complete.
 */

export type Transport = 'long-poll' | 'sse' | 'ws' | 'eventsource' | 'anonymous';

/** Bounds the checker judges hangs by (stated in the report). */
export interface Bounds {
  /** A poll answered later than its `timeout` plus this is a hang. */
  pollSlackMs: number;
  /** A consumer that gets no fresh message this long after a fault ended is a hang. */
  recoveryMs: number;
  /** A black-hole or pause the gateway's health has not reported (503) after this long is a hang. */
  detectMs: number;
}

export type Incident =
  | { type: 'gateway-exit'; at: number; code: number | null; signal: string | null; tail: string }
  | { type: 'poll-late'; at: number; consumer: string; tookMs: number; timeoutMs: number }
  | { type: 'es-closed'; at: number; consumer: string; detail: string }
  | { type: 'stream-stalled'; at: number; consumer: string; silentMs: number }
  | { type: 'gateway-stuck'; at: number; unhealthyMs: number }
  | { type: 'note'; at: number; text: string };

interface Publish {
  seq: number;
  sentAt: number;
  outcome: 'pending' | 'confirmed' | string; // else: the error code
}

interface ConsumerRecord {
  name: string;
  transport: Transport;
  identified: boolean;
  readyAt: number | undefined;
  /** Delivery times by seq (first delivery), and counts. */
  firstAt: Map<number, number>;
  duplicates: Map<number, number>;
  reordered: number;
  highest: number;
}

export interface Phase {
  name: string;
  startedAt: number;
  faultAt: number;
  faultEndedAt: number;
  endedAt: number;
  /** Time from fault start until /_warren/health answered 503, when watched. */
  healthDownAfterMs?: number | null;
  notes: string[];
}

export interface Row {
  phase: string;
  transport: Transport;
  consumer: string;
  required: number;
  delivered: number;
  lost: number;
  duplicated: number;
  reordered: number;
  /** ms from fault end to the first message published after it; null: never. */
  recoveryMs: number | null;
  incidents: number;
}

export interface PhaseSummary {
  phase: string;
  sent: number;
  confirmed: number;
  errors: Record<string, number>;
  gatewayExits: number;
  hangs: number;
  healthDownAfterMs: number | null | undefined;
  recoveryMs: number | null;
  notes: string[];
}

export interface Verdict {
  rows: Row[];
  phases: PhaseSummary[];
  failures: string[];
}

export class History {
  readonly publishes: Publish[] = [];
  readonly consumers = new Map<string, ConsumerRecord>();
  readonly phases: Phase[] = [];
  readonly incidents: Incident[] = [];

  constructor(readonly bounds: Bounds) {}

  sent(seq: number, at = Date.now()): void {
    this.publishes[seq] = { seq, sentAt: at, outcome: 'pending' };
  }

  settled(seq: number, outcome: 'confirmed' | string): void {
    const p = this.publishes[seq];
    if (p) p.outcome = outcome;
  }

  addConsumer(name: string, transport: Transport, identified: boolean): void {
    this.consumers.set(name, {
      name,
      transport,
      identified,
      readyAt: undefined,
      firstAt: new Map(),
      duplicates: new Map(),
      reordered: 0,
      highest: -1,
    });
  }

  /** The consumer's queue exists from now on (first open, first 2xx poll). */
  ready(name: string, at = Date.now()): void {
    const c = this.consumers.get(name)!;
    c.readyAt ??= at;
  }

  delivered(name: string, seq: number, at = Date.now()): void {
    const c = this.consumers.get(name)!;
    if (c.firstAt.has(seq)) {
      c.duplicates.set(seq, (c.duplicates.get(seq) ?? 0) + 1);
      return;
    }
    c.firstAt.set(seq, at);
    if (seq < c.highest) c.reordered += 1;
    else c.highest = seq;
  }

  incident(i: Incident): void {
    this.incidents.push(i);
  }

  /** Confirmed messages still missing for identified consumers (what a drain waits for). */
  missing(): number {
    let n = 0;
    for (const c of this.consumers.values()) {
      if (!c.identified || c.readyAt === undefined) continue;
      for (const p of this.publishes) if (p && p.outcome === 'confirmed' && p.sentAt >= c.readyAt && !c.firstAt.has(p.seq)) n += 1;
    }
    return n;
  }

  check(): Verdict {
    const rows: Row[] = [];
    const phases: PhaseSummary[] = [];
    const failures: string[] = [];
    const inPhase = (ph: Phase, at: number) => at >= ph.startedAt && at < ph.endedAt;
    for (const ph of this.phases) {
      const pubs = this.publishes.filter((p) => p && inPhase(ph, p.sentAt));
      const errors: Record<string, number> = {};
      for (const p of pubs) if (p.outcome !== 'confirmed') errors[p.outcome] = (errors[p.outcome] ?? 0) + 1;
      const incidents = this.incidents.filter((i) => inPhase(ph, i.at));
      const exits = incidents.filter((i) => i.type === 'gateway-exit').length;
      let hangs = incidents.filter((i) => i.type === 'poll-late' || i.type === 'stream-stalled' || i.type === 'gateway-stuck').length;
      let phaseRecovery: number | null = 0;
      for (const c of this.consumers.values()) {
        // For an anonymous stream these are counted, never required.
        const required = c.readyAt !== undefined ? pubs.filter((p) => p.outcome === 'confirmed' && p.sentAt >= c.readyAt!) : [];
        const delivered = required.filter((p) => c.firstAt.has(p.seq)).length;
        const seen = pubs.filter((p) => c.firstAt.has(p.seq));
        let dup = 0;
        for (const p of pubs) dup += c.duplicates.get(p.seq) ?? 0;
        let reordered = 0;
        let high = -1;
        for (const p of [...seen].sort((a, b) => c.firstAt.get(a.seq)! - c.firstAt.get(b.seq)!)) {
          if (p.seq < high) reordered += 1;
          else high = p.seq;
        }
        // Recovery: the first delivery of a message sent after the fault ended.
        let recovery: number | null = null;
        for (const p of pubs) {
          if (p.sentAt < ph.faultEndedAt) continue;
          const at = c.firstAt.get(p.seq);
          if (at !== undefined && (recovery === null || at - ph.faultEndedAt < recovery)) recovery = at - ph.faultEndedAt;
        }
        const mine = incidents.filter((i) => 'consumer' in i && i.consumer === c.name).length;
        rows.push({
          phase: ph.name,
          transport: c.transport,
          consumer: c.name,
          required: required.length,
          delivered,
          lost: required.length - delivered,
          duplicated: dup,
          reordered,
          recoveryMs: recovery,
          incidents: mine,
        });
        if (c.identified) {
          if (required.length - delivered > 0)
            failures.push(
              `${ph.name}: ${c.transport} (${c.name}) lost ${required.length - delivered} of ${required.length} confirmed messages`,
            );
          if (recovery === null || recovery > this.bounds.recoveryMs) {
            hangs += 1;
            failures.push(
              `${ph.name}: ${c.transport} (${c.name}) got no fresh message within ${this.bounds.recoveryMs} ms of the fault's end (${recovery === null ? 'none at all' : `${recovery} ms`})`,
            );
          }
          if (phaseRecovery !== null) phaseRecovery = recovery === null ? null : Math.max(phaseRecovery, recovery);
        }
      }
      for (const i of incidents) {
        if (i.type === 'gateway-exit')
          failures.push(`${ph.name}: the gateway exited (code ${i.code}, signal ${i.signal}): ${crashLine(i.tail)}`);
        if (i.type === 'poll-late')
          failures.push(
            `${ph.name}: a poll of ${i.consumer} with timeout ${i.timeoutMs} ms was answered after ${i.tookMs} ms (bound: timeout + ${this.bounds.pollSlackMs} ms)`,
          );
        if (i.type === 'stream-stalled')
          failures.push(`${ph.name}: ${i.consumer} was silent for ${i.silentMs} ms with its connection open`);
        if (i.type === 'gateway-stuck')
          failures.push(
            `${ph.name}: /_warren/health still not 200 ${i.unhealthyMs} ms after the fault ended, with the broker up (the runner restarted the gateway)`,
          );
        if (i.type === 'es-closed') failures.push(`${ph.name}: the EventSource ${i.consumer} closed for good (${i.detail})`);
      }
      if (ph.healthDownAfterMs === null) {
        hangs += 1;
        failures.push(
          `${ph.name}: /_warren/health still answered 200 after ${this.bounds.detectMs} ms of a silent broker (the dead connection was not detected)`,
        );
      }
      phases.push({
        phase: ph.name,
        sent: pubs.length,
        confirmed: pubs.filter((p) => p.outcome === 'confirmed').length,
        errors,
        gatewayExits: exits,
        hangs,
        healthDownAfterMs: ph.healthDownAfterMs,
        recoveryMs: phaseRecovery,
        notes: [...ph.notes, ...countSame(incidents.filter((i) => i.type === 'note').map((i) => (i as { text: string }).text))],
      });
    }
    return { rows, phases, failures };
  }
}

/** Each distinct line once, with "(×n)" when it came more than once. */
function countSame(lines: string[]): string[] {
  const n = new Map<string, number>();
  for (const l of lines) n.set(l, (n.get(l) ?? 0) + 1);
  return [...n].map(([l, k]) => (k > 1 ? `${l} (×${k})` : l));
}

/** The line of a crashed process's output that names the error. */
function crashLine(tail: string): string {
  const lines = tail
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const error = lines.find((l) => /^(\w*Error|Unhandled|Uncaught|node:internal)|Error:|\[\w+\]/.test(l) && !l.startsWith('at '));
  return (error ?? lines.at(-1) ?? '(no output)').slice(0, 300);
}

const pad = (s: string, n: number) => (s.length >= n ? s : s + ' '.repeat(n - s.length));

/** The report as Markdown tables: one summary row per phase, then one row per phase and consumer. */
export function formatVerdict(v: Verdict, bounds: Bounds): string {
  const out: string[] = [];
  const ms = (x: number | null | undefined) => (x === undefined ? '–' : x === null ? 'never' : `${x}`);
  out.push('| Phase | Sent | Confirmed | Producer errors | Gateway exits | Hangs | Health 503 after (ms) | Recovery (ms, slowest) |');
  out.push('|---|---|---|---|---|---|---|---|');
  for (const p of v.phases) {
    const errs =
      Object.entries(p.errors)
        .map(([k, n]) => `${k} ${n}`)
        .join(', ') || '0';
    out.push(
      `| ${p.phase} | ${p.sent} | ${p.confirmed} | ${errs} | ${p.gatewayExits} | ${p.hangs} | ${ms(p.healthDownAfterMs)} | ${ms(p.recoveryMs)} |`,
    );
  }
  out.push('');
  out.push('| Phase | Transport | Required | Delivered | Lost | Duplicated | Reordered | Recovery (ms) | Incidents |');
  out.push('|---|---|---|---|---|---|---|---|---|');
  for (const r of v.rows) {
    const anon = r.transport === 'anonymous';
    out.push(
      `| ${pad(r.phase, 18)} | ${pad(r.transport, 11)} | ${anon ? `(${r.required})` : r.required} | ${r.delivered} | ${anon ? `(${r.lost} missed)` : r.lost} | ${r.duplicated} | ${r.reordered} | ${ms(r.recoveryMs)} | ${r.incidents} |`,
    );
  }
  out.push('');
  out.push(
    "Required: confirmed messages sent while the consumer's queue existed. Lost: those not delivered by the end of the drain (which lasts while missing messages still arrive). Recovery: from the fault's end to the first delivery of a message sent after it.",
  );
  out.push('Anonymous streams are live only: their figures are in parentheses, counted and never required.');
  out.push(
    `Bounds: a poll answered later than its timeout + ${bounds.pollSlackMs} ms is a hang; an identified consumer with no fresh message ${bounds.recoveryMs} ms after a fault ended is a hang; so is a silent broker (black-hole, SIGSTOP) that /_warren/health has not reported as 503 within ${bounds.detectMs} ms.`,
  );
  const notes = v.phases.flatMap((p) => p.notes.map((n) => `- ${p.phase}: ${n}`));
  if (notes.length > 0) out.push('', 'Notes:', ...notes);
  out.push('', v.failures.length === 0 ? 'PASS: no loss, no gateway exit, no hang.' : `FAIL (${v.failures.length}):`);
  for (const f of v.failures) out.push(`- ${f}`);
  return out.join('\n');
}
