// ggml's tensor types: ids as stored in GGUF and ggml, block size and bytes per block.
// Sizes are ggml's own (checked against the native binding in tests/unit/types.test.ts).

export interface GgmlType {
  id: number;
  name: string;
  blockSize: number;
  typeSize: number;
}

const table: [number, string, number, number][] = [
  [0, 'F32', 1, 4], [1, 'F16', 1, 2], [2, 'Q4_0', 32, 18], [3, 'Q4_1', 32, 20], [6, 'Q5_0', 32, 22], [7, 'Q5_1', 32, 24],
  [8, 'Q8_0', 32, 34], [9, 'Q8_1', 32, 36], [10, 'Q2_K', 256, 84], [11, 'Q3_K', 256, 110], [12, 'Q4_K', 256, 144],
  [13, 'Q5_K', 256, 176], [14, 'Q6_K', 256, 210], [15, 'Q8_K', 256, 292], [16, 'IQ2_XXS', 256, 66], [17, 'IQ2_XS', 256, 74],
  [18, 'IQ3_XXS', 256, 98], [19, 'IQ1_S', 256, 50], [20, 'IQ4_NL', 32, 18], [21, 'IQ3_S', 256, 110], [22, 'IQ2_S', 256, 82],
  [23, 'IQ4_XS', 256, 136], [24, 'I8', 1, 1], [25, 'I16', 1, 2], [26, 'I32', 1, 4], [27, 'I64', 1, 8], [28, 'F64', 1, 8],
  [29, 'IQ1_M', 256, 56], [30, 'BF16', 1, 2], [34, 'TQ1_0', 256, 54], [35, 'TQ2_0', 256, 66], [39, 'MXFP4', 32, 17],
];

export const GGML_TYPES: ReadonlyMap<number, GgmlType> = new Map(
  table.map(([id, name, blockSize, typeSize]) => [id, { id, name, blockSize, typeSize }]),
);

export const T = {
  F32: 0, F16: 1, Q4_0: 2, Q8_0: 8, Q4_K: 12, Q5_K: 13, Q6_K: 14, I8: 24, I32: 26, BF16: 30,
} as const;

export function ggmlTypeName(id: number): string {
  return GGML_TYPES.get(id)?.name ?? `type#${id}`;
}

export function ggmlTypeByName(name: string): GgmlType {
  const t = [...GGML_TYPES.values()].find((x) => x.name.toLowerCase() === name.toLowerCase());
  if (!t) throw new Error(`unknown weight type "${name}"; use one of ${[...GGML_TYPES.values()].map((x) => x.name.toLowerCase()).join(', ')}`);
  return t;
}

/** bytes of one row of n elements */
export function rowBytes(type: number, n: number): number {
  const t = GGML_TYPES.get(type);
  if (!t) throw new Error(`unknown ggml type ${type}`);
  return (n / t.blockSize) * t.typeSize;
}
