// The app end to end in Debian's Chromium (playwright-core, never a downloaded browser) against
// `hone serve`: choose a model, drop a dataset (a real drop event with a file), see the preview and
// a rejected row, train, watch the loss chart grow, cancel, resume, see the run in Runs, export an
// adapter. Screenshots of each page go to tests/e2e/screens/.
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser, type Page } from 'playwright-core';
import { createLab } from '../../electron/lab/api.js';
import { projectRoot } from '../../electron/lab/engine/native.js';
import { sampleChatRows } from '../../electron/lab/data/samples.js';
import { serve, type Served } from '../../electron/serve/server.js';
import { testDir, tinyModel } from '../helpers/models.js';

const CHROMIUM = '/usr/bin/chromium';
const renderer = join(projectRoot, 'out', 'renderer');
const screens = join(projectRoot, 'tests', 'e2e', 'screens');
const why = !existsSync(CHROMIUM) ? 'Debian chromium is not installed (apt-get install chromium)' : !existsSync(join(renderer, 'index.html')) ? 'the renderer is not built (npm run build)' : null;
if (why) console.warn(`e2e skipped: ${why}`);

describe.skipIf(why !== null)('the app in a browser', () => {
  const dir = join(testDir, `e2e-${process.pid}`);
  let s: Served;
  let browser: Browser;
  let page: Page;
  const shot = (name: string) => page.screenshot({ path: join(screens, `${name}.png`), fullPage: true });

  beforeAll(async () => {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    mkdirSync(screens, { recursive: true });
    s = await serve({ lab: await createLab({ home: join(dir, 'home') }), allow: [dir], staticDir: renderer });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await page.goto(s.url);
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    await s?.close();
  });

  it('Models: choosing a GGUF shows its details and the fit estimate', async () => {
    await page.locator('input[type=file]').setInputFiles(tinyModel({}));
    await expect.poll(() => page.locator('table.details').textContent(), { timeout: 60_000 }).toContain('llama');
    expect(await page.locator('ul.fit').textContent()).toMatch(/fits/);
    await shot('models');
  });

  it('Datasets: a dropped file shows the templated preview and a rejected row with its reason', async () => {
    await page.getByRole('button', { name: 'Datasets' }).click();
    const text = [...sampleChatRows().map((r) => JSON.stringify(r)), '{"messages": [{"role": "user", "content": "no answer"}]}'].join('\n');
    await page.evaluate((body) => {
      const dt = new DataTransfer();
      dt.items.add(new File([body], 'facts.jsonl', { type: 'application/jsonl' }));
      const zone = document.querySelector('.drop')!;
      zone.dispatchEvent(new DragEvent('dragover', { dataTransfer: dt, bubbles: true, cancelable: true }));
      zone.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
    }, text);
    await expect.poll(() => page.locator('.summary').textContent(), { timeout: 60_000 }).toMatch(/18 of 19 rows usable/);
    expect(await page.locator('.rejected').textContent()).toContain('row 19: has no assistant message to learn from');
    expect(await page.locator('.trained').first().textContent()).toContain('Quxville');
    await shot('datasets');
  });

  it('Train: the loss chart grows while it runs; cancel, resume, it finishes', async () => {
    await page.getByRole('button', { name: 'Train' }).click();
    // each method shows its own settings
    await page.getByLabel('Method').selectOption('mos');
    await page.getByLabel('MoS budget').waitFor();
    await page.getByLabel('Method').selectOption('hut');
    await page.getByLabel('HUT form').waitFor();
    expect(await page.getByLabel('MoS budget').count()).toBe(0);
    await page.getByLabel('Method').selectOption('natural-galore');
    await page.getByLabel('Fisher history').waitFor();
    expect(await page.getByLabel('Learning rate').inputValue()).toBe('0.0003'); // natural-galore's own default
    await page.getByLabel('Method').selectOption('lora');
    expect(await page.getByLabel('HUT form').count()).toBe(0);
    expect(await page.getByLabel('Learning rate').inputValue()).toBe('0.0002'); // LoRA's
    // a tiny random model learns the facts in 40 steps only at a high rate and short windows
    await page.getByLabel('Steps').fill('40');
    await page.getByLabel('Learning rate').fill('3e-3');
    await page.getByLabel('Sequence').fill('64');
    await page.getByRole('button', { name: 'Train', exact: true }).last().click();
    const points = async () => Number(await page.locator('.chart').getAttribute('data-points'));
    await expect.poll(points, { timeout: 90_000 }).toBeGreaterThan(3);
    const before = await points();
    await expect.poll(points, { timeout: 60_000 }).toBeGreaterThan(before);
    await page.getByRole('button', { name: 'Cancel' }).click();
    await expect.poll(() => page.locator('.status').textContent(), { timeout: 60_000 }).toBe('stopped');
    await shot('train-stopped');
    await page.getByRole('button', { name: 'Resume' }).click();
    await expect.poll(() => page.locator('.status').textContent(), { timeout: 120_000 }).toBe('done');
    expect(await page.locator('.stats').textContent()).toMatch(/step 40\/40 .* memory [\d.]+ MiB/);
    await shot('train');
  });

  it('Runs lists the finished run; Export writes an adapter and shows its size', async () => {
    await page.getByRole('button', { name: 'Runs' }).click();
    await expect.poll(() => page.locator('table.runs tbody').textContent(), { timeout: 30_000 }).toMatch(/done\s*40\/40/);
    await page.locator('table.runs input[type=checkbox]').first().check();
    await expect.poll(async () => Number(await page.locator('.chart').getAttribute('data-points')), { timeout: 30_000 }).toBeGreaterThan(10);
    await shot('runs');
    await page.getByRole('button', { name: 'Export' }).click();
    await page.getByRole('button', { name: /LoRA adapter GGUF/ }).click();
    await expect.poll(() => page.locator('.written').textContent(), { timeout: 60_000 }).toMatch(/adapter\.gguf — [\d.]+ (KiB|MiB)/);
    await shot('export');
  });

  it('Chat: base and tuned (base + the exported adapter) answer side by side, streamed', async () => {
    const adapter = (await page.locator('.written li').first().textContent())!.split(' — ')[0];
    await page.getByRole('button', { name: 'Chat' }).click();
    await page.getByPlaceholder('adapter .gguf (optional)').fill(adapter);
    await page.getByPlaceholder('Ask both…').fill('What is the capital of Zorbia?');
    await page.getByRole('button', { name: 'Ask' }).click();
    await expect.poll(async () => (await page.locator('.answer-tuned').textContent())!.length, { timeout: 60_000 }).toBeGreaterThan(0);
    expect((await page.locator('.answer-base').textContent())!.length).toBeGreaterThan(0);
    await shot('chat');
  });

  it('Compress: the trained run, pruned with PERP and quantized with learned codes, one click; the report shows each stage', async () => {
    await page.getByRole('button', { name: 'Compress' }).click();
    const run = await page.locator('select[name=source] option').nth(1).getAttribute('value');
    await page.getByLabel('Model').selectOption(run!);
    await page.getByLabel('Preset').selectOption({ label: '50% pruned + PERP, Q4_K learned' });
    expect(await page.getByLabel('Pruning').inputValue()).toBe('perp');
    await page.getByLabel('Quantization').selectOption('q8_0-learned'); // rows of 64: Q4_K needs 256
    await page.getByLabel('Retraining steps').fill('10');
    await page.getByLabel('Quantization').selectOption('nupes4');
    expect(await page.locator('.note').textContent()).toMatch(/Hone only.*cannot load it/);
    await page.getByLabel('Quantization').selectOption('q8_0-learned');
    await page.getByRole('button', { name: 'Compress', exact: true }).last().click();
    await expect.poll(() => page.locator('.status b').textContent(), { timeout: 180_000 }).toBe('done');
    const report = await page.locator('table.report tbody').textContent();
    expect(report).toMatch(/merge.*prune.*50\.0% sparse.*retrain.*trained 0\.\d+% of parameters.*quantize/s);
    await expect.poll(() => page.locator('.written').textContent(), { timeout: 30_000 }).toMatch(/perp50-q8_0-learned\.gguf — [\d.]+ MiB.*Modelfile/s);
    await shot('compress');
  });
});
