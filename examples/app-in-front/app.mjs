// The application behind the gateway: a plain `node:http` app with a login
// cookie, a chat room and a private channel per user. Browsers never reach it
// directly: they talk to the Warren gateway, which proxies the pages here,
// asks GET /warren/auth before each subscription, and turns each WebSocket
// `send` into a POST /live/... here. The app publishes with the producer SDK.
//
//   node examples/app-in-front/run.mjs         the app and a gateway in front of it (one command)
//
// or by hand, as two processes (the app first, then the gateway in front):
//
//   export WARREN_PUBLISH_TOKEN=$(node -e "console.log(require('crypto').randomBytes(24).toString('base64url'))")
//   PORT=3000 WARREN_URL=http://127.0.0.1:4000 node examples/app-in-front/app.mjs &
//   npx warren serve --host 127.0.0.1 --port 4000 --upstream http://127.0.0.1:3000 \
//       --push-routes /live/ --auth-url http://127.0.0.1:3000/warren/auth
//   open http://127.0.0.1:4000/
//
// Routes:
//   GET  /                    login page (a name; no password: it is a demo)
//   POST /login               sets the session cookie (HttpOnly, SameSite=Lax), 303 → /chat
//   POST /logout              ends the session, 303 → /
//   GET  /chat                the chat page (one warren.v1 WebSocket to /_warren/ws)
//   GET  /warren/auth         for the gateway: 401 without a session, 403 for a
//                             channel that is not yours, else 204 + Warren-Consumer-Id
//   POST /live/rooms/<room>   from the gateway (a WebSocket `send`): {"text"} → event "chat"
//                             to the room, or "/msg <name> <text>" → event "direct" to
//                             both users' private channels
//   POST /live/users/<you>    from the gateway: {"hello":true,"room"} → a welcome "notice"
//                             on your private channel; the answer holds the room's history
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { pathToFileURL } from 'node:url';
import { Producer } from '@warren/producer';

const LOGIN_HTML = readFileSync(new URL('login.html', import.meta.url), 'utf8');
const CHAT_HTML = readFileSync(new URL('chat.html', import.meta.url), 'utf8');

const SESSION_COOKIE = 'sid';
const SESSION_MS = 8 * 60 * 60 * 1000;
/** A user name is a channel segment and a consumer id: lower-case letters, digits, _ and -. */
const NAME = /^[a-z0-9][a-z0-9_-]{0,23}$/;
const ROOM_CHANNEL = /^\/live\/rooms\/([a-z0-9_-]{1,32})$/;
const USER_CHANNEL = /^\/live\/users\/([a-z0-9_-]{1,24})$/;
const MAX_BODY = 4096;
const MAX_TEXT = 500;
const HISTORY = 50;
/** At most this many messages per user per window. */
const RATE = { count: 20, windowMs: 10_000 };

class HttpError extends Error {
  constructor(status, message, headers = {}) {
    super(message);
    this.status = status;
    this.headers = headers;
  }
}

/**
 * The chat application. `useProducer()` gives it the producer once the
 * gateway's URL is known (run.mjs starts the app first, so that the gateway
 * can point at it); until then publishing answers 503.
 */
export function createApp({ log = (line) => console.error(line) } = {}) {
  /** session id → { user, until } */
  const sessions = new Map();
  /** room → its last messages */
  const history = new Map();
  /** user → times of their last messages */
  const sent = new Map();
  let producer;

  function sessionOf(req) {
    const sid = readCookie(req.headers.cookie, SESSION_COOKIE);
    if (sid === undefined) return undefined;
    const session = sessions.get(sid);
    if (session === undefined) return undefined;
    if (session.until < Date.now()) {
      sessions.delete(sid);
      return undefined;
    }
    return { sid, user: session.user };
  }

  function signedIn() {
    const now = Date.now();
    return [...new Set([...sessions.values()].filter((s) => s.until >= now).map((s) => s.user))].sort();
  }

  async function publish(data, options, channels) {
    if (producer === undefined) throw new HttpError(503, 'the app is not connected to the gateway yet');
    try {
      await producer.publish(data, options).to(channels);
    } catch (err) {
      log(`app: could not publish to ${channels} (${err.code ?? err.message})`);
      throw new HttpError(503, 'could not publish; try again');
    }
  }

  /**
   * Who sent a message: only the gateway's `Warren-Identity` says so: the
   * identity this app's auth endpoint vouched for (the gateway drops that
   * header from clients, and sends it only when someone vouched). The session
   * cookie, which comes along, must still be that user's: a logout takes
   * effect at once, whatever the gateway cached. The body never names the sender.
   */
  function sender(req) {
    const identity = req.headers['warren-identity'];
    if (typeof identity !== 'string' || identity === '') throw new HttpError(401, "messages come through the gateway's WebSocket");
    const session = sessionOf(req);
    if (session === undefined || session.user !== identity) throw new HttpError(401, 'your session has ended; log in again');
    return identity;
  }

  function rateLimit(user) {
    const now = Date.now();
    const recent = (sent.get(user) ?? []).filter((t) => t > now - RATE.windowMs);
    if (recent.length >= RATE.count) throw new HttpError(429, 'slow down: too many messages');
    recent.push(now);
    sent.set(user, recent);
  }

  async function handle(req, res) {
    const url = new URL(req.url ?? '/', 'http://app');
    const path = url.pathname;
    const method = req.method ?? 'GET';

    if (path === '/warren/auth') return auth(req, res);

    let m;
    if ((m = ROOM_CHANNEL.exec(path)) !== null) {
      allow(method, 'POST');
      return roomMessage(req, res, m[1]);
    }
    if ((m = USER_CHANNEL.exec(path)) !== null) {
      allow(method, 'POST');
      return userMessage(req, res, m[1]);
    }

    switch (path) {
      case '/': {
        allow(method, 'GET');
        if (sessionOf(req) !== undefined) return redirect(res, '/chat');
        return page(res, LOGIN_HTML, {
          error: url.searchParams.has('bad') ? 'A name is 1 to 24 of a-z, 0-9, _ and -, starting with a letter or digit.' : '',
        });
      }
      case '/login': {
        allow(method, 'POST');
        sameOrigin(req);
        const form = new URLSearchParams(await readBody(req, 'application/x-www-form-urlencoded'));
        const name = (form.get('name') ?? '').trim().toLowerCase();
        if (!NAME.test(name)) return redirect(res, '/?bad');
        const old = sessionOf(req);
        if (old !== undefined) sessions.delete(old.sid);
        const sid = randomBytes(24).toString('base64url');
        sessions.set(sid, { user: name, until: Date.now() + SESSION_MS });
        const secure = req.headers['x-forwarded-proto'] === 'https' ? '; Secure' : '';
        res.setHeader('set-cookie', `${SESSION_COOKIE}=${sid}; Path=/; HttpOnly; SameSite=Lax; Max-Age=${SESSION_MS / 1000}${secure}`);
        return redirect(res, '/chat');
      }
      case '/logout': {
        allow(method, 'POST');
        sameOrigin(req);
        const session = sessionOf(req);
        if (session !== undefined) sessions.delete(session.sid);
        res.setHeader('set-cookie', `${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0`);
        return redirect(res, '/');
      }
      case '/chat': {
        allow(method, 'GET');
        const session = sessionOf(req);
        if (session === undefined) return redirect(res, '/');
        return page(res, CHAT_HTML, { user: session.user });
      }
      case '/favicon.ico':
        res.writeHead(204).end();
        return;
      default:
        throw new HttpError(404, `no page ${path}`);
    }
  }

  /** GET /warren/auth, asked by the gateway before each subscription (and send). */
  function auth(req, res) {
    const session = sessionOf(req);
    const headers = { 'cache-control': 'no-store', 'content-type': 'text/plain; charset=utf-8' };
    if (session === undefined) return void res.writeHead(401, headers).end('log in first\n');
    const channel = String(req.headers['warren-channel'] ?? '');
    const own = USER_CHANNEL.exec(channel);
    const allowed = ROOM_CHANNEL.test(channel) || (own !== null && own[1] === session.user);
    if (!allowed) return void res.writeHead(403, headers).end('not your channel\n');
    // The identity owns the consumer's queues: "<user>" or "<user>/<the id the client chose>".
    res.writeHead(204, { ...headers, 'warren-consumer-id': session.user }).end();
  }

  /** A chat message (or a direct message) from a WebSocket `send` to /live/rooms/<room>. */
  async function roomMessage(req, res, room) {
    const user = sender(req);
    const body = await readJson(req);
    const text = cleanText(body.text);
    rateLimit(user);
    const at = new Date().toISOString();
    const direct = /^\/msg\s+(\S+)\s+([\s\S]+)$/.exec(text);
    if (direct !== null) {
      const to = direct[1].toLowerCase();
      if (!NAME.test(to) || !signedIn().includes(to)) throw new HttpError(404, `nobody called ${direct[1]} is signed in`);
      const message = { id: randomUUID(), from: user, to, text: direct[2].trim(), at };
      await publish(message, { event: 'direct', id: message.id }, [...new Set([`/live/users/${to}`, `/live/users/${user}`])]);
      return json(res, 200, { id: message.id, direct: to });
    }
    if (text.startsWith('/')) throw new HttpError(400, 'unknown command; try /msg <name> <text>');
    const message = { id: randomUUID(), from: user, text, at };
    await publish(message, { event: 'chat', id: message.id }, `/live/rooms/${room}`);
    const kept = history.get(room) ?? [];
    kept.push(message);
    if (kept.length > HISTORY) kept.shift();
    history.set(room, kept);
    res.writeHead(204).end();
  }

  /** `{"hello":true,"room"}` to your own channel: a welcome notice there, and the room's history in the answer. */
  async function userMessage(req, res, name) {
    const user = sender(req);
    if (name !== user) throw new HttpError(403, 'not your channel');
    const body = await readJson(req);
    if (body.hello !== true) throw new HttpError(400, 'send {"hello":true,"room":"<room>"}');
    const room = typeof body.room === 'string' && /^[a-z0-9_-]{1,32}$/.test(body.room) ? body.room : 'lobby';
    const others = signedIn().filter((u) => u !== user);
    const text = `Welcome, ${user}. ${others.length === 0 ? 'Nobody else is signed in yet.' : `Also signed in: ${others.join(', ')}.`} Type /msg <name> <text> for a private message.`;
    await publish({ text, at: new Date().toISOString() }, { event: 'notice' }, `/live/users/${user}`);
    return json(res, 200, { room, history: history.get(room) ?? [] });
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err) => {
      const status = err instanceof HttpError ? err.status : 500;
      if (status === 500) log(`app: ${err.stack ?? err}`);
      if (res.headersSent) return void res.destroy();
      json(res, status, { error: status === 500 ? 'internal error' : err.message }, err.headers);
      // A body we refused is not read: drop the connection once answered.
      if (!req.complete) res.once('finish', () => req.destroy());
    });
  });

  return {
    server,
    useProducer(p) {
      producer = p;
    },
  };
}

function allow(method, expected) {
  if (method !== expected) throw new HttpError(405, `use ${expected}`, { allow: expected });
}

/** Forms may only be posted by this site's own pages (login CSRF). */
function sameOrigin(req) {
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin' && site !== 'none') throw new HttpError(403, 'cross-site request');
  const origin = req.headers.origin;
  if (origin === undefined) return;
  // Behind the gateway, X-Forwarded-Host is the host the browser asked for.
  const host = req.headers['x-forwarded-host'] ?? req.headers.host;
  let ok = false;
  try {
    ok = new URL(origin).host === host;
  } catch {
    // not a URL: refused below
  }
  if (!ok) throw new HttpError(403, 'cross-site request');
}

async function readBody(req, type) {
  const contentType = String(req.headers['content-type'] ?? '')
    .split(';')[0]
    .trim()
    .toLowerCase();
  if (contentType !== type) throw new HttpError(415, `send ${type}`);
  if (Number(req.headers['content-length'] ?? 0) > MAX_BODY) throw new HttpError(413, `at most ${MAX_BODY} bytes`);
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > MAX_BODY) throw new HttpError(413, `at most ${MAX_BODY} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

async function readJson(req) {
  const text = await readBody(req, 'application/json');
  try {
    const value = JSON.parse(text);
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) return value;
  } catch {
    // answered below
  }
  throw new HttpError(400, 'the body is a JSON object');
}

function cleanText(value) {
  // Control characters out (they would only garble the page), then trimmed.
  const text = typeof value === 'string' ? value.replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, ' ').trim() : '';
  if (text.length === 0 || [...text].length > MAX_TEXT) throw new HttpError(400, `text: 1 to ${MAX_TEXT} characters`);
  return text;
}

function readCookie(header, name) {
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

/** An HTML page with its placeholders filled in, an inline script allowed by nonce only. */
function page(res, template, values) {
  const nonce = randomBytes(16).toString('base64');
  let html = template.replaceAll('__NONCE__', nonce);
  for (const [key, value] of Object.entries(values)) html = html.replaceAll(`__${key.toUpperCase()}__`, escapeHtml(value));
  res.writeHead(200, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    'content-security-policy': `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'`,
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'same-origin',
  });
  res.end(html);
}

function redirect(res, location) {
  res.writeHead(303, { location, 'cache-control': 'no-store' }).end();
}

function json(res, status, body, headers = {}) {
  res
    .writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', ...headers })
    .end(JSON.stringify(body));
}

// Run by itself: `PORT=3000 WARREN_URL=http://127.0.0.1:4000 WARREN_PUBLISH_TOKEN=... node app.mjs`
// (or WARREN_AMQP_URL to publish straight to RabbitMQ). It listens on HOST
// (127.0.0.1): only the gateway may reach it. docker-compose.yml sets
// HOST=0.0.0.0 inside the stack's network and publishes no port of it.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const amqpUrl = process.env.WARREN_AMQP_URL || undefined;
  const token = process.env.WARREN_PUBLISH_TOKEN || undefined;
  if (amqpUrl === undefined && token === undefined) {
    console.error("app: set WARREN_PUBLISH_TOKEN (the gateway's --publish-token) or WARREN_AMQP_URL");
    process.exit(2);
  }
  const host = process.env.HOST || '127.0.0.1';
  const app = createApp();
  const producer = new Producer({ url: amqpUrl ?? (process.env.WARREN_URL || 'http://127.0.0.1:4000'), token, timeoutMs: 5000 });
  app.useProducer(producer);
  await new Promise((resolve, reject) => app.server.once('error', reject).listen(Number(process.env.PORT ?? 3000), host, resolve));
  console.log(`app: http://${host}:${app.server.address().port} (browsers go through the gateway in front of it)`);
  const stop = async () => {
    app.server.close();
    app.server.closeAllConnections();
    await producer.close();
    process.exit(0);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
