// The echo handler of the Rack push proposal: every WebSocket message on
// /echo is answered with "echo: <message>" (a binary message comes back as
// it was). A plain node:http app serves the page.
//
//   node examples/embedded/echo.mjs        then open http://127.0.0.1:4402/
//
//   PORT=0            pick a free port (default 4402)
import { createServer } from 'node:http';
import { pathToFileURL } from 'node:url';
import { createGateway } from '@warren/gateway';

/** Answers each message once. */
export const echo = {
  onMessage(conn, data) {
    conn.write(typeof data === 'string' ? `echo: ${data}` : data);
  },
};

const PAGE = `<!doctype html>
<meta charset="utf-8"><title>Echo</title>
<h1>Echo</h1>
<form><input name="text" autocomplete="off" autofocus> <button>Send</button></form>
<ul id="log"></ul>
<script>
  const ws = new WebSocket(location.origin.replace('http', 'ws') + '/echo');
  ws.onmessage = (e) => document.getElementById('log').append(Object.assign(document.createElement('li'), { textContent: e.data }));
  document.querySelector('form').onsubmit = (e) => {
    e.preventDefault();
    ws.send(e.target.text.value);
    e.target.text.value = '';
  };
</script>
`;

/** Starts the app; resolves with its URL and a `close()`. */
export async function start({ port = 4402, host = '127.0.0.1', logLevel = 'warn' } = {}) {
  const server = createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/') res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(PAGE);
    else res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
  });
  // WebSocket only: an EventSource cannot send anything to echo.
  const gateway = createGateway({
    server,
    logLevel,
    onUpgrade: ({ kind, path }) => (kind === 'websocket' && path === '/echo' ? echo : undefined),
  });
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
  const app = await start({ port: Number(process.env.PORT ?? 4402) });
  console.log(`echo on ${app.url}/ (the socket: ${app.url.replace('http', 'ws')}/echo)`);
  process.once('SIGINT', () => app.close().then(() => process.exit(0)));
  process.once('SIGTERM', () => app.close().then(() => process.exit(0)));
}
