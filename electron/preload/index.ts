// The renderer's only door: `window.hone`, the lab API over IPC, lab events, a file dialog and the
// path of a dropped file.
import { contextBridge, ipcRenderer, webUtils } from 'electron';
import { LAB_METHODS, type LabApi, type LabEvent } from '../lab/api-contract.js';

const api = Object.fromEntries(LAB_METHODS.map((m) => [m, (...args: unknown[]) => ipcRenderer.invoke(`lab:${m}`, ...args)])) as unknown as LabApi;

contextBridge.exposeInMainWorld('hone', {
  ...api,
  onEvent(listener: (e: LabEvent) => void) {
    const f = (_: unknown, e: LabEvent) => listener(e);
    ipcRenderer.on('lab:event', f);
    return () => ipcRenderer.off('lab:event', f);
  },
  openFile: (filters: { name: string; extensions: string[] }[]) => ipcRenderer.invoke('dialog:open', filters) as Promise<string | null>,
  openFolder: () => ipcRenderer.invoke('dialog:folder') as Promise<string | null>,
  /** a dropped file's path, shared with the lab for reading */
  async pathForFile(file: File) {
    const path = webUtils.getPathForFile(file);
    if (path) await ipcRenderer.invoke('share:dropped', path);
    return path;
  },
});
