// The path policy: every path field of every lab API call, nested config fields included, is
// confined to what the user shared, through `hone serve` and through Electron's IPC handlers alike.
import { copyFileSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLab, LAB_METHODS, type Lab, type LabApi } from '../../electron/lab/api.js';
import { API_PATHS, PathPolicy, PathRefused, canonicalPath, pathFields } from '../../electron/lab/path-policy.js';
import { serveLab } from '../../electron/main/ipc.js';
import { serve, type Served } from '../../electron/serve/server.js';
import { testDir, tinyModel } from '../helpers/models.js';

const dir = join(testDir, `paths-${process.pid}`);
const shared = join(dir, 'shared');
const outside = join(dir, 'outside');
const home = join(dir, 'home');

/** arguments for `method` with `value` at the path field `field` of argument `arg` (the rest empty) */
function argsWith(method: keyof LabApi, arg: number, field: string[], value: string): unknown[] {
  const args: unknown[] = (API_PATHS[method] as unknown[]).map(() => undefined);
  if (field.length === 0) args[arg] = value;
  else {
    const root: Record<string, unknown> = {};
    let o = root;
    field.slice(0, -1).forEach((k) => { o = (o[k] = {}) as Record<string, unknown>; });
    o[field[field.length - 1]] = value;
    args[arg] = root;
  }
  return args;
}

beforeAll(() => {
  rmSync(dir, { recursive: true, force: true });
  for (const d of [shared, outside, home]) mkdirSync(d, { recursive: true });
  writeFileSync(join(outside, 'secret.txt'), 'not yours');
  symlinkSync(outside, join(shared, 'link-out'));
  symlinkSync(join(shared, 'sub'), join(shared, 'link-in'));
  mkdirSync(join(shared, 'sub'));
});

describe('path policy', () => {
  it('classifies every argument of every API method; the known path fields are among them', () => {
    expect(Object.keys(API_PATHS).sort()).toEqual([...LAB_METHODS].sort());
    const names = pathFields().map((f) => `${f.method}.${f.arg}${f.field.length ? '.' + f.field.join('.') : ''}:${f.use}`);
    for (const known of [
      'inspectModel.0:read', 'addModel.0:read', 'previewDataset.0:read', 'previewDataset.1:read', 'startRun.0.model:read', 'startRun.0.data:read',
      'startRun.0.perpMasks:read', 'startRun.0.offload.ssd:write', 'startCompression.0.model:read', 'startCompression.0.out:write',
      'startCompression.0.calib:read', 'startCompression.0.eval:read', 'chat.0:read', 'chat.2:read',
    ]) expect(names).toContain(known);
  });

  it('links and .. are resolved as the OS resolves them, before the check', () => {
    expect(canonicalPath(join(shared, 'link-out', 'secret.txt'))).toBe(join(canonicalPath(outside), 'secret.txt'));
    // the link is followed first, then .. climbs from where it points
    expect(canonicalPath(`${shared}/link-out/../home`)).toBe(canonicalPath(home));
    expect(canonicalPath(join(shared, 'link-in', 'new', 'deeper'))).toBe(join(canonicalPath(shared), 'sub', 'new', 'deeper'));
  });

  it('every path field refuses a path outside the shared folders, through links and .., and accepts one inside', () => {
    const policy = new PathPolicy({ shared: [shared], home, howToShare: 'share it' });
    const fields = pathFields();
    expect(fields.length).toBeGreaterThanOrEqual(14);
    for (const { method, arg, field, use } of fields) {
      const where = `${method}${(API_PATHS[method] as unknown[]).length > 1 ? ` argument ${arg + 1}` : ''}${field.map((k) => '.' + k).join('')}`;
      for (const bad of [join(outside, 'secret.txt'), join(shared, '..', 'outside', 'x'), join(shared, 'link-out', 'secret.txt'), '/etc/passwd']) {
        expect(() => policy.confine(method, argsWith(method, arg, field, bad)), `${where} ← ${bad}`).toThrow(PathRefused);
        try { policy.confine(method, argsWith(method, arg, field, bad)); } catch (e) { expect((e as Error).message).toContain(where); }
      }
      expect(() => policy.confine(method, argsWith(method, arg, field, 42 as unknown as string))).toThrow(/expected a file path/);
      // inside: accepted and handed on canonical (links resolved)
      const good = policy.confine(method, argsWith(method, arg, field, join(shared, 'link-in', use === 'write' ? 'new-folder' : 'data.txt')));
      const value = field.reduce((o: unknown, k) => (o as Record<string, unknown>)[k], good[arg]);
      expect(value).toBe(join(canonicalPath(shared), 'sub', use === 'write' ? 'new-folder' : 'data.txt'));
      // Hone's own data folder is open to both
      expect(() => policy.confine(method, argsWith(method, arg, field, join(home, 'runs', 'x')))).not.toThrow();
    }
  });

  it('a picked file is readable but not writable, nor is its folder; a picked folder is writable inside', () => {
    const policy = new PathPolicy({ home, howToShare: 'choose it with the Open button' });
    const file = join(outside, 'secret.txt');
    expect(() => policy.check(file, 'read', 'x')).toThrow(/choose it with the Open button/);
    policy.share(file, 'read');
    expect(policy.check(file, 'read', 'x')).toBe(canonicalPath(file));
    expect(() => policy.check(file, 'write', 'x')).toThrow(PathRefused);
    expect(() => policy.check(join(outside, 'other.txt'), 'read', 'x')).toThrow(PathRefused);
    policy.share(join(dir, 'ssd'), 'write');
    expect(policy.check(join(dir, 'ssd', 'state'), 'write', 'x')).toBe(join(canonicalPath(dir), 'ssd', 'state'));
    const added = new PathPolicy({ home, howToShare: '', alsoReadable: () => [join(outside, 'model.gguf')] });
    expect(() => added.check(join(outside, 'model.gguf'), 'read', 'x')).not.toThrow();
    expect(() => added.check(join(outside, 'model.gguf'), 'write', 'x')).toThrow(PathRefused);
  });

  it('a setting the API does not have is refused, __proto__ included; so are extra arguments', () => {
    const policy = new PathPolicy({ shared: [shared], home, howToShare: '' });
    expect(() => policy.confine('startRun', [{ model: join(shared, 'm.gguf'), data: join(shared, 'd.jsonl'), dataFile: '/etc/passwd' }])).toThrow(/startRun\.dataFile|no setting "dataFile"/);
    expect(() => policy.confine('startRun', [JSON.parse('{"__proto__": {"model": "/etc/passwd"}}')])).toThrow(/no setting "__proto__"/);
    expect(() => policy.confine('startRun', [{ offload: 'x' }])).toThrow(/expected an object/);
    expect(() => policy.confine('inspectModel', [join(shared, 'a'), '/etc/passwd'])).toThrow(/at most 1 argument/);
  });
});

describe('the shells apply it', () => {
  let lab: Lab;
  let s: Served;
  let model: string;
  beforeAll(async () => {
    model = join(shared, 'tiny.gguf');
    copyFileSync(tinyModel({}), model);
    lab = await createLab({ home });
    s = await serve({ lab, allow: [shared] });
  });
  afterAll(() => s.close());
  const call = (method: string, args: unknown[]) =>
    fetch(`${s.url.replace(/\/\?token=.*/, '')}/api/${method}`, { method: 'POST', headers: { authorization: `Bearer ${s.token}` }, body: JSON.stringify(args) });

  it('hone serve answers 403 for every path field outside --allow, before the core runs', async () => {
    for (const { method, arg, field } of pathFields()) {
      const r = await call(method, argsWith(method, arg, field, join(outside, 'secret.txt')));
      expect(r.status, `${method} ${field.join('.')}`).toBe(403);
      expect((await r.json()).error).toMatch(/outside the folders shared with it.*--allow/);
    }
    expect(lab.store.data.runs).toEqual([]); // no run or compression was started by any of them
    const ok = await call('inspectModel', [join(shared, 'link-in', '..', 'tiny.gguf')]);
    expect(ok.status).toBe(200);
  });

  it("Electron's IPC handlers go through the same policy", async () => {
    const handlers = new Map<string, (...a: unknown[]) => Promise<unknown>>();
    const policy = new PathPolicy({ home, howToShare: 'choose it with the Open button or drop it on the window' });
    serveLab(lab, policy, (channel, f) => handlers.set(channel, f));
    expect([...handlers.keys()].sort()).toEqual(LAB_METHODS.map((m) => `lab:${m}`).sort());
    await expect(handlers.get('lab:inspectModel')!(model)).rejects.toThrow(/choose it with the Open button/);
    await expect(handlers.get('lab:startRun')!({ model, data: join(outside, 'secret.txt') })).rejects.toThrow(PathRefused);
    policy.share(model, 'read'); // picked in the dialog
    expect(await handlers.get('lab:inspectModel')!(model)).toMatchObject({ architecture: 'llama' });
    expect(lab.store.data.runs).toEqual([]);
  });
});
