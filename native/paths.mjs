// Where node-llama-cpp's files live: its prebuilt ggml libraries for this platform, and the
// llama.cpp source it ships as a git bundle (checked out on demand, a few paths at a time).
// Shared by the build script and the runtime (electron/lab/engine/native.ts, model/vocab.ts).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/** `@node-llama-cpp/<platform>[-variant]/bins/<platform>[-variant]`, or null when absent. */
export function ggmlBinsDir(root, variant = '') {
  const plat = { darwin: 'mac', win32: 'win', linux: 'linux' }[process.platform] ?? process.platform;
  const name = process.platform === 'darwin' && process.arch === 'arm64' && !variant
    ? 'mac-arm64-metal'
    : `${plat}-${process.arch}${variant ? `-${variant}` : ''}`;
  const dir = join(root, 'node_modules', '@node-llama-cpp', name, 'bins', name);
  return existsSync(dir) ? dir : null;
}

export function nodeLlamaCppDir(root) {
  try {
    return dirname(createRequire(join(root, 'package.json')).resolve('node-llama-cpp/package.json'));
  } catch {
    return join(root, 'node_modules', 'node-llama-cpp');
  }
}

/** The llama.cpp tag node-llama-cpp's binaries were built from. */
export function llamaTag(root) {
  const info = join(nodeLlamaCppDir(root), 'llama', 'llama.cpp.info.json');
  if (!existsSync(info)) throw new Error(`node-llama-cpp is not installed (${info} is missing); run npm install`);
  return JSON.parse(readFileSync(info, 'utf8')).tag;
}

/**
 * Checks out `paths` (files or folders of the llama.cpp source) from node-llama-cpp's git bundle
 * into native/.ggml/llama.cpp-<tag>/ and returns that folder. Needs git; reads nothing online.
 */
export function llamaSource(root, paths) {
  const bundle = join(nodeLlamaCppDir(root), 'llama', 'gitRelease.bundle');
  if (!existsSync(bundle)) throw new Error(`node-llama-cpp's llama.cpp source bundle is missing (${bundle}); run npm install`);
  const src = join(root, 'native', '.ggml', `llama.cpp-${llamaTag(root)}`);
  if (!existsSync(join(src, '.git'))) {
    rmSync(src, { recursive: true, force: true });
    mkdirSync(dirname(src), { recursive: true });
    execFileSync('git', ['clone', '--quiet', '--no-checkout', bundle, src], { stdio: ['ignore', 'ignore', 'pipe'] });
  }
  const missing = paths.filter((p) => !existsSync(join(src, p)));
  if (missing.length) execFileSync('git', ['-C', src, 'checkout', '--quiet', 'HEAD', '--', ...missing], { stdio: ['ignore', 'ignore', 'pipe'] });
  return src;
}
