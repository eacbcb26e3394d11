// The clock: the time, published to /clock every second, shown live by a
// page over Server-Sent Events (sse.html) and one over WebSocket (ws.html).
//
//   node examples/clock/server.mjs
//
// It starts three things: a Warren gateway (embedded broker) on GATEWAY_PORT
// (4100), a small server for the pages on PORT (4101), and the producer that
// publishes the time. Both servers listen on 127.0.0.1; a port of 0 picks a
// free one. It prints the page URLs; Ctrl-C stops it.
//
//   WARREN_AMQP_URL=amqp://guest:guest@localhost:5672   the gateway runs on RabbitMQ
//   WARREN_URL=http://127.0.0.1:4000 WARREN_PUBLISH_TOKEN=...
//       no gateway of its own: publish to, and point the pages at, a gateway
//       that is already running (start it with --cors-origins http://127.0.0.1:4101)
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { createGateway } from '@warren/gateway';
import { Producer } from '@warren/producer';

const HOST = '127.0.0.1';

// The pages. They are templates: __WARREN_GATEWAY__ becomes the gateway's URL.
const pages = createServer(async (req, res) => {
  const path = new URL(req.url ?? '/', 'http://x').pathname;
  const file = { '/': 'sse.html', '/sse.html': 'sse.html', '/ws.html': 'ws.html' }[path];
  if (req.method !== 'GET' || file === undefined) {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    return;
  }
  const html = await readFile(new URL(file, import.meta.url), 'utf8');
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(html.replaceAll('__WARREN_GATEWAY__', gatewayUrl));
});
await new Promise((resolve, reject) => pages.once('error', reject).listen(Number(process.env.PORT ?? 4101), HOST, resolve));
const pagesUrl = `http://${HOST}:${pages.address().port}`;

// The gateway. The pages come from another port, so their origin must be
// allowed to read channels cross-origin (EventSource uses CORS).
let gateway;
let gatewayUrl = process.env.WARREN_URL || undefined;
let token = process.env.WARREN_PUBLISH_TOKEN;
if (gatewayUrl === undefined) {
  token = randomBytes(24).toString('base64url');
  gateway = createGateway({
    port: Number(process.env.GATEWAY_PORT ?? 4100),
    host: HOST,
    amqpUrl: process.env.WARREN_AMQP_URL || undefined,
    publishToken: token,
    corsOrigins: `${pagesUrl},http://localhost:${pages.address().port}`,
    logLevel: process.env.WARREN_LOG_LEVEL || 'warn',
  });
  gatewayUrl = `http://${HOST}:${(await gateway.listen()).port}`;
}

// The producer: straight to RabbitMQ when there is one, else through the
// gateway's publish endpoint (the only way into the embedded broker).
const producer = new Producer({ url: process.env.WARREN_AMQP_URL || gatewayUrl, token, timeoutMs: 2000 });
let timer;
let failing = false;
async function tick() {
  // On the next second. A timer may fire a millisecond before the second it
  // was set for: then the next one is a second away, not a millisecond.
  const untilNext = 1000 - (Date.now() % 1000);
  timer = setTimeout(tick, untilNext < 100 ? untilNext + 1000 : untilNext);
  try {
    await producer.publish(new Date().toISOString()).to('/clock');
    if (failing) console.log('clock: publishing again');
    failing = false;
  } catch (err) {
    // The gateway may be restarting: keep the beat, say so once.
    if (!failing) console.error(`clock: could not publish (${err.code ?? err.message}); retrying every second`);
    failing = true;
  }
}
void tick();

console.log(
  `gateway: ${gatewayUrl}${gateway === undefined ? ' (external)' : process.env.WARREN_AMQP_URL ? ' (RabbitMQ)' : ' (embedded broker)'}`,
);
console.log(`clock: ${pagesUrl}/sse.html`);
console.log(`clock: ${pagesUrl}/ws.html`);

async function stop() {
  clearTimeout(timer);
  pages.close();
  pages.closeAllConnections();
  await producer.close();
  await gateway?.close();
  process.exit(0);
}
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
