// `hone serve`: the lab API over HTTP + WebSocket, only with the token, only for shared folders.
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createLab } from '../../electron/lab/api.js';
import { serve, type Served } from '../../electron/serve/server.js';
import { testDir, tinyModel } from '../helpers/models.js';

const dir = join(testDir, `serve-${process.pid}`);
const shared = join(dir, 'shared');

describe('hone serve', () => {
  let s: Served;
  let model: string;
  beforeAll(async () => {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(shared, { recursive: true });
    model = join(shared, 'tiny.gguf');
    copyFileSync(tinyModel({}), model);
    s = await serve({ lab: await createLab({ home: join(dir, 'home') }), allow: [shared] });
  });
  afterAll(() => s.close());
  const base = () => s.url.replace(/\/\?token=.*/, '');
  const call = (method: string, args: unknown[], token: string | null = s.token) =>
    fetch(`${base()}/api/${method}`, { method: 'POST', headers: token ? { authorization: `Bearer ${token}` } : {}, body: JSON.stringify(args) });

  it('answers 401 without the token, to the API, the pages and the event socket', async () => {
    expect((await call('listRuns', [], null)).status).toBe(401);
    expect((await call('listRuns', [], 'wrong')).status).toBe(401);
    expect((await fetch(`${base()}/`)).status).toBe(401);
    const err = await new Promise<string>((resolve) => {
      const ws = new WebSocket(`${base().replace('http', 'ws')}/events`);
      ws.on('unexpected-response', (_req, res) => resolve(String(res.statusCode)));
      ws.on('error', (e) => resolve(e.message));
      ws.on('open', () => resolve('open'));
    });
    expect(err).toMatch(/401/);
  });

  it('serves the API with the token; the event socket opens', async () => {
    const r = await call('listRuns', []);
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual({ value: [] });
    const m = await (await call('inspectModel', [model])).json();
    expect(m.value).toMatchObject({ architecture: 'llama', vocabulary: 32000, layers: 2 });
    const opened = await new Promise<string>((resolve) => {
      const ws = new WebSocket(`${base().replace('http', 'ws')}/events`, { headers: { authorization: `Bearer ${s.token}` } });
      ws.on('open', () => { ws.close(); resolve('open'); });
      ws.on('error', (e) => resolve(e.message));
    });
    expect(opened).toBe('open');
  });

  it('refuses paths outside the shared folders, including through ../', async () => {
    for (const p of ['/etc/passwd', join(shared, '..', '..', 'elsewhere.gguf'), tinyModel({})]) {
      const r = await call('inspectModel', [p]);
      expect(r.status).toBe(403);
      expect((await r.json()).error).toMatch(/is outside the folders shared with it/);
    }
  });

  it('reports core errors as messages', async () => {
    const r = await call('inspectModel', [join(shared, 'missing.gguf')]);
    expect(r.status).toBe(500);
    expect((await r.json()).error).toMatch(/missing\.gguf: cannot open/);
  });
});
