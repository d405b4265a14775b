// `hone train`'s flags to a run config, through the settings table (tune/settings.ts): the same
// resolveTrainConfig the lab API runs for the app, so the same choices give the same config.
import { parseArgs } from 'node:util';
import { readGguf } from '../lab/model/gguf.js';
import { hparamsOf } from '../lab/model/llama.js';
import { parseBytes } from '../lab/offload/measure.js';
import type { TrainConfig } from '../lab/tune/run.js';
import { cliOptions, fromFlags, resolveTrainConfig } from '../lab/tune/settings.js';

function fail(message: string): never {
  throw new Error(message);
}

/** `hone train`'s config: every flag from the settings table, checked and filled by the same
 *  resolveTrainConfig the lab API runs for the app (or, with --resume, the run's own config) */
export function trainConfigFromArgs(argv: string[]): { cfg: TrainConfig; out: string; resume: boolean; json: boolean } {
  const { values } = parseArgs({
    args: argv,
    options: { ...cliOptions(), model: { type: 'string' }, data: { type: 'string' }, out: { type: 'string' }, resume: { type: 'boolean' }, json: { type: 'boolean' } },
  });
  const out = values.out ?? fail('--out <dir> is required');
  const given = fromFlags(values, parseBytes);
  if (values.resume) {
    // a resume keeps the run's settings; only the length and the machine's budgets may change
    const { steps, epochs, offload } = given as Partial<TrainConfig>;
    return { cfg: { steps, epochs, offload } as TrainConfig, out, resume: true, json: !!values.json };
  }
  if (!values.model) fail('--model <model.gguf> is required');
  if (!values.data) fail('--data <file> is required');
  // the settings first (no file needed to refuse a bad value), then the model's depth for the
  // defaults that follow it
  const withPaths = { ...given, model: values.model, data: values.data };
  resolveTrainConfig(withPaths);
  const nLayer = hparamsOf(readGguf(values.model)).nLayer;
  return { cfg: resolveTrainConfig(withPaths, { nLayer }), out, resume: false, json: !!values.json };
}

