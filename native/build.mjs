// Builds native/build/Release/hone.node: Hone's N-API binding over ggml.
//
// Headers come from the llama.cpp source that node-llama-cpp ships (a git bundle); the binary links
// to node-llama-cpp's prebuilt libggml-base / libggml with an rpath relative to the addon, so the
// addon and node-llama-cpp share one copy of ggml. Nothing is downloaded. Runs as the project's
// `npm install` script; skips the build when nothing it depends on changed (`--force` rebuilds).
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ggmlBinsDir, llamaSource, llamaTag } from './paths.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const out = join(here, 'build');
const force = process.argv.includes('--force');

function fail(message) {
  console.error(`hone native build failed: ${message}`);
  process.exit(1);
}

function has(cmd, args = ['--version']) {
  return spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;
}

if (process.platform === 'win32') fail('Windows builds are not wired yet (node-llama-cpp ships DLLs without import libraries); use Linux or macOS.');
const cxx = process.env.CXX || 'c++';
if (!has(cxx)) fail(`no C++ compiler found (${cxx}); install one (Debian: apt-get install g++; macOS: xcode-select --install).`);
if (!has('git')) fail('git is needed to read the llama.cpp source bundle that node-llama-cpp ships; install git.');
if (!has('python3')) fail('python3 is needed by node-gyp; install python3.');

const require = createRequire(import.meta.url);
let tag;
try {
  tag = llamaTag(root);
} catch (e) {
  fail(e.message);
}

const bins = ggmlBinsDir(root);
if (!bins) fail(`node-llama-cpp has no prebuilt binaries for ${process.platform}-${process.arch} in node_modules/@node-llama-cpp.`);
const libs = readdirSync(bins);
const base = libs.find((f) => /^libggml-base\.(so|dylib)$/.test(f));
const core = libs.find((f) => /^libggml(\.v[\w.]+)?\.(so|dylib)$/.test(f) && !f.startsWith('libggml-base'));
if (!base || !core) fail(`libggml-base / libggml not found in ${bins}.`);

// OpenBLAS (Linux: Debian's libopenblas-dev), when installed, runs the large F32 matmuls through
// ggml's BLAS backend compiled into the addon; without it the CPU backend does them all.
// HONE_BLAS=0 builds without it.
const blasHeaders = process.platform === 'linux' && process.env.HONE_BLAS !== '0'
  ? ['/usr/include/x86_64-linux-gnu/openblas-pthread', '/usr/include/aarch64-linux-gnu/openblas-pthread', '/usr/include/openblas', '/usr/include/x86_64-linux-gnu', '/usr/include']
    .find((d) => existsSync(join(d, 'cblas.h')) && existsSync(join(d, 'openblas_config.h')))
  : undefined;

const sources = ['src/hone.cc', 'src/q8_gemm.h', 'src/outer_kernel.h', 'src/io.cc', 'src/compress.cc', 'binding.gyp', 'build.mjs', 'paths.mjs'].map((f) => readFileSync(join(here, f)));
const stamp = createHash('sha256').update(Buffer.concat([...sources, Buffer.from(`${tag}|${bins}|${process.version}|blas:${blasHeaders ?? ''}`)])).digest('hex');
// llama.cpp's test vocabularies (make-tiny's tokenizers) out of the same bundle now, while git can
// be spawned cheaply: a test process holding gigabytes may fail to fork it later (ENOMEM)
try {
  llamaSource(root, ['llama-spm', 'llama-bpe', 'qwen2', 'phi-3', 'gemma-4'].map((v) => `models/ggml-vocab-${v}.gguf`));
} catch (e) {
  console.warn(`hone native: could not check out the test vocabularies (make-tiny will try again): ${String(e.stderr || e.message).trim()}`);
}

const stampFile = join(here, '.ggml', 'stamp');
const addon = join(out, 'Release', 'hone.node');
if (!force && existsSync(addon) && existsSync(stampFile) && readFileSync(stampFile, 'utf8') === stamp) {
  console.log('hone native: up to date');
  process.exit(0);
}

// ggml headers at the exact source node-llama-cpp's binaries were built from
let include, ggmlSrc;
try {
  const src = llamaSource(root, ['ggml/include', ...(blasHeaders ? ['ggml/src/ggml-blas', 'ggml/src/ggml-impl.h', 'ggml/src/ggml-backend-impl.h', 'ggml/src/ggml-common.h'] : [])]);
  include = join(src, 'ggml', 'include');
  ggmlSrc = join(src, 'ggml', 'src');
} catch (e) {
  fail(`could not read ggml headers from node-llama-cpp's source bundle: ${String(e.stderr || e.message).trim()}`);
}
if (!existsSync(join(include, 'ggml.h'))) fail(`ggml headers missing after checkout (${include}).`);

const rpath = relative(join(out, 'Release'), bins);
const link =
  process.platform === 'darwin'
    ? [`-L${bins}`, `${join(bins, base)}`, `${join(bins, core)}`, `-Wl,-rpath,@loader_path/${rpath}`]
    : [`-L${bins}`, `-l:${base}`, `-l:${core}`];

const gyp = require.resolve('node-gyp/bin/node-gyp.js', { paths: [root] });
const args = [gyp, 'rebuild', '--directory', here];
const nodedir = process.env.npm_config_nodedir || join(dirname(process.execPath), '..');
if (existsSync(join(nodedir, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${nodedir}`);
const blas = blasHeaders
  ? { HONE_BLAS_SRC: relative(here, join(ggmlSrc, 'ggml-blas', 'ggml-blas.cpp')), HONE_BLAS_INCLUDE: `${blasHeaders} ${ggmlSrc}`, HONE_BLAS_DEFINES: 'HONE_BLAS GGML_BLAS_USE_OPENBLAS', HONE_BLAS_LINK: '-lopenblas' }
  : { HONE_BLAS_SRC: '', HONE_BLAS_INCLUDE: '', HONE_BLAS_DEFINES: '', HONE_BLAS_LINK: '' };
console.log(`hone native: building against ggml ${tag} (${bins})${blasHeaders ? `, with OpenBLAS (${blasHeaders})` : ', without BLAS (install libopenblas-dev for faster F32 matmuls)'}`);
const r = spawnSync(process.execPath, args, {
  stdio: ['ignore', 'pipe', 'pipe'],
  env: { ...process.env, HONE_GGML_INCLUDE: include, HONE_GGML_LINK: link.join(' '), HONE_GGML_RPATH: rpath, ...blas },
});
if (r.status !== 0) {
  const log = `${r.stdout}\n${r.stderr}`;
  writeFileSync(join(here, 'build-error.log'), log);
  const firstError = log.split('\n').find((l) => /error/i.test(l)) ?? 'see native/build-error.log';
  fail(`${firstError.trim()} (full log: native/build-error.log)`);
}
mkdirSync(dirname(stampFile), { recursive: true });
writeFileSync(stampFile, stamp);
console.log(`hone native: built ${relative(root, addon)}`);
