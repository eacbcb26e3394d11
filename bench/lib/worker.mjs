// A subscriber worker: one child process holding many subscriber connections
// (SSE, WebSocket) to the server under test, or running long-poll and
// reconnect loops. Driven by the orchestrator over IPC; every command answers
// once with { id, ok, ... }.
import http from 'node:http';
import WebSocket from 'ws';
import { Histogram, MARK, now, SubscriberState, Tracker } from './tracker.mjs';

const tracker = new Tracker();
/** Open streams: { state, close() }. */
let streams = [];
/** Streams that ended without being asked to. */
let drops = 0;
let closing = false;

const CONNECT_TIMEOUT_MS = 30_000;

function target(base, path, consumer, extra = '') {
  const u = new URL(base);
  const q = consumer === undefined ? extra : `consumer_id=${consumer}${extra === '' ? '' : `&${extra}`}`;
  return { host: u.hostname, port: Number(u.port), path: q === '' ? path : `${path}?${q}` };
}

/** The request of an SSE stream that names its consumer in the `Consumer-Id` header (and resumes after `lastId`). */
function sseRequest(base, path, consumer, lastId) {
  const u = new URL(base);
  const headers = { accept: 'text/event-stream' };
  if (consumer !== undefined) headers['consumer-id'] = consumer;
  if (lastId !== undefined) headers['last-event-id'] = lastId;
  return { host: u.hostname, port: Number(u.port), path, headers, agent: false };
}

/** Reads an error body (`{"code":…}`) into a short label. */
function errorLabel(res, done) {
  let body = '';
  res.setEncoding('utf8');
  res.on('data', (c) => (body += c.length < 2000 ? c : ''));
  res.on('end', () => {
    let code = '';
    try {
      code = JSON.parse(body).code ?? '';
    } catch {}
    done(`${res.statusCode}${code === '' ? '' : ` ${code}`}`);
  });
  res.on('error', () => done(String(res.statusCode)));
}

/** Opens one SSE stream and keeps it; resolves { ok } or { ok: false, error } once the response head arrived. */
function openSse(base, path, consumer) {
  return new Promise((resolve) => {
    let settled = false;
    const state = tracker.add(new SubscriberState(consumer ?? 'anon'));
    const fail = (error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      tracker.remove(state);
      resolve({ ok: false, error });
    };
    const req = http.request({ ...target(base, path, consumer), headers: { accept: 'text/event-stream' }, agent: false });
    const timer = setTimeout(() => {
      fail('connect timeout');
      req.destroy();
    }, CONNECT_TIMEOUT_MS);
    const stream = { state, close: () => req.destroy() };
    req.on('response', (res) => {
      if (res.statusCode !== 200) {
        errorLabel(res, fail);
        return;
      }
      settled = true;
      clearTimeout(timer);
      streams.push(stream);
      res.setEncoding('latin1');
      let buf = '';
      res.on('data', (chunk) => {
        const at = now();
        const text = buf.length === 0 ? chunk : buf + chunk;
        const end = text.lastIndexOf('\n');
        if (end < 0) {
          buf = text;
          return;
        }
        tracker.recordAll(state, text, end, at);
        buf = end === text.length - 1 ? '' : text.slice(end + 1);
      });
      res.on('close', () => {
        if (!closing) drops++;
      });
      resolve({ ok: true });
    });
    req.on('error', (err) => {
      if (!settled) fail(err.code ?? err.message);
      else if (!closing) drops++;
    });
    req.end();
  });
}

/**
 * A resumable SSE subscriber (`trackIds`): it names its consumer in the
 * `Consumer-Id` header, reads whole events only (up to a blank line), keeps
 * the id of the last one, and can be hung up and opened again with
 * `Last-Event-ID` (the reconnect storm). Its state lives across connections,
 * so a message received on two connections counts as a duplicate.
 */
class Resumable {
  constructor(base, path, consumer) {
    this.base = base;
    this.path = path;
    this.consumer = consumer;
    this.state = tracker.add(new SubscriberState(consumer ?? 'anon'));
    this.lastId = undefined;
    this.req = undefined;
    /** While a reconnect waits for its first message: { onFirst(at, stamp) }. */
    this.resume = undefined;
    /** Reconnect by itself when the server ends the stream (as EventSource does): set during the storm. */
    this.auto = false;
    /** Hung up on purpose by the storm, until it connects again. */
    this.offline = false;
    this.gaps = 0;
    this.resets = 0;
    this.dropReconnects = 0;
  }

  /** Opens a connection (with `Last-Event-ID` when it has seen an event); resolves { ok } once the head arrived. */
  connect() {
    this.hangUp();
    return new Promise((resolve) => {
      let settled = false;
      const req = http.request(sseRequest(this.base, this.path, this.consumer, this.lastId));
      this.req = req;
      const fail = (error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        req.hangingUp = true;
        if (this.req === req) this.req = undefined;
        req.destroy();
        resolve({ ok: false, error });
      };
      const timer = setTimeout(() => fail('connect timeout'), CONNECT_TIMEOUT_MS);
      req.on('response', (res) => {
        if (res.statusCode !== 200) {
          errorLabel(res, fail);
          return;
        }
        settled = true;
        clearTimeout(timer);
        res.setEncoding('latin1');
        let buf = '';
        res.on('data', (chunk) => {
          const at = now();
          buf += chunk;
          const end = buf.lastIndexOf('\n\n');
          if (end < 0) return;
          const block = buf.slice(0, end + 2);
          buf = buf.slice(end + 2);
          this.events(block, at);
        });
        res.on('close', () => this.dropped(req));
        resolve({ ok: true });
      });
      req.on('error', (err) => {
        if (!settled) fail(err.code ?? err.message);
        else this.dropped(req);
      });
      req.end();
    });
  }

  /** The server ended the current stream (not this client): counted; with `auto`, connect again after 250 ms. */
  dropped(req) {
    if (this.req !== req || req.hangingUp) return;
    req.hangingUp = true;
    this.req = undefined;
    drops++;
    if (!this.auto || closing) return;
    const again = async (attempt) => {
      if (this.req !== undefined || this.offline || !this.auto || closing || attempt >= 40) return;
      this.dropReconnects++;
      const r = await this.connect();
      if (!r.ok) setTimeout(() => again(attempt + 1), 250);
    };
    setTimeout(() => again(0), 250);
  }

  /** Whole events: records the stamped ones, keeps the last id, counts the signals. */
  events(block, at) {
    const first = block.indexOf(MARK);
    if (first >= 0) {
      tracker.recordAll(this.state, block, block.length, at);
      if (this.resume !== undefined) {
        const t = parseFloat(block.slice(block.indexOf('"t":', first) + 4, block.indexOf(',"p"', first)));
        this.resume.onFirst(at, t);
        this.resume = undefined;
      }
    }
    const i = block.lastIndexOf('\nid: ');
    const j = i >= 0 ? i + 1 : block.startsWith('id: ') ? 0 : -1;
    if (j >= 0) this.lastId = block.slice(j + 4, block.indexOf('\n', j));
    if (block.includes('event: warren-gap')) this.gaps++;
    if (block.includes('event: warren-reset')) this.resets++;
  }

  hangUp() {
    if (this.req === undefined) return;
    this.req.hangingUp = true;
    this.req.destroy();
    this.req = undefined;
  }
}

/** Opens one raw WebSocket on the channel path (one frame per message). */
function openWs(base, path, consumer) {
  return new Promise((resolve) => {
    let settled = false;
    const state = tracker.add(new SubscriberState(consumer ?? 'anon'));
    const t = target(base, path, consumer);
    const ws = new WebSocket(`ws://${t.host}:${t.port}${t.path}`, { perMessageDeflate: false, handshakeTimeout: CONNECT_TIMEOUT_MS });
    const fail = (error) => {
      if (settled) return;
      settled = true;
      tracker.remove(state);
      resolve({ ok: false, error });
    };
    ws.on('unexpected-response', (_req, res) => {
      errorLabel(res, fail);
    });
    ws.on('open', () => {
      settled = true;
      streams.push({ state, close: () => ws.terminate() });
      resolve({ ok: true });
    });
    ws.on('message', (data) => {
      const at = now();
      const text = data.toString('latin1');
      const i = text.indexOf(MARK);
      if (i >= 0) tracker.record(state, text, i, at);
    });
    ws.on('error', (err) => fail(err.code ?? err.message));
    ws.on('close', () => {
      if (settled && !closing) drops++;
    });
  });
}

/** Runs `n` tasks with at most `concurrency` in flight. */
async function pool(n, concurrency, task) {
  let next = 0;
  const lanes = Array.from({ length: Math.max(1, Math.min(concurrency, n)) }, async (_, lane) => {
    while (next < n) await task(next++, lane);
  });
  await Promise.all(lanes);
}

/** Resumable subscribers of this process (`open` with `trackIds`). */
let resumables = [];

async function openResumable(base, path, consumer) {
  const sub = new Resumable(base, path, consumer);
  const r = await sub.connect();
  if (!r.ok) {
    tracker.remove(sub.state);
    return r;
  }
  resumables.push(sub);
  streams.push({ state: sub.state, close: () => sub.hangUp() });
  return r;
}

async function open({ transport, base, path, consumers, count, concurrency, trackIds }) {
  closing = false;
  const n = consumers?.length ?? count;
  const errors = {};
  let opened = 0;
  const t0 = now();
  await pool(n, concurrency, async (k) => {
    const consumer = consumers?.[k];
    const r =
      transport === 'ws'
        ? await openWs(base, path, consumer)
        : trackIds
          ? await openResumable(base, path, consumer)
          : await openSse(base, path, consumer);
    if (r.ok) opened++;
    else errors[r.error] = (errors[r.error] ?? 0) + 1;
  });
  return { opened, failed: n - opened, errors, ms: now() - t0 };
}

/**
 * The reconnect storm over this process's resumable subscribers: every
 * 1000/`rate` ms the next one (round robin) hangs up, and `offlineMs` later
 * connects again with `Last-Event-ID`: the id of the last event it received.
 * A subscriber still offline or reconnecting is skipped (counted). Measures,
 * per reconnect, connect → response head and connect → first message (and
 * whether that message was published before the reconnect: replayed).
 */
async function storm({ rate, durationMs, offlineMs }) {
  const head = new Histogram();
  const first = new Histogram();
  const firstReplayed = new Histogram();
  const errors = {};
  let started = 0;
  let reconnected = 0;
  let failures = 0;
  let skipped = 0;
  let noMessage = 0;
  const busy = new Set();
  const pending = new Set();
  const t0 = now();
  for (const sub of resumables) sub.auto = true;
  const cycle = (sub) =>
    new Promise((resolve) => {
      busy.add(sub);
      sub.offline = true;
      sub.hangUp();
      setTimeout(async () => {
        sub.offline = false;
        for (let attempt = 0; attempt < 40; attempt++) {
          const start = now();
          let firstTimer;
          const got = new Promise((done) => {
            sub.resume = {
              onFirst: (at, stamp) => {
                first.add(at - start);
                if (stamp < start) firstReplayed.add(at - start);
                done(true);
              },
            };
            firstTimer = setTimeout(() => done(false), CONNECT_TIMEOUT_MS);
          });
          const r = await sub.connect();
          if (r.ok) {
            head.add(now() - start);
            reconnected++;
            if (!(await got)) noMessage++;
            clearTimeout(firstTimer);
            sub.resume = undefined;
            break;
          }
          clearTimeout(firstTimer);
          sub.resume = undefined;
          failures++;
          errors[r.error] = (errors[r.error] ?? 0) + 1;
          await new Promise((res) => setTimeout(res, 250));
        }
        busy.delete(sub);
        resolve();
      }, offlineMs);
    });
  const subs = resumables;
  for (let k = 0; subs.length > 0; k++) {
    const due = t0 + (k * 1000) / rate;
    if (due - t0 >= durationMs) break;
    const wait = due - now();
    if (wait > 0) await new Promise((res) => setTimeout(res, wait));
    const sub = subs[k % subs.length];
    if (busy.has(sub)) {
      skipped++;
      continue;
    }
    started++;
    const p = cycle(sub).then(() => pending.delete(p));
    pending.add(p);
  }
  const scheduledMs = now() - t0;
  await Promise.all(pending);
  return {
    started,
    reconnected,
    failures,
    skipped,
    noMessage,
    errors,
    scheduledMs,
    ms: now() - t0,
    head: head.toJSON(),
    first: first.toJSON(),
    firstReplayed: firstReplayed.toJSON(),
    dropReconnects: subs.reduce((s, x) => s + x.dropReconnects, 0),
    gaps: subs.reduce((s, x) => s + x.gaps, 0),
    resets: subs.reduce((s, x) => s + x.resets, 0),
  };
}

async function closeAll() {
  closing = true;
  for (const s of streams) s.close();
  streams = [];
  resumables = [];
  tracker.subs = [];
  drops = 0;
  return {};
}

/**
 * Reconnect loop: each lane cycles through its own consumer ids, opening an
 * identified SSE stream, waiting for the response head (the stream is open),
 * and hanging up, until `durationMs` is over.
 */
async function churn({ base, path, consumers, concurrency, durationMs }) {
  const hist = new Histogram();
  const errors = {};
  let opens = 0;
  let failures = 0;
  const t0 = now();
  const deadline = t0 + durationMs;
  const lanes = Math.min(concurrency, consumers.length);
  await Promise.all(
    Array.from({ length: lanes }, async (_, lane) => {
      const mine = consumers.filter((_, k) => k % lanes === lane);
      for (let j = 0; now() < deadline; j++) {
        const consumer = mine[j % mine.length];
        const start = now();
        const r = await new Promise((resolve) => {
          const req = http.request({ ...target(base, path, consumer), headers: { accept: 'text/event-stream' }, agent: false });
          const timer = setTimeout(() => {
            req.destroy();
            resolve({ ok: false, error: 'connect timeout' });
          }, CONNECT_TIMEOUT_MS);
          req.on('response', (res) => {
            clearTimeout(timer);
            if (res.statusCode === 200) {
              res.destroy();
              resolve({ ok: true });
            } else errorLabel(res, (error) => resolve({ ok: false, error }));
          });
          req.on('error', (err) => {
            clearTimeout(timer);
            resolve({ ok: false, error: err.code ?? err.message });
          });
          req.end();
        });
        if (r.ok) {
          opens++;
          hist.add(now() - start);
        } else {
          failures++;
          errors[r.error] = (errors[r.error] ?? 0) + 1;
          await new Promise((res) => setTimeout(res, 10));
        }
      }
    }),
  );
  return { opens, failures, errors, ms: now() - t0, openLatency: hist.toJSON() };
}

/**
 * Long-poll loops: each consumer polls `?timeout=0` on its own keep-alive
 * connection until it has `m` messages of the current phase (or the deadline).
 * With `prime`, one poll each (declares the queues).
 */
async function longPoll({ base, path, consumers, m, phase, durationMs, concurrency, prime }) {
  const states = consumers.map((c) => new SubscriberState(c));
  if (!prime) {
    tracker.subs = [];
    tracker.expect(phase, m);
    for (const s of states) tracker.add(s);
  }
  const errors = {};
  let cycles = 0;
  let empty = 0;
  let failed = 0;
  const t0 = now();
  const deadline = t0 + durationMs;
  const agents = consumers.map(() => new http.Agent({ keepAlive: true, maxSockets: 1 }));
  const once = (k) =>
    new Promise((resolve) => {
      const req = http.request({ ...target(base, path, consumers[k], 'timeout=0'), agent: agents[k] }, (res) => {
        if (res.statusCode === 200) {
          res.setEncoding('latin1');
          let body = '';
          res.on('data', (c) => (body += c));
          res.on('end', () => {
            const i = body.indexOf(MARK);
            if (i >= 0) tracker.record(states[k], body, i, now());
            resolve('200');
          });
        } else if (res.statusCode === 204) {
          res.resume();
          res.on('end', () => resolve('204'));
        } else errorLabel(res, resolve);
      });
      req.setTimeout(CONNECT_TIMEOUT_MS, () => req.destroy(new Error('timeout')));
      req.on('error', (err) => resolve(err.code ?? err.message));
      req.end();
    });
  await pool(consumers.length, concurrency ?? consumers.length, async (k) => {
    do {
      const r = await once(k);
      cycles++;
      if (r === '204') empty++;
      else if (r !== '200') {
        failed++;
        errors[r] = (errors[r] ?? 0) + 1;
      }
      if (prime) return;
      // Nothing waiting yet (the publish is still being routed): do not spin.
      if (r !== '200') await new Promise((res) => setTimeout(res, 20));
    } while (states[k].unique < m && now() < deadline);
  });
  for (const a of agents) a.destroy();
  const report = prime ? {} : tracker.report({ drops: 0 });
  if (!prime) tracker.subs = [];
  return { ...report, cycles, empty, failed, errors, ms: now() - t0 };
}

const handlers = {
  open,
  close: closeAll,
  expect: ({ phase, m }) => {
    tracker.expect(phase, m);
    return {};
  },
  progress: () => ({ received: tracker.received, drops, open: streams.length }),
  /** Subscribers that received at least one message of the current phase (the readiness probes). */
  reached: () => ({ reached: tracker.subs.reduce((n, s) => n + (s.unique > 0 ? 1 : 0), 0), subs: tracker.subs.length }),
  storm,
  report: () => tracker.report({ drops, open: streams.length }),
  churn,
  longPoll,
  exit: () => {
    setImmediate(() => process.exit(0));
    return {};
  },
};

process.on('message', async (msg) => {
  try {
    const result = await handlers[msg.type](msg);
    process.send({ id: msg.id, ok: true, ...result });
  } catch (err) {
    process.send({ id: msg.id, ok: false, error: String(err?.stack ?? err) });
  }
});
process.on('disconnect', () => process.exit(0));
