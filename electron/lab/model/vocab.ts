// Real tokenizer vocabularies for tiny models: llama.cpp's test vocabularies, taken at run time from
// the source bundle node-llama-cpp ships (models/ggml-vocab-*.gguf). Nothing is downloaded.
import { join } from 'node:path';
import { llamaSource } from '../../../native/paths.mjs';
import { projectRoot } from '../engine/native.js';

/** vocabulary name -> the architecture it belongs with and a chat template when the file lacks one */
export const VOCABS = {
  'llama-spm': { arch: 'llama', template: llama2Template() },
  'llama-bpe': { arch: 'llama', template: llama3Template() },
  qwen2: { arch: 'qwen2', template: undefined },
  'phi-3': { arch: 'phi3', template: undefined },
  'gemma-4': { arch: 'gemma3', template: undefined },
} as const;
export type VocabName = keyof typeof VOCABS;

export function vocabPath(name: VocabName): string {
  if (!(name in VOCABS)) throw new Error(`unknown vocabulary "${name}"; use one of ${Object.keys(VOCABS).join(', ')}`);
  const rel = `models/ggml-vocab-${name}.gguf`;
  return join(llamaSource(projectRoot, [rel]), rel);
}

function llama2Template(): string {
  return (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}" +
    "{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}" +
    "{% for message in loop_messages %}{% if loop.index0 == 0 and system_message != false %}" +
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}" +
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}" +
    "{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
  );
}

function llama3Template(): string {
  return (
    "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}" +
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
  );
}
