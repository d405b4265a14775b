// Child-process entry for the store test: writes the store over and over until killed.
// It says 'ready' only once its first write is on disk, so that the test's kill, however
// slow the machine, always lands on a database that has something to lose.
import { Store } from '../../electron/lab/store/store.js';

const store = await Store.open(process.argv[2]);
// a large payload so that each write takes a while and a kill lands inside one
const write = (i: number) => store.upsertRun({ id: `run-${i % 50}`, dir: `/runs/${i}`, config: { blob: 'x'.repeat(200_000), i }, step: i });
await write(0);
process.send?.('ready');
for (let i = 1; ; i++) await write(i);
