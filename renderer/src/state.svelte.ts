// What the pages share: the chosen model and dataset, and the run being watched.
export const lab = $state({
  modelPath: '',
  datasetPath: '',
  runId: '',
});
