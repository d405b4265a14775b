// What the pages share: the chosen model and dataset, and the run being watched.
export const lab = $state({
  modelPath: '',
  /** the chosen model's block count (some defaults follow it: MoS's shard budget) */
  modelLayers: null as number | null,
  datasetPath: '',
  runId: '',
});
