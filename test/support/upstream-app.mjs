// A small real web application for the tests of "the app in front": a login
// cookie, an auth endpoint for Warren, an echo, a slow page, a large page.
// Run as its own process: `node test/support/upstream-app.mjs` prints its port.
import { createServer } from 'node:http';
import { WebSocketServer } from 'ws';

let authCalls = 0;
const revoked = new Set();
let lastAuthHeaders = null;
const sessionOf = (req) => /(?:^|;\s*)session=([a-z0-9]+)/.exec(req.headers.cookie ?? '')?.[1];

const server = createServer(async (req, res) => {
  const url = new URL(req.url ?? '/', 'http://app');
  const user = sessionOf(req);
  const path = url.pathname;
  if (path === '/revoke') {
    revoked.add(url.searchParams.get('user'));
    res.writeHead(204).end();
  } else if (path === '/login') {
    res.writeHead(204, { 'set-cookie': `session=${url.searchParams.get('user')}; Path=/; HttpOnly` }).end();
  } else if (path.startsWith('/warren/auth')) {
    authCalls++;
    lastAuthHeaders = req.headers;
    const channel = String(req.headers['warren-channel'] ?? '');
    if (path === '/warren/auth-broken') return void res.writeHead(500).end('oops');
    if (path === '/warren/auth-slow') return void setTimeout(() => res.writeHead(204).end(), 3000);
    if (path === '/warren/auth-bad-identity') return void res.writeHead(204, { 'warren-consumer-id': 'not valid!' }).end();
    if (user === undefined) return void res.writeHead(401).end('log in first');
    if (revoked.has(user)) return void res.writeHead(403).end('revoked');
    if (channel === '/live/forbidden') return void res.writeHead(403).end('no');
    if (channel.startsWith('/live/users/') && channel !== `/live/users/${user}`) return void res.writeHead(403).end('not yours');
    res.writeHead(204, { 'warren-consumer-id': user }).end();
  } else if (path === '/echo' || path === '/live/echo' || path.startsWith('/api/')) {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const body = Buffer.concat(chunks).toString();
    res.writeHead(200, { 'content-type': 'application/json', connection: 'x-app-hop', 'x-app-hop': 'must not pass', 'x-app': 'yes' });
    res.end(JSON.stringify({ method: req.method, url: req.url, headers: req.headers, body, user: user ?? null }));
  } else if (path === '/live/empty') {
    for await (const _ of req);
    res.writeHead(204).end();
  } else if (path === '/slow') {
    setTimeout(() => res.writeHead(200).end('late'), 3000);
  } else if (path === '/big') {
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    const chunk = Buffer.alloc(64 * 1024, 'z');
    for (let i = 0; i < 80; i++) if (!res.write(chunk)) await new Promise((r) => res.once('drain', r));
    res.end();
  } else if (path === '/stats') {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ authCalls, lastAuthHeaders }));
  } else {
    res.writeHead(404, { 'content-type': 'text/plain' }).end(`app page ${path}`);
  }
});
// The app's own WebSocket (not a Warren channel): echoes, and says what headers it saw.
const sockets = new WebSocketServer({ server, path: '/app-ws' });
sockets.on('connection', (ws, req) => {
  ws.send(
    JSON.stringify({
      hello: true,
      forwardedFor: req.headers['x-forwarded-for'] ?? null,
      identity: req.headers['warren-consumer-id'] ?? null,
    }),
  );
  ws.on('message', (data) => ws.send(`echo: ${data}`));
});

server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => console.log(`app on ${server.address().port}`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
