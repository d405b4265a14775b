import { mount } from 'svelte';
import App from './App.svelte';
import { httpLab } from './lab-client.js';

// Electron's preload provides window.hone over IPC; in a browser (hone serve) it is HTTP + WebSocket
window.hone ??= httpLab();

mount(App, { target: document.getElementById('app')! });
