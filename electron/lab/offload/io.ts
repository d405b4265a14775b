// Asynchronous file I/O for out-of-core training (native/src/io.cc: pread/pwrite on worker threads,
// O_DIRECT where the file system allows it), with a bounded number of requests in flight and errors
// turned into messages that say what to do.
import { dirname } from 'node:path';
import { native, type External } from '../engine/native.js';

interface IoNative {
  readAsync(path: string, offset: number, length: number, direct?: boolean): Promise<Buffer>;
  writeAsync(path: string, offset: number, data: Uint8Array, direct?: boolean, sync?: boolean): Promise<{ direct: boolean }>;
  readIntoTensor(path: string, offset: number, tensor: External, direct?: boolean): Promise<void>;
  writeFromTensor(path: string, offset: number, tensor: External, direct?: boolean, sync?: boolean): Promise<{ direct: boolean }>;
  ioAlignment: number;
}
const io = () => native() as unknown as IoNative;

/** O_DIRECT's alignment of offsets and sizes */
export const IO_ALIGN = 4096;
export const alignUp = (n: number) => Math.ceil(n / IO_ALIGN) * IO_ALIGN;

export class OffloadIoError extends Error {
  constructor(message: string, readonly code: string, readonly path: string) { super(message); }
}

/** what a failed read or write means for the run, and what to do */
export function explainIoError(e: unknown, role: 'ssd' | 'model'): OffloadIoError {
  const err = e as Error & { code?: string; path?: string };
  const path = err.path ?? '?';
  const code = err.code ?? 'EIO';
  const where = role === 'ssd' ? `the offload folder ${dirname(path)}` : `the model file ${path}`;
  const msg = ({
    ENOSPC: `${where} is full: free space there or choose another --ssd folder, then resume`,
    EDQUOT: `${where} is over its disk quota: free space there or choose another --ssd folder, then resume`,
    EACCES: `Hone may not write to ${where}: choose a folder you can write to (--ssd), then resume`,
    EPERM: `Hone may not write to ${where}: choose a folder you can write to (--ssd), then resume`,
    EROFS: `${where} is on a read-only file system: choose another --ssd folder, then resume`,
    ENOENT: role === 'ssd' ? `${where} or a file in it vanished (deleted, or its disk unmounted): create it or choose another --ssd folder, then resume`
      : `${path} vanished during the run (deleted, or its disk unmounted): put it back, then resume`,
    EOF: `${path} is shorter than it was when the run started (changed or truncated): put the original back, then resume`,
  } as Record<string, string>)[code] ?? `${err.message}: check the disk, then resume`;
  return new OffloadIoError(msg, code, path);
}

/** At most `depth` requests in flight; the rest wait in order. */
export class AsyncFiles {
  private inFlight = 0;
  private readonly waiting: (() => void)[] = [];
  /** bytes moved, for the bench's per-step figures */
  bytesRead = 0;
  bytesWritten = 0;
  constructor(readonly depth = 8) {}

  private async slot<T>(f: () => Promise<T>): Promise<T> {
    if (this.inFlight >= this.depth) await new Promise<void>((r) => this.waiting.push(r));
    this.inFlight++;
    try {
      return await f();
    } finally {
      this.inFlight--;
      this.waiting.shift()?.();
    }
  }

  read(path: string, offset: number, length: number, direct = false): Promise<Buffer> {
    return this.slot(async () => {
      const b = await io().readAsync(path, offset, length, direct);
      this.bytesRead += length;
      return b;
    });
  }

  /** a tensor's bytes from `offset` of the file straight into its memory (no JavaScript buffer) */
  readInto(path: string, offset: number, tensor: External, bytes: number, direct = false): Promise<void> {
    return this.slot(async () => {
      await io().readIntoTensor(path, offset, tensor, direct);
      this.bytesRead += bytes;
    });
  }

  /** a tensor's bytes (zero-padded to IO_ALIGN) written at `offset`; the tensor may change once this returns */
  writeFrom(path: string, offset: number, tensor: External, bytes: number, direct = false, sync = true): Promise<{ direct: boolean }> {
    const p = io().writeFromTensor(path, offset, tensor, direct, sync); // copies the bytes now
    return this.slot(async () => {
      const r = await p;
      this.bytesWritten += alignUp(bytes);
      return r;
    });
  }

  /** writes `data` at `offset`; with `sync` (default) waits until it is on the disk (fdatasync) —
   *  scratch files (swapped activations) skip that */
  write(path: string, offset: number, data: Uint8Array, direct = false, sync = true): Promise<{ direct: boolean }> {
    return this.slot(async () => {
      const r = await io().writeAsync(path, offset, data, direct, sync);
      this.bytesWritten += data.length;
      return r;
    });
  }
}
