// The architectures Hone trains, by general.architecture, and a clear refusal for the others.
import type { Architecture } from './architecture.js';
import { gemma3 } from './arch/gemma3.js';
import { llama } from './arch/llama.js';
import { mistral3 } from './arch/mistral3.js';
import { phi3 } from './arch/phi3.js';
import { qwen2 } from './arch/qwen2.js';
import { qwen3 } from './arch/qwen3.js';

export const ARCHITECTURES: Record<string, Architecture> = { llama, qwen2, qwen3, phi3, gemma3, mistral3 };
export const ARCHITECTURE_NAMES = Object.keys(ARCHITECTURES);

const SUPPORTED = `Hone trains ${ARCHITECTURE_NAMES.join(', ')} (Llama 3.x and older Mistral models are stored as "llama")`;

/** families people ask for, with what stands in the way */
const NOT_YET: Record<string, string> = {
  gemma2: 'Gemma 2 is not trained by Hone yet',
  gemma: 'Gemma is not trained by Hone yet',
  phi2: 'Phi-2 (LayerNorm, parallel attention and MLP) is not trained by Hone yet',
};

/**
 * The unit of `arch`, or an error message saying why not: unknown, not yet, or a mixture of experts
 * (`experts` > 0, from <arch>.expert_count) — Hone would train its attention and shared layers with
 * the experts frozen, which it cannot do yet.
 */
export function architectureOf(arch: string, experts = 0): Architecture | string {
  if (experts > 0 || /moe$|^gpt-oss$|^mixtral$|^deepseek2$|^granitemoe/.test(arch)) {
    return `"${arch}" is a mixture-of-experts model${experts > 0 ? ` (${experts} experts)` : ''}; Hone cannot train it yet (it would train the attention layers and norms with the experts frozen). ${SUPPORTED}`;
  }
  const unit = ARCHITECTURES[arch];
  if (unit) return unit;
  return `${NOT_YET[arch] ?? `architecture "${arch}" is not one Hone can train`}; ${SUPPORTED}`;
}
