// A training run in its own process, for peak-RSS measurements: argv = model, data, run folder,
// JSON of the offload settings (or "null" for in memory). Prints one JSON line: the RSS before the run,
// the peak RSS, the plan's verdict and RAM figure, and the losses.
import { TRAIN_DEFAULTS, runTraining } from '../../electron/lab/tune/run.js';
import { peakRss } from '../../electron/lab/offload/measure.js';

const [model, data, runDir, offloadJson] = process.argv.slice(2);
const offload = JSON.parse(offloadJson);
const before = process.memoryUsage().rss;
const losses: number[] = [];
let fits: boolean | undefined, streaming: boolean | undefined, plan = '', planRam = 0;
await runTraining({ ...TRAIN_DEFAULTS, model, data, steps: 3, lr: 1e-3, seq: 48, batch: 1, rank: 4, alpha: 8, targets: ['q', 'v'], valFraction: 0, evalEvery: 0, saveEvery: 3, ...(offload ? { offload } : {}) }, {
  runDir,
  onEvent: (e) => { if (e.type === 'step') losses.push(e.loss); if (e.type === 'offload') { fits = e.fits; streaming = e.streaming; plan = e.plan; planRam = e.ram; } },
});
console.log(JSON.stringify({ before, peak: peakRss(), fits, streaming, losses, plan, planRam }));
