// What every subscriber records: which sequence numbers of the current phase
// arrived (lost, duplicated, out of order) and how long each took from the
// publisher's stamp (a latency histogram). Shared by the subscriber workers,
// the RabbitMQ ceiling process and the orchestrator (which merges reports).

/** Epoch milliseconds with sub-millisecond resolution, comparable across processes on one machine. */
export const now = () => performance.timeOrigin + performance.now();

/** The marker every bench message body starts with: `{"g":<phase>,"s":<seq>,"t":<epoch ms>,"p":"<padding>"}`. */
export const MARK = '{"g":';

/** The body of message `seq` of `phase`, padded to about `size` bytes. */
export function stampBody(phase, seq, size) {
  const head = `{"g":${phase},"s":${seq},"t":${now().toFixed(3)},"p":"`;
  return head + 'x'.repeat(Math.max(0, size - head.length - 2)) + '"}';
}

const LOG_STEP = Math.log(1.01);
const BUCKETS = 2400;

/** Latencies in log buckets 1% wide (microseconds to hours), cheap to merge across processes. */
export class Histogram {
  constructor() {
    this.counts = new Uint32Array(BUCKETS);
    this.n = 0;
    this.sum = 0;
    this.max = -Infinity;
    this.min = Infinity;
  }

  add(ms) {
    const us = ms * 1000;
    const i = us <= 1 ? 0 : Math.min(BUCKETS - 1, Math.floor(Math.log(us) / LOG_STEP));
    this.counts[i]++;
    this.n++;
    this.sum += ms;
    if (ms > this.max) this.max = ms;
    if (ms < this.min) this.min = ms;
  }

  /** The upper edge of the bucket holding the p-th percentile, in ms (at most 1% high). */
  percentile(p) {
    if (this.n === 0) return NaN;
    const rank = Math.ceil((p / 100) * this.n);
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i];
      if (seen >= rank) return Math.min(this.max, Math.exp((i + 1) * LOG_STEP) / 1000);
    }
    return this.max;
  }

  toJSON() {
    const pairs = [];
    for (let i = 0; i < BUCKETS; i++) if (this.counts[i] !== 0) pairs.push(i, this.counts[i]);
    return { pairs, n: this.n, sum: this.sum, max: this.max, min: this.min };
  }

  merge(json) {
    for (let k = 0; k < json.pairs.length; k += 2) this.counts[json.pairs[k]] += json.pairs[k + 1];
    this.n += json.n;
    this.sum += json.sum;
    if (json.n > 0) {
      this.max = Math.max(this.max, json.max);
      this.min = Math.min(this.min, json.min);
    }
    return this;
  }

  summary() {
    return {
      n: this.n,
      p50: this.percentile(50),
      p90: this.percentile(90),
      p99: this.percentile(99),
      max: this.n === 0 ? NaN : this.max,
      mean: this.n === 0 ? NaN : this.sum / this.n,
    };
  }
}

/** One subscriber's view of the current phase. */
export class SubscriberState {
  constructor(label) {
    this.label = label;
    this.reset(0);
  }

  reset(m) {
    this.seen = new Uint8Array(m);
    this.unique = 0;
    this.dup = 0;
    this.ooo = 0;
    this.maxSeq = -1;
  }
}

/**
 * The phase bookkeeping of one process: every subscriber's state, one
 * histogram, first and last arrival. `record()` is the hot path.
 */
export class Tracker {
  constructor() {
    this.subs = [];
    this.expect(-1, 0);
  }

  add(sub) {
    sub.reset(this.m);
    this.subs.push(sub);
    return sub;
  }

  remove(sub) {
    const i = this.subs.indexOf(sub);
    if (i >= 0) this.subs.splice(i, 1);
  }

  /** Starts phase `phase` of `m` messages: every subscriber expects sequence numbers 0..m-1. */
  expect(phase, m) {
    this.phase = phase;
    this.m = m;
    this.hist = new Histogram();
    this.received = 0;
    this.stray = 0;
    this.negative = 0;
    this.firstAt = 0;
    this.lastAt = 0;
    for (const sub of this.subs) sub.reset(m);
  }

  /** Parses the stamp at `text[i]` (which starts with MARK) and records it for `sub`, received at `at`. */
  record(sub, text, i, at) {
    let k = i + 5;
    let g = 0;
    let c;
    while ((c = text.charCodeAt(k)) >= 48 && c <= 57) {
      g = g * 10 + c - 48;
      k++;
    }
    k += 5; // ,"s":
    let s = 0;
    while ((c = text.charCodeAt(k)) >= 48 && c <= 57) {
      s = s * 10 + c - 48;
      k++;
    }
    k += 5; // ,"t":
    const t = parseFloat(text.slice(k, k + 24));
    if (g !== this.phase || s >= this.m) {
      this.stray++;
      return;
    }
    if (sub.seen[s] === 1) {
      sub.dup++;
      return;
    }
    sub.seen[s] = 1;
    sub.unique++;
    if (s < sub.maxSeq) sub.ooo++;
    else sub.maxSeq = s;
    const ms = at - t;
    if (ms < 0) this.negative++;
    this.hist.add(ms < 0 ? 0 : ms);
    this.received++;
    if (this.firstAt === 0) this.firstAt = at;
    this.lastAt = at;
  }

  /** Records every stamped body in `text` up to index `end` (exclusive). */
  recordAll(sub, text, end, at) {
    let i = text.indexOf(MARK);
    while (i >= 0 && i < end) {
      this.record(sub, text, i, at);
      i = text.indexOf(MARK, i + 5);
    }
  }

  report(extra = {}) {
    let unique = 0;
    let dup = 0;
    let ooo = 0;
    let subsWithLoss = 0;
    let subsWithDup = 0;
    /** A few subscribers that missed messages, with the first sequence numbers they missed (to see where). */
    const lostSample = [];
    for (const sub of this.subs) {
      unique += sub.unique;
      dup += sub.dup;
      ooo += sub.ooo;
      if (sub.unique < this.m) {
        subsWithLoss++;
        if (lostSample.length < 5) {
          const missed = [];
          for (let s = 0; s < this.m && missed.length < 10; s++) if (sub.seen[s] !== 1) missed.push(s);
          lostSample.push({ label: sub.label, missed });
        }
      }
      if (sub.dup > 0) subsWithDup++;
    }
    return {
      subs: this.subs.length,
      expected: this.subs.length * this.m,
      unique,
      lost: this.subs.length * this.m - unique,
      dup,
      ooo,
      subsWithLoss,
      subsWithDup,
      lostSample,
      stray: this.stray,
      negative: this.negative,
      received: this.received,
      firstAt: this.firstAt,
      lastAt: this.lastAt,
      hist: this.hist.toJSON(),
      ...extra,
    };
  }
}

/** Sums reports of several processes into one. */
export function mergeReports(reports) {
  const out = {
    subs: 0,
    expected: 0,
    unique: 0,
    lost: 0,
    dup: 0,
    ooo: 0,
    subsWithLoss: 0,
    subsWithDup: 0,
    stray: 0,
    negative: 0,
    received: 0,
    drops: 0,
    firstAt: 0,
    lastAt: 0,
  };
  const hist = new Histogram();
  out.lostSample = reports.flatMap((r) => r.lostSample ?? []).slice(0, 5);
  for (const r of reports) {
    for (const key of [
      'subs',
      'expected',
      'unique',
      'lost',
      'dup',
      'ooo',
      'subsWithLoss',
      'subsWithDup',
      'stray',
      'negative',
      'received',
      'drops',
    ])
      out[key] += r[key] ?? 0;
    if (r.firstAt > 0 && (out.firstAt === 0 || r.firstAt < out.firstAt)) out.firstAt = r.firstAt;
    if (r.lastAt > out.lastAt) out.lastAt = r.lastAt;
    hist.merge(r.hist);
  }
  out.latency = hist.summary();
  return out;
}
