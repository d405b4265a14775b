// The core's folders follow the data's path, lowest first; a module imports only from its own folder
// or a lower one (types included), and nothing in the core imports Electron. The renderer reaches
// the core only through modules that load no engine (it runs in a browser).
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = resolve(__dirname, '../..');
const lab = join(root, 'electron/lab');
/** lowest first: a folder may import from itself and from the folders before it; lab/ itself is the top */
const LAYERS = ['store', 'engine', 'model', 'data', 'offload', 'tune', 'eval', 'export', 'compress', 'jobs'];

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(join(dir, e.name)) : e.name.endsWith('.ts') || e.name.endsWith('.svelte') ? [join(dir, e.name)] : []));
}
function imports(file: string): string[] {
  const src = readFileSync(file, 'utf8');
  return [...src.matchAll(/(?:^|\n)\s*(?:import|export)[^'"]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g)].map((m) => m[1] ?? m[2]);
}
const layerOf = (file: string) => {
  const top = relative(lab, file).split('/')[0];
  return LAYERS.includes(top) ? LAYERS.indexOf(top) : LAYERS.length;
};

describe('layers', () => {
  it('no module of the core imports from a folder above its own', () => {
    const upward: string[] = [];
    for (const f of files(lab)) {
      for (const spec of imports(f)) {
        if (!spec.startsWith('.')) continue;
        const target = resolve(dirname(f), spec);
        if (!target.startsWith(lab)) continue; // native/paths.mjs, below everything
        if (layerOf(target) > layerOf(f)) upward.push(`${relative(root, f)} → ${relative(root, target)}`);
      }
    }
    expect(upward).toEqual([]);
  });

  it("the core never imports Electron; the renderer imports only engine-free modules of the core", () => {
    for (const f of files(lab)) expect(imports(f).filter((s) => s === 'electron'), relative(root, f)).toEqual([]);
    // the renderer's core modules, and everything they import, load no native code
    const seen = new Set<string>();
    const ts = (p: string) => p.replace(/\.js$/, '').replace(/(\.ts)?$/, '.ts');
    const visit = (file: string) => {
      if (seen.has(file)) return;
      seen.add(file);
      const src = readFileSync(file, 'utf8');
      for (const m of src.matchAll(/(?:^|\n)\s*(import|export)(\s+type)?[^'"]*?from\s+['"](\.[^'"]+)['"]/g)) {
        if (m[2]) continue; // type-only: erased
        if (!m[3].endsWith('.mjs')) visit(ts(resolve(dirname(file), m[3])));
      }
    };
    for (const f of files(join(root, 'renderer/src'))) {
      for (const m of readFileSync(f, 'utf8').matchAll(/(?:^|\n)\s*(import|export)(\s+type)?[^'"]*?from\s+['"]([^'"]*electron\/lab\/[^'"]+)['"]/g)) {
        if (!m[2]) visit(ts(resolve(dirname(f), m[3])));
      }
    }
    const native = [...seen].filter((f) => /engine\/(native|backend|graph)\.ts$/.test(f));
    expect(native).toEqual([]);
    expect(seen.size).toBeGreaterThan(2);
  });
});
