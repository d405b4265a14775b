// Child-process entry for the store test: writes the store over and over until killed.
import { Store } from '../../electron/lab/store/store.js';

const store = await Store.open(process.argv[2]);
process.send?.('ready');
for (let i = 0; ; i++) {
  // a large payload so that each write takes a while and a kill lands inside one
  await store.upsertRun({ id: `run-${i % 50}`, dir: `/runs/${i}`, config: { blob: 'x'.repeat(200_000), i }, step: i });
}
