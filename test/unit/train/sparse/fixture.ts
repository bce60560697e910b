// A pretrained tiny Llama (pretrain --size tiny: d=64, 2 blocks, ffn 176, ~3 s on one thread) and
// text for it, shared by the sparse fine-tuning tests. Pruning is compared on a pretrained model
// because a random one has none of the channel structure activation-aware pruning exploits.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { loadMobyDick } from '../../../../worker/data/corpora.js';
import { type LoadedModel, loadModel } from '../../../../worker/modes/load-model.js';
import { pretrain } from '../../../../worker/modes/pretrain.js';

export interface TinyFixture {
  dir: string;
  model: LoadedModel;
  /** Moby Dick paragraphs: the text a fine-tuning run adapts to. */
  paragraphs: string[];
  tokens: number[];
}

let shared: Promise<TinyFixture> | undefined;

/** Pretrains once per test process; later calls share the checkpoint, removed when the process exits. */
export function pretrainedTiny(): Promise<TinyFixture> {
  shared ??= (async () => {
    const root = mkdtempSync(join(tmpdir(), 'tessera-sparse-'));
    // Several test files share the model, so no one file's `after` may remove it.
    process.once('exit', () => rmSync(root, { recursive: true, force: true }));
    const dir = join(root, 'tiny');
    await pretrain({ output: dir, size: 'tiny', seed: 0, threads: 1, log: pino({ level: 'silent' }), progressBar: false });
    const model = await loadModel(dir);
    const text = loadMobyDick().map((d) => d.text).join('\n\n');
    const paragraphs = text.split(/\n\s*\n/).map((p) => p.trim()).filter((p) => p.length > 200).slice(40, 240);
    const tokenizer = model.tokenizer;
    if (!tokenizer) throw new Error('the pretrained tiny model has no tokenizer');
    return { dir, model, paragraphs, tokens: paragraphs.flatMap((p) => tokenizer.encode(p)) };
  })();
  return shared;
}
