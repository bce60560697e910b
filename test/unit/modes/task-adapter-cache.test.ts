// The task adapter cache: trained once, reused, grown in parts that equal one run, repaired when
// an adapter goes missing.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { loadLoraAdapter } from '../../../worker/formats/peft.js';
import { cachedTaskAdapters } from '../../../worker/modes/task-adapter-cache.js';
import { brownTasks, trainTaskAdapters } from '../../../worker/modes/task-adapters.js';
import { SessionCache } from '../../../worker/onnx/session.js';

describe('the task adapter cache', function () {
  this.timeout(120_000);
  let root: string;
  const cache = new SessionCache({ intraOpThreads: 1 });
  const log = pino({ level: 'silent' });
  // Few steps: the cache's bookkeeping is under test here, not what training learns.
  const settings = { steps: 3, chunk: 2, log, cache };
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'tessera-task-cache-'));
  });
  after(async () => {
    rmSync(root, { recursive: true, force: true });
    await cache.dispose();
  });

  it('trains the base and the adapters once, then serves them from disk', async () => {
    const first = await cachedTaskAdapters({ root, count: 2, ...settings });
    assert.equal(first.trainedNow, 2);
    assert.deepEqual(first.adapters.map((a) => a.name), brownTasks(2).map((t) => t.name));
    const again = await cachedTaskAdapters({ root, count: 2, ...settings });
    assert.equal(again.trainedNow, 0);
    assert.deepEqual(again.adapters, first.adapters);
    assert.equal(again.base, first.base);
  });

  it('grows the collection in parts that equal training it at once (adapter i always takes seed + i)', async () => {
    const grown = await cachedTaskAdapters({ root, count: 3, ...settings });
    assert.equal(grown.trainedNow, 1, 'only the third adapter is new');
    const once = await trainTaskAdapters({ model: grown.base, tasks: brownTasks(3), rank: 4, steps: 3, output: join(root, 'once'), seed: 0, log, cache, progressBar: false });
    const third = await loadLoraAdapter(grown.adapters[2]!.dir);
    const reference = await loadLoraAdapter(once.adapters[2]!.dir);
    for (const [name, m] of reference.modules) {
      assert.deepEqual(third.modules.get(name)?.A.data, m.A.data, `${name} lora_A`);
      assert.deepEqual(third.modules.get(name)?.B.data, m.B.data, `${name} lora_B`);
    }
    assert.equal(grown.adapters[2]!.pplLora, once.adapters[2]!.pplLora);
    // Asking for fewer keeps the rest cached.
    assert.equal((await cachedTaskAdapters({ root, count: 1, ...settings })).adapters.length, 1);
    assert.equal((await cachedTaskAdapters({ root, count: 3, ...settings })).trainedNow, 0);
  });

  it('retrains from the first adapter whose files are missing', async () => {
    const before = await cachedTaskAdapters({ root, count: 3, ...settings });
    await rm(before.adapters[1]!.dir, { recursive: true });
    const repaired = await cachedTaskAdapters({ root, count: 3, ...settings });
    assert.equal(repaired.trainedNow, 2, 'adapters 1 and 2');
    assert.deepEqual(repaired.adapters.map((a) => a.pplLora), before.adapters.map((a) => a.pplLora), 'the same adapters again');
  });

  it('keeps different settings apart', async () => {
    const other = await cachedTaskAdapters({ root, count: 1, ...settings, steps: 4 });
    assert.equal(other.trainedNow, 1);
    assert.notEqual(other.output, (await cachedTaskAdapters({ root, count: 1, ...settings })).output);
  });
});
