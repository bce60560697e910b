#!/usr/bin/env node
// tessera-worker: one subcommand per workload mode; each mode lives in its own module and is
// only registered here. Modes the operator launches (train, compress, serve) read the spec file
// the operator mounts and report to the status hub. A train method whose engine is not built yet
// fails with reason NotImplemented and exit code 3, so its Job fails visibly and says why.
import { Command } from 'commander';
import { pino } from 'pino';
import { runCompress } from './modes/compress.js';
import { registerEval } from './modes/eval.js';
import { JD_BUNDLE_SOURCE } from './modes/jd-adapter-source.js';
import { registerPretrain } from './modes/pretrain.js';
import { registerTaskAdapters } from './modes/task-adapters.js';
import { runServe } from './modes/serve.js';
import { runTrain } from './modes/train.js';
import { runWorkload } from './modes/workload.js';

interface OperatorMode {
  name: 'train' | 'compress' | 'serve';
  summary: string;
}

const OPERATOR_MODES: readonly OperatorMode[] = [
  { name: 'train', summary: 'prune a base model and fine-tune LoRA adapters on it (SparseFineTune)' },
  { name: 'compress', summary: 'compress a collection of LoRA adapters into a JD bundle (AdapterCluster)' },
  { name: 'serve', summary: 'serve the base model and adapter bundles behind an OpenAI-compatible API (LoRAServer)' },
];

// stderr, synchronously: the last line must be written before process.exit.
const log = pino(
  { base: { component: 'worker' }, formatters: { level: (label) => ({ level: label }) } },
  pino.destination({ dest: 2, sync: true }),
);

const program = new Command('tessera-worker')
  .description('Runs one Tessera workload: training, adapter compression, serving, pretraining or evaluation.')
  .showHelpAfterError();

for (const mode of OPERATOR_MODES) {
  program
    .command(mode.name)
    .description(mode.summary)
    .requiredOption('--spec <file>', 'workload spec (JSON) written by the operator')
    .action(async (opts: { spec: string }) => {
      if (mode.name === 'compress') process.exitCode = await runWorkload(mode.name, opts.spec, log, runCompress);
      else if (mode.name === 'serve') process.exitCode = await runWorkload(mode.name, opts.spec, log, runServe, { announceStart: false });
      else process.exitCode = await runWorkload(mode.name, opts.spec, log, runTrain);
    });
}
registerPretrain(program);
registerTaskAdapters(program);
registerEval(program, { adapterSources: [JD_BUNDLE_SOURCE] });

try {
  await program.parseAsync(process.argv);
} catch (err) {
  log.error({ err }, 'tessera-worker failed');
  process.exitCode = 1;
}
