// Electron's main process: one window, a menu, native dialogs, and IPC handlers that forward to the
// lab API (`lab:<method>`); lab events go to the window as `lab:event`. Thin.
import { app, BrowserWindow, Menu, dialog, ipcMain, session, utilityProcess } from 'electron';
import { join } from 'node:path';
import { LAB_METHODS, createLab, type Lab } from '../lab/api.js';
import { lastLines, type JobProcess } from '../lab/jobs/manager.js';

/** job processes as Electron utility processes running the bundled worker (out/main/worker.js) */
function utilitySpawner(): JobProcess {
  const child = utilityProcess.fork(join(__dirname, 'worker.js'), [], { stdio: 'pipe' });
  const output = lastLines(child.stdout, child.stderr);
  return {
    output,
    get pid() { return child.pid; },
    send: (m) => child.postMessage(m),
    kill: (signal) => { if (child.pid) process.kill(child.pid, signal); },
    on: ((event: string, f: (...a: unknown[]) => void) => event === 'exit' ? child.on('exit', (code: number) => f(code, null)) : child.on('message', f)) as JobProcess['on'],
  };
}

/** every LabApi method becomes an IPC channel `lab:<method>`; errors travel back as messages */
export function serveLab(lab: Lab, handle: (channel: string, f: (...args: unknown[]) => Promise<unknown>) => void) {
  for (const method of LAB_METHODS) {
    handle(`lab:${method}`, (...args) => (lab[method] as (...a: unknown[]) => Promise<unknown>)(...args));
  }
}

function createWindow(lab: Lab) {
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
  const off = lab.on((e) => win.webContents.send('lab:event', e));
  win.on('closed', off);
  if (process.env.ELECTRON_RENDERER_URL) void win.loadURL(process.env.ELECTRON_RENDERER_URL);
  else void win.loadFile(join(__dirname, '../renderer/index.html'));
  return win;
}

app.whenReady().then(async () => {
  session.defaultSession.webRequest.onHeadersReceived((details, callback) => {
    callback({
      responseHeaders: {
        ...details.responseHeaders,
        'Content-Security-Policy': ["default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:"],
      },
    });
  });
  const lab = await createLab({ spawner: utilitySpawner });
  serveLab(lab, (channel, f) => ipcMain.handle(channel, (_event, ...args) => f(...args)));
  ipcMain.handle('dialog:open', async (_e, filters: { name: string; extensions: string[] }[]) => {
    const r = await dialog.showOpenDialog({ properties: ['openFile'], filters });
    return r.canceled ? null : r.filePaths[0];
  });
  Menu.setApplicationMenu(Menu.buildFromTemplate([
    { role: 'fileMenu' }, { role: 'editMenu' }, { role: 'viewMenu' }, { role: 'windowMenu' },
  ]));
  createWindow(lab);
  app.on('activate', () => {
    if (BrowserWindow.getAllWindows().length === 0) createWindow(lab);
  });
});

app.on('window-all-closed', () => {
  if (process.platform !== 'darwin') app.quit();
});
