// `hone serve`: the renderer and the lab API over HTTP + WebSocket on 127.0.0.1, so the same UI runs
// in a browser (tests here, a headless GPU box). Every request needs the random token printed at
// start (a cookie set by the first page load, a Bearer header, or ?token=); without it: 401. Paths
// given to the API must lie in the folders shared with the server; others: 403.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { createReadStream, existsSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { extname, join, normalize } from 'node:path';
import { WebSocketServer } from 'ws';
import { LAB_METHODS, type Lab, type LabApi } from '../lab/api.js';
import { PathPolicy, PathRefused, callConfined } from '../lab/path-policy.js';

export interface ServeOptions {
  lab: Lab;
  port?: number;
  /** folders whose files the API may read (the user's choice), besides the lab's own data folder */
  allow: string[];
  /** the built renderer (out/renderer) */
  staticDir?: string;
  token?: string;
}

export interface Served {
  server: Server;
  url: string;
  token: string;
  close(): Promise<void>;
}

const TYPES: Record<string, string> = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml', '.png': 'image/png', '.json': 'application/json' };

function tokenOf(req: IncomingMessage): string | null {
  const url = new URL(req.url ?? '/', 'http://x');
  const auth = req.headers.authorization;
  if (auth?.startsWith('Bearer ')) return auth.slice(7);
  const cookie = /(?:^|;\s*)hone_token=([^;]+)/.exec(req.headers.cookie ?? '');
  if (cookie) return decodeURIComponent(cookie[1]);
  return url.searchParams.get('token');
}

function same(a: string | null, b: string): boolean {
  if (!a) return false;
  const x = Buffer.from(a), y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export async function serve(opts: ServeOptions): Promise<Served> {
  const token = opts.token ?? randomBytes(24).toString('base64url');
  const policy = new PathPolicy({ shared: opts.allow, home: opts.lab.home, howToShare: 'start hone serve with --allow <folder> for the folder that holds it' });
  const json = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify(body));
  };

  const server = createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (!same(tokenOf(req), token)) return json(res, 401, { error: 'missing or wrong token; open the URL `hone serve` printed' });
    res.setHeader('Content-Security-Policy', "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self' ws://127.0.0.1:*");
    if (url.searchParams.has('token')) res.setHeader('Set-Cookie', `hone_token=${encodeURIComponent(token)}; HttpOnly; SameSite=Strict; Path=/`);

    if (url.pathname.startsWith('/api/')) {
      const method = url.pathname.slice(5) as keyof LabApi;
      if (req.method !== 'POST' || !(LAB_METHODS as readonly string[]).includes(method)) return json(res, 404, { error: `no API method ${method}` });
      let args: unknown[];
      try {
        const chunks: Buffer[] = [];
        for await (const c of req) chunks.push(c as Buffer);
        args = chunks.length ? JSON.parse(Buffer.concat(chunks).toString()) : [];
        if (!Array.isArray(args)) throw new Error('the body must be a JSON array of arguments');
      } catch (e) {
        return json(res, 400, { error: (e as Error).message });
      }
      try {
        return json(res, 200, { value: await callConfined(opts.lab, policy, method, args) });
      } catch (e) {
        return json(res, e instanceof PathRefused ? 403 : 500, { error: (e as Error).message });
      }
    }

    if (!opts.staticDir) return json(res, 404, { error: 'no renderer built; run npm run build' });
    const rel = normalize(decodeURIComponent(url.pathname === '/' ? '/index.html' : url.pathname)).replace(/^([/\\])+/, '');
    const file = join(opts.staticDir, rel);
    if (!file.startsWith(opts.staticDir) || !existsSync(file) || !statSync(file).isFile()) return json(res, 404, { error: 'not found' });
    res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' });
    createReadStream(file).pipe(res);
  });

  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    if (new URL(req.url ?? '/', 'http://x').pathname !== '/events' || !same(tokenOf(req), token)) {
      socket.write('HTTP/1.1 401 Unauthorized\r\nConnection: close\r\n\r\n');
      socket.destroy();
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      const off = opts.lab.on((e) => ws.send(JSON.stringify(e)));
      ws.on('close', off);
    });
  });

  await new Promise<void>((r) => server.listen(opts.port ?? 0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    server,
    token,
    url: `http://127.0.0.1:${port}/?token=${token}`,
    close: () => new Promise((r) => { wss.close(); server.close(() => r()); server.closeAllConnections(); }),
  };
}
