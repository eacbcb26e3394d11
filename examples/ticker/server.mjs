// A stock ticker: a producer job publishes random-walk prices to /stocks and
// a page shows them in a live table, over WebSocket with the warren.v1
// protocol (JSON frames that carry the event name).
//
//   node examples/ticker/server.mjs
//
// It starts a Warren gateway (embedded broker) on GATEWAY_PORT (4300), a small
// server for the page on PORT (4301), both on 127.0.0.1 (0 picks a free port),
// and job.mjs as a child process, the way a separate backend job would run.
// INTERVAL_MS and SYMBOLS are passed on to the job. Ctrl-C stops all three.
//
//   WARREN_AMQP_URL=amqp://guest:guest@localhost:5672   the gateway (and the job) on RabbitMQ
//   WARREN_URL=http://127.0.0.1:4000 WARREN_PUBLISH_TOKEN=...   use a running gateway
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { fileURLToPath } from 'node:url';
import { createGateway } from '@warren/gateway';

const HOST = '127.0.0.1';

const pages = createServer(async (req, res) => {
  if (req.method !== 'GET' || new URL(req.url ?? '/', 'http://x').pathname !== '/') {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    return;
  }
  const html = await readFile(new URL('index.html', import.meta.url), 'utf8');
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(html.replaceAll('__WARREN_GATEWAY__', gatewayUrl));
});
await new Promise((resolve, reject) => pages.once('error', reject).listen(Number(process.env.PORT ?? 4301), HOST, resolve));
const pagesUrl = `http://${HOST}:${pages.address().port}`;

// WebSockets are not subject to CORS; corsOrigins is for EventSource readers.
let gateway;
let gatewayUrl = process.env.WARREN_URL || undefined;
let token = process.env.WARREN_PUBLISH_TOKEN;
if (gatewayUrl === undefined) {
  token = randomBytes(24).toString('base64url');
  gateway = createGateway({
    port: Number(process.env.GATEWAY_PORT ?? 4300),
    host: HOST,
    amqpUrl: process.env.WARREN_AMQP_URL || undefined,
    publishToken: token,
    corsOrigins: `${pagesUrl},http://localhost:${pages.address().port}`,
    logLevel: process.env.WARREN_LOG_LEVEL || 'warn',
  });
  gatewayUrl = `http://${HOST}:${(await gateway.listen()).port}`;
}

// The job is its own process; it publishes through this gateway (or straight
// to RabbitMQ when WARREN_AMQP_URL is set).
const job = spawn(process.execPath, [fileURLToPath(new URL('job.mjs', import.meta.url))], {
  env: { ...process.env, WARREN_URL: gatewayUrl, WARREN_PUBLISH_TOKEN: token },
  stdio: ['ignore', 'inherit', 'inherit'],
});
let stopping = false;
job.once('exit', (code, signal) => {
  if (stopping) return;
  console.error(`ticker: the job stopped (${signal ?? `exit code ${code}`})`);
  void stop(1);
});

console.log(
  `gateway: ${gatewayUrl}${gateway === undefined ? ' (external)' : process.env.WARREN_AMQP_URL ? ' (RabbitMQ)' : ' (embedded broker)'}`,
);
console.log(`ticker: ${pagesUrl}/`);

async function stop(code = 0) {
  stopping = true;
  if (job.exitCode === null && job.signalCode === null) {
    job.kill('SIGTERM');
    await once(job, 'exit');
  }
  pages.close();
  pages.closeAllConnections();
  await gateway?.close();
  process.exit(code);
}
process.once('SIGINT', () => stop());
process.once('SIGTERM', () => stop());
