// The renderer's only door: `window.hone`, the lab API over IPC, plus the path of a dropped file.
import { contextBridge, ipcRenderer, webUtils } from 'electron';
import type { LabApi } from '../lab/api.js';

const api: LabApi & { pathForFile(file: File): string } = {
  inspectModel: (path) => ipcRenderer.invoke('lab:inspectModel', path),
  pathForFile: (file) => webUtils.getPathForFile(file),
};

contextBridge.exposeInMainWorld('hone', api);
