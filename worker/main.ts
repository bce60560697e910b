#!/usr/bin/env node
// tessera-worker: one subcommand per workload mode. Each mode will live in its own folder
// (worker/train, worker/compress, worker/serve, …) and only be registered here; until one
// is, its subcommand fails fast with a structured NotImplemented error and exit code 3, so a
// Job that runs it fails visibly instead of hanging or reporting success.
import { Command } from 'commander';
import { pino } from 'pino';

/** Distinct from 1 (usage errors, crashes) so callers can tell "not built yet" from "broken". */
const EXIT_NOT_IMPLEMENTED = 3;

interface Mode {
  name: 'train' | 'compress' | 'serve' | 'pretrain' | 'eval';
  summary: string;
}

const MODES: readonly Mode[] = [
  { name: 'train', summary: 'prune a base model and fine-tune LoRA adapters on it (SparseFineTune)' },
  { name: 'compress', summary: 'compress a collection of LoRA adapters into a JD bundle (AdapterCluster)' },
  { name: 'serve', summary: 'serve the base model and adapter bundles behind an OpenAI-compatible API (LoRAServer)' },
  { name: 'pretrain', summary: 'pretrain a tiny Llama-architecture base model and save it as a Hugging Face checkpoint' },
  { name: 'eval', summary: 'evaluate a model or adapters on a dataset (perplexity, relative performance)' },
];

// stderr, synchronously: the error line must be written before process.exit.
const log = pino(
  { base: { component: 'worker' }, formatters: { level: (label) => ({ level: label }) } },
  pino.destination({ dest: 2, sync: true }),
);

function notImplemented(mode: Mode['name'], spec: string): never {
  log.error({ reason: 'NotImplemented', mode, spec }, `tessera-worker ${mode} is not implemented yet`);
  process.exit(EXIT_NOT_IMPLEMENTED);
}

const program = new Command('tessera-worker')
  .description('Runs one Tessera workload: training, adapter compression, serving, pretraining or evaluation.')
  .showHelpAfterError();

for (const mode of MODES) {
  program
    .command(mode.name)
    .description(mode.summary)
    .requiredOption('--spec <file>', 'workload spec (JSON or YAML) written by the operator')
    .action((opts: { spec: string }) => notImplemented(mode.name, opts.spec));
}

// parseAsync, so modes whose actions are async (all real ones) finish before the process ends.
await program.parseAsync(process.argv);
