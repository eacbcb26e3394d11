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

async function open({ transport, base, path, consumers, count, concurrency }) {
  closing = false;
  const n = consumers?.length ?? count;
  const errors = {};
  let opened = 0;
  const t0 = now();
  await pool(n, concurrency, async (k) => {
    const consumer = consumers?.[k];
    const r = transport === 'ws' ? await openWs(base, path, consumer) : await openSse(base, path, consumer);
    if (r.ok) opened++;
    else errors[r.error] = (errors[r.error] ?? 0) + 1;
  });
  return { opened, failed: n - opened, errors, ms: now() - t0 };
}

async function closeAll() {
  closing = true;
  for (const s of streams) s.close();
  streams = [];
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
