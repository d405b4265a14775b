// window.hone in a browser: the same LabApi over `hone serve`'s HTTP API and WebSocket events.
// (In Electron the preload provides window.hone over IPC instead.)
import { LAB_METHODS, type LabApi, type LabEvent } from '../../electron/lab/api-contract.js';

export function httpLab(): Window['hone'] {
  const call = async (method: string, args: unknown[]) => {
    const res = await fetch(`/api/${method}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(args), credentials: 'same-origin' });
    const body = await res.json();
    if (!res.ok) throw new Error(body.error ?? `HTTP ${res.status}`);
    return body.value;
  };
  const api = Object.fromEntries(LAB_METHODS.map((m: string) => [m, (...args: unknown[]) => call(m, args)])) as unknown as LabApi;
  const listeners = new Set<(e: LabEvent) => void>();
  let ws: WebSocket | null = null;
  const connect = () => {
    ws = new WebSocket(`ws://${location.host}/events`);
    ws.onmessage = (m) => { for (const l of listeners) l(JSON.parse(m.data)); };
    ws.onclose = () => setTimeout(connect, 1000);
  };
  return {
    ...api,
    onEvent(listener: (e: LabEvent) => void) {
      if (!ws) connect();
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    openFile: async () => null,
    pathForFile: async (file: File) => (file as File & { path?: string }).path ?? file.name,
  };
}
