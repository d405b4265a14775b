// The registry of training methods: one module each (method.ts says what a module gives). Adding a
// method is its module, a line here, and its row in method-info.ts (name, description) and
// settings.ts (learning rate, settings of its own).
import type { Engine } from '../engine/backend.js';
import type { Adapter } from './adapter.js';
import type { LlamaModel, ModelHeader } from '../model/llama.js';
import { full, galore, naturalGalore } from './galore.js';
import { hut } from './hut.js';
import { lora } from './lora.js';
import type { Method, MethodConfig, ModelView } from './method.js';
import { METHODS, type MethodName } from './method-info.js';
import { mos } from './mos.js';
import { perp } from './perp.js';
import type { OptimizerConfig } from './trainer.js';

export { METHODS, METHOD_INFO, type MethodName } from './method-info.js';
export type { Method, MethodConfig, ModelView } from './method.js';
export { galoreSettings } from './galore.js';
export { mosSettings } from './mos.js';

const REGISTRY: Record<MethodName, Method> = { lora, hut, mos, perp, full, galore, 'natural-galore': naturalGalore };

/** the method called `name`, or an error that lists them */
export function methodOf(name: string): Method {
  if (!Object.hasOwn(REGISTRY, name)) throw new Error(`unknown method "${name}"; choose one of ${METHODS.join(', ')}`);
  return REGISTRY[name as MethodName];
}

/** the model as methods see it: its header (read once per run) and the weights when loaded */
export function modelView(header: ModelHeader, loaded?: LlamaModel): ModelView {
  return { ...header, loaded };
}

/** methods that train every weight: the model is loaded with F32 master weights */
export const isFullParameter = (m: MethodName) => methodOf(m).full;

/** the method's adapter on a model (loaded with `master` for full-parameter methods), not yet initialised */
export function makeAdapter(engine: Engine, model: ModelView, c: MethodConfig, opt: OptimizerConfig): Adapter {
  return methodOf(c.method).build(engine, model, c, opt);
}
