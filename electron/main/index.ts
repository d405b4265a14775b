// Electron's main process: one window, a menu, native dialogs, and IPC handlers that forward to the
// lab API (`lab:<method>`); lab events go to the window as `lab:event`. Thin.
import { app, BrowserWindow, Menu, dialog, ipcMain, session, utilityProcess } from 'electron';
import { join } from 'node:path';
import { createLab, type Lab } from '../lab/api.js';
import { lastLines, type JobProcess } from '../lab/jobs/manager.js';
import { PathPolicy } from '../lab/path-policy.js';
import { serveLab } from './ipc.js';

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
  // the window may use Hone's data folder, the models the user added before, and what the user
  // picks in a dialog or drops on the window in this session
  const policy = new PathPolicy({
    home: lab.home,
    howToShare: 'choose it with the Open button or drop it on the window',
    alsoReadable: () => lab.store.data.models.map((m) => m.path),
  });
  serveLab(lab, policy, (channel, f) => ipcMain.handle(channel, (_event, ...args) => f(...args)));
  ipcMain.handle('dialog:open', async (_e, filters: { name: string; extensions: string[] }[]) => {
    const r = await dialog.showOpenDialog({ properties: ['openFile'], filters });
    if (r.canceled) return null;
    policy.share(r.filePaths[0], 'read');
    return r.filePaths[0];
  });
  ipcMain.handle('dialog:folder', async () => {
    const r = await dialog.showOpenDialog({ properties: ['openDirectory', 'createDirectory'] });
    if (r.canceled) return null;
    policy.share(r.filePaths[0], 'write');
    return r.filePaths[0];
  });
  // a file dropped on the window: the preload reads its path from the File (webUtils, which gives
  // nothing for a File the page made itself) and shares it here; the page cannot reach this channel
  ipcMain.handle('share:dropped', (_e, path: unknown) => {
    if (typeof path === 'string' && path) policy.share(path, 'read');
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
