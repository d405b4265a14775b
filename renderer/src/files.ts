// A dropped or picked file's path: Electron gives the real path; a browser cannot, so the file's
// bytes go to the lab's imports folder (hone serve) and that copy's path is used.
export async function pathOf(file: File): Promise<string> {
  const p = await window.hone.pathForFile(file);
  if (p && (p.includes("/") || p.includes("\\"))) return p;
  const bytes = new Uint8Array(await file.arrayBuffer());
  let bin = '';
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return window.hone.importFile(file.name, btoa(bin));
}

export function size(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const u = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes / 1024, i = 0;
  while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
  return `${v.toFixed(v < 10 ? 2 : 1)} ${u[i]}`;
}

export const errorText = (e: unknown) => String((e as Error)?.message ?? e).replace(/^Error invoking remote method '[^']+': (\w*Error: )?/, '');
