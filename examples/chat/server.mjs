// A chat room: open http://127.0.0.1:4201/rooms/<name>?name=<you>; the room
// is the path. Everyone in a room sees everyone's messages, joins and leaves.
//
//   node examples/chat/server.mjs
//
// It starts a Warren gateway (embedded broker) on GATEWAY_PORT (4200) and the
// chat's app server on PORT (4201), both on 127.0.0.1 (0 picks a free port).
// A browser reads its room from the gateway (EventSource on /rooms/<name>) but
// cannot publish there: it POSTs to the app server, which checks the input
// and publishes with the producer SDK. Ctrl-C stops it.
//
//   POST /rooms/<name>/join      {"name"}          → event "join"    {name, members, at}
//   POST /rooms/<name>/leave     {"name"}          → event "leave"   {name, members, at}  (sent by sendBeacon)
//   POST /rooms/<name>/messages  {"name", "text"}  → event "message" {name, text, at}
//
//   WARREN_AMQP_URL=amqp://guest:guest@localhost:5672   the gateway runs on RabbitMQ
//   WARREN_URL=http://127.0.0.1:4000 WARREN_PUBLISH_TOKEN=...   use a running gateway
//       (started with --cors-origins http://127.0.0.1:4201)
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { createGateway } from '@warren/gateway';
import { Producer } from '@warren/producer';

const HOST = '127.0.0.1';
const ROOM_PATH = /^\/rooms\/([A-Za-z0-9_-]{1,64})(?:\/(join|leave|messages))?$/;
const MAX_BODY = 4096;

/** Who is in each room: room → name → open pages. Kept in memory. */
const rooms = new Map();

function members(room, name, delta) {
  const people = rooms.get(room) ?? new Map();
  const count = (people.get(name) ?? 0) + delta;
  if (count > 0) people.set(name, count);
  else people.delete(name);
  if (people.size > 0) rooms.set(room, people);
  else rooms.delete(room);
  return [...people.keys()].sort();
}

const app = createServer((req, res) => {
  handle(req, res).catch((err) => {
    const status = err.status ?? 502;
    if (status === 502) console.error(`chat: could not publish (${err.code ?? err.message})`);
    res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' }).end(`${status === 502 ? 'could not publish' : err.message}\n`);
  });
});

async function handle(req, res) {
  const url = new URL(req.url ?? '/', 'http://x');
  if (url.pathname === '/') {
    res.writeHead(302, { location: '/rooms/lobby' }).end();
    return;
  }
  const match = ROOM_PATH.exec(url.pathname);
  if (match === null) throw httpError(404, 'not found; rooms are /rooms/<letters, digits, _ or ->');
  const [channel, room, action] = [`/rooms/${match[1]}`, match[1], match[2]];
  if (action === undefined) {
    if (req.method !== 'GET') throw httpError(405, 'use GET');
    const html = await readFile(new URL('room.html', import.meta.url), 'utf8');
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(html.replaceAll('__WARREN_GATEWAY__', gatewayUrl));
    return;
  }
  if (req.method !== 'POST') throw httpError(405, 'use POST');
  // Only this site's own pages may post (a browser says where a request comes from).
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin') throw httpError(403, 'cross-site request');
  const body = await readJson(req);
  const name = typeof body.name === 'string' ? body.name.trim() : '';
  if (name.length === 0 || name.length > 32) throw httpError(400, 'name: 1 to 32 characters');
  const at = new Date().toISOString();
  if (action === 'messages') {
    const text = typeof body.text === 'string' ? body.text.trim() : '';
    if (text.length === 0 || text.length > 500) throw httpError(400, 'text: 1 to 500 characters');
    await producer.publish({ name, text, at }, { event: 'message' }).to(channel);
  } else {
    const list = members(room, name, action === 'join' ? 1 : -1);
    await producer.publish({ name, members: list, at }, { event: action }).to(channel);
  }
  res.writeHead(204).end();
}

function httpError(status, message) {
  return Object.assign(new Error(message), { status });
}

async function readJson(req) {
  let text = '';
  for await (const chunk of req) {
    text += chunk;
    if (text.length > MAX_BODY) throw httpError(413, `at most ${MAX_BODY} bytes`);
  }
  try {
    const value = JSON.parse(text);
    if (value !== null && typeof value === 'object') return value;
  } catch {
    // answered below
  }
  throw httpError(400, 'the body is a JSON object');
}

await new Promise((resolve, reject) => app.once('error', reject).listen(Number(process.env.PORT ?? 4201), HOST, resolve));
const appUrl = `http://${HOST}:${app.address().port}`;

// The gateway, allowing the app's pages to read rooms cross-origin.
let gateway;
let gatewayUrl = process.env.WARREN_URL || undefined;
let token = process.env.WARREN_PUBLISH_TOKEN;
if (gatewayUrl === undefined) {
  token = randomBytes(24).toString('base64url');
  gateway = createGateway({
    port: Number(process.env.GATEWAY_PORT ?? 4200),
    host: HOST,
    amqpUrl: process.env.WARREN_AMQP_URL || undefined,
    publishToken: token,
    corsOrigins: `${appUrl},http://localhost:${app.address().port}`,
    logLevel: process.env.WARREN_LOG_LEVEL || 'warn',
  });
  gatewayUrl = `http://${HOST}:${(await gateway.listen()).port}`;
}
const producer = new Producer({ url: process.env.WARREN_AMQP_URL || gatewayUrl, token, timeoutMs: 5000 });

console.log(
  `gateway: ${gatewayUrl}${gateway === undefined ? ' (external)' : process.env.WARREN_AMQP_URL ? ' (RabbitMQ)' : ' (embedded broker)'}`,
);
console.log(`chat: ${appUrl}/rooms/lobby`);

async function stop() {
  app.close();
  app.closeAllConnections();
  await producer.close();
  await gateway?.close();
  process.exit(0);
}
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
