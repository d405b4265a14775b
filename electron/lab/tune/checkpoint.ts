// Checkpoints: trainable tensors, AdamW moments, a method's fixed state (MoS's index draws) and the
// run's position, in one GGUF written
// atomically (temp file, fsync, rename). The newest readable one is used; one cut short on disk is
// detected by the GGUF reader and skipped for the one before.
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { GgufValueType, readGguf, readTensorBytes, type GgufTensorInfo } from '../model/gguf.js';
import { kv, writeGguf, type GgufTensorOut } from '../model/gguf-writer.js';
import { T } from '../engine/types.js';
import type { Tensor } from '../engine/graph.js';
import { native } from '../engine/native.js';
import type { HostState, Trainable } from './adapter.js';

export interface RunPosition {
  /** optimizer steps done */
  step: number;
  /** windows consumed from the data stream */
  consumed: number;
}

const KEEP = 2;

export function checkpointDir(runDir: string) {
  return join(runDir, 'checkpoints');
}

/** what a checkpoint holds of a method: its trainables, fixed tensors, and state it keeps in JavaScript */
export interface CheckpointState {
  trainables: Trainable[];
  fixed?: Tensor[];
  /** F32 arrays by name (Natural GaLore's gradient history, streamed blocks' records), saved and given back on load */
  hostState?: HostState;
}

export function saveCheckpoint(runDir: string, pos: RunPosition, state: CheckpointState, extra: Record<string, unknown> = {}): string {
  const { trainables, fixed = [] } = state;
  const dir = checkpointDir(runDir);
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `step-${String(pos.step).padStart(7, '0')}.gguf`);
  const bytes = (x: Float32Array) => new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
  const tensors: GgufTensorOut[] = trainables.flatMap((t) => [
    { name: t.name, shape: t.param.shape.slice(0, 2), type: T.F32, data: () => bytes(t.param.get()) },
    { name: `${t.name}.m`, shape: t.m.shape.slice(0, 2), type: T.F32, data: () => bytes(t.m.get()) },
    { name: `${t.name}.v`, shape: t.v.shape.slice(0, 2), type: T.F32, data: () => bytes(t.v.get()) },
  ]);
  for (const f of fixed) tensors.push({ name: f.name, shape: f.shape.slice(0, 2), type: f.type, data: () => native().tensorGet(f.h, true) as unknown as Uint8Array });
  for (const h of state.hostState?.save() ?? []) {
    const data = h.data;
    const shape = h.shape ?? [(data as Float32Array).length];
    tensors.push({ name: h.name, shape, type: T.F32, data: typeof data === 'function' ? () => bytes(data()) : bytes(data) });
  }
  const md = new Map([
    ['general.type', kv.str('hone-checkpoint')],
    ['hone.checkpoint', kv.str(JSON.stringify({ ...pos, ...extra }))],
  ]);
  writeGguf(path, md, tensors, { overwrite: true });
  const all = listCheckpoints(runDir);
  for (const old of all.slice(0, Math.max(0, all.length - KEEP))) rmSync(old, { force: true });
  return path;
}

export function listCheckpoints(runDir: string): string[] {
  const dir = checkpointDir(runDir);
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((f) => /^step-\d+\.gguf$/.test(f)).sort().map((f) => join(dir, f));
}

export interface LoadedCheckpoint {
  path: string;
  position: RunPosition & Record<string, unknown>;
  skipped: { path: string; reason: string }[];
}

/** Loads the newest readable checkpoint into the trainables; null when there is none. */
export function loadLatestCheckpoint(runDir: string, state: CheckpointState): LoadedCheckpoint | null {
  const { trainables, fixed = [] } = state;
  const skipped: { path: string; reason: string }[] = [];
  for (const path of listCheckpoints(runDir).reverse()) {
    try {
      const f = readGguf(path);
      const meta = f.metadata.get('hone.checkpoint');
      if (!meta || meta.type !== GgufValueType.STRING) throw new Error('not a Hone checkpoint');
      const byName = new Map(f.tensors.map((t) => [t.name, t]));
      // tensor by tensor, never the whole file (a full-parameter checkpoint can be larger than RAM)
      const tensorBytes = (t: GgufTensorInfo) => { const b = readTensorBytes(path, t); return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength); };
      const bytesOf = (name: string, n: number) => {
        const t = byName.get(name);
        if (!t || t.bytes !== n * 4) throw new Error(`tensor ${name} is missing or has another shape (was the run's configuration changed?)`);
        return tensorBytes(t);
      };
      const read = (name: string, n: number) => new Float32Array(bytesOf(name, n));
      const fixedData = fixed.map((f) => new Uint8Array(bytesOf(f.name, f.elements))); // 4-byte types (I32, F32), raw
      const data = trainables.map((t) => [read(t.name, t.param.elements), read(`${t.name}.m`, t.m.elements), read(`${t.name}.v`, t.v.elements)] as const);
      trainables.forEach((t, i) => { t.param.set(data[i][0]); t.m.set(data[i][1]); t.v.set(data[i][2]); });
      fixed.forEach((f, i) => f.set(fixedData[i]));
      state.hostState?.load((name) => {
        const t = byName.get(name);
        return t ? new Float32Array(tensorBytes(t)) : null;
      });
      return { path, position: JSON.parse(String(meta.value)), skipped };
    } catch (e) {
      skipped.push({ path, reason: (e as Error).message });
    }
  }
  if (skipped.length) throw new Error(`no readable checkpoint in ${checkpointDir(runDir)}: ${skipped.map((s) => s.reason).join('; ')}`);
  return null;
}
