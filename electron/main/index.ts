// Electron's main process: one window, and IPC handlers that forward to the lab API. Thin.
import { app, BrowserWindow, ipcMain, session } from 'electron';
import { join } from 'node:path';
import { createLab, type LabApi } from '../lab/api.js';

const lab = createLab();

/** every LabApi method becomes an IPC channel `lab:<method>`; errors travel back as messages */
function serveLab(api: LabApi) {
  for (const method of Object.keys(api) as (keyof LabApi)[]) {
    ipcMain.handle(`lab:${method}`, (_event, ...args: unknown[]) => (api[method] as (...a: unknown[]) => Promise<unknown>)(...args));
  }
}

function createWindow() {
  const win = new BrowserWindow({
    width: 1280,
    height: 820,
    title: 'Hone',
    webPreferences: {
      preload: join(__dirname, '../preload/index.mjs'),
      contextIsolation: true,
      nodeIntegration: false,
      sandbox: false, // an ESM preload needs it off; the renderer still reaches nothing but window.hone
    },
  });
  if (process.env.ELECTRON_RENDERER_URL) void win.loadURL(process.env.ELECTRON_RENDERER_URL);
  else void win.loadFile(join(__dirname, '../renderer/index.html'));
}

app.whenReady().then(() => {
  session.defaultSession.webRequest.onHeadersReceived((details, callback) => {
    callback({
      responseHeaders: {
        ...details.responseHeaders,
        'Content-Security-Policy': ["default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:"],
      },
    });
  });
  serveLab(lab);
  createWindow();
  app.on('activate', () => {
    if (BrowserWindow.getAllWindows().length === 0) createWindow();
  });
});

app.on('window-all-closed', () => {
  if (process.platform !== 'darwin') app.quit();
});
