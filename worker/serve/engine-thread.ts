// The engine thread's entry point: loads the checkpoint, builds the sessions, then runs the
// batching loop, yielding to its own event loop between steps so that submits and cancels are
// seen at every step. ORT's session.run blocks the thread that calls it; here that is this
// thread, never the one answering HTTP and gRPC.
import { parentPort, workerData } from 'node:worker_threads';
import { loadModel } from '../modes/load-model.js';
import { EngineCore } from './engine-core.js';
import type { EngineThreadData, FromEngine, ToEngine } from './engine-protocol.js';
import { ModelRunner } from './model-runner.js';

if (!parentPort) throw new Error('engine-thread.ts runs as a worker thread (see engine.ts)');
const port = parentPort;
const data = workerData as EngineThreadData;
const post = (m: FromEngine): void => port.postMessage(m);

async function main(): Promise<void> {
  const started = Date.now();
  const model = await loadModel(data.modelDir, { tokenizer: false });
  const runner = new ModelRunner({ config: model.config, weights: model.weights, session: data.intraOpThreads === undefined ? {} : { intraOpThreads: data.intraOpThreads } });
  await runner.usePack(data.pack);
  const core = new EngineCore(runner, data.limits, (events) => post({ type: 'events', events }));

  let stopping = false;
  let wake: (() => void) | undefined;
  port.on('message', (m: ToEngine) => {
    switch (m.type) {
      case 'pack':
        core.setPack(m.pack);
        break;
      case 'submit':
        for (const s of m.seqs) core.submit(s);
        break;
      case 'cancel':
        for (const id of m.ids) core.cancel(id);
        break;
      case 'stop':
        stopping = true;
        break;
    }
    wake?.();
  });
  post({ type: 'ready', loadMs: Date.now() - started });

  while (!stopping) {
    if (!core.busy) {
      await new Promise<void>((resolve) => (wake = resolve));
      wake = undefined;
      continue;
    }
    await core.step();
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  await runner.dispose();
  port.close();
}

main().catch((err: unknown) => {
  post({ type: 'fatal', message: err instanceof Error ? err.message : String(err) });
  port.close();
});
