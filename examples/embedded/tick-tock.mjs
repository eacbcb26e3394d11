// The "flying fish" clock of the Rack push proposal, as a plain node:http app
// with Warren embedded: the app serves its page, and a TickTock handler writes
// the time to each connection on /clock (SSE or WebSocket) every second. No
// broker is involved: the handler writes to its own connection.
//
//   node examples/embedded/tick-tock.mjs        then open http://127.0.0.1:4401/
//
//   PORT=0            pick a free port (default 4401)
//   TICK_MS=250       tick faster (default 1000)
import { createServer } from 'node:http';
import { pathToFileURL } from 'node:url';
import { createGateway } from '@warren/gateway';

/** Writes the time when the connection opens and every `intervalMs`; stops when it closes. */
export class TickTock {
  constructor(intervalMs = 1000) {
    this.intervalMs = intervalMs;
    this.ticks = 0;
  }

  onOpen(conn) {
    const tick = () => conn.write(JSON.stringify({ tick: ++this.ticks, time: new Date().toISOString() }));
    tick();
    this.timer = setInterval(tick, this.intervalMs);
  }

  onClose() {
    clearInterval(this.timer);
  }
}

const PAGE = `<!doctype html>
<meta charset="utf-8"><title>TickTock</title>
<h1>TickTock</h1>
<p>Over Server-Sent Events: <output id="sse">…</output></p>
<p>Over WebSocket: <output id="ws">…</output></p>
<script>
  const show = (id) => (text) => (document.getElementById(id).textContent = JSON.parse(text).time);
  new EventSource('/clock').onmessage = (e) => show('sse')(e.data);
  const ws = new WebSocket(location.origin.replace('http', 'ws') + '/clock');
  ws.onmessage = (e) => show('ws')(e.data);
</script>
`;

/** Starts the app; resolves with its URL and a `close()`. */
export async function start({ port = 4401, host = '127.0.0.1', intervalMs = 1000, logLevel = 'warn' } = {}) {
  const server = createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/') res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(PAGE);
    else res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
  });
  // The upgrade decision: /clock gets a TickTock, anything else is the app's (404 above).
  const gateway = createGateway({ server, logLevel, onUpgrade: ({ path }) => (path === '/clock' ? new TickTock(intervalMs) : undefined) });
  await new Promise((resolve) => server.listen(port, host, resolve));
  const url = `http://${host}:${server.address().port}`;
  return {
    url,
    gateway,
    async close() {
      await gateway.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const app = await start({ port: Number(process.env.PORT ?? 4401), intervalMs: Number(process.env.TICK_MS ?? 1000) });
  console.log(`tick-tock on ${app.url}/ (the clock: ${app.url}/clock)`);
  process.once('SIGINT', () => app.close().then(() => process.exit(0)));
  process.once('SIGTERM', () => app.close().then(() => process.exit(0)));
}
