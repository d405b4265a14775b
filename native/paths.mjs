// Where node-llama-cpp's prebuilt ggml libraries live for this platform, shared by the build
// script and the runtime loader (electron/lab/engine/native.ts).
import { existsSync } from 'node:fs';
import { join } from 'node:path';

/** `@node-llama-cpp/<platform>/bins/<platform>` for the CPU build, or null when absent. */
export function ggmlBinsDir(root, variant = '') {
  const plat = { darwin: 'mac', win32: 'win', linux: 'linux' }[process.platform] ?? process.platform;
  const names = process.platform === 'darwin' && process.arch === 'arm64' && !variant
    ? [`mac-arm64-metal`]
    : [`${plat}-${process.arch}${variant ? `-${variant}` : ''}`];
  for (const name of names) {
    const dir = join(root, 'node_modules', '@node-llama-cpp', name, 'bins', name);
    if (existsSync(dir)) return dir;
  }
  return null;
}
