// pretrain (tiny size) and eval end to end: the model clearly learns, the saved directory is a
// normal Hugging Face checkpoint that loads back, and eval reproduces the reported numbers
// from it — with any input format and with a do-nothing adapter.
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { pino } from 'pino';
import { openHfCheckpoint } from '../../../worker/formats/hf-checkpoint.js';
import { buildLoraAdapter, loraConfig, saveLoraAdapter } from '../../../worker/formats/peft.js';
import { TextTokenizer } from '../../../worker/formats/tokenizer.js';
import { buildPrefillGraph, linearPath, prefillFeeds } from '../../../worker/model/llama/index.js';
import { evalPerplexity, PEFT_DIRECTORY_SOURCE, perplexityWindows, registerEval, runEval } from '../../../worker/modes/eval.js';
import { JD_BUNDLE_SOURCE } from '../../../worker/modes/jd-adapter-source.js';
import { compressAdapters } from '../../../worker/compress/run.js';
import { generate } from '../../../worker/modes/generate.js';
import { loadModel } from '../../../worker/modes/load-model.js';
import { buildPretrainCorpus, pretrain, type PretrainResult, registerPretrain } from '../../../worker/modes/pretrain.js';
import { SessionCache } from '../../../worker/onnx/session.js';
import { IGNORE_INDEX } from '../../../worker/train/data.js';

const relative = (a: number, b: number): number => Math.abs(a - b) / Math.abs(b);

describe('pretrain and eval', function () {
  this.timeout(120_000);
  let dir: string;
  let model: string;
  let result: PretrainResult;
  const cache = new SessionCache({ intraOpThreads: 1 });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tessera-pretrain-'));
    model = join(dir, 'tiny');
    result = await pretrain({ output: model, size: 'tiny', seed: 0, threads: 1, log: pino({ level: 'silent' }) });
  });
  after(async () => {
    rmSync(dir, { recursive: true, force: true });
    await cache.dispose();
  });

  it('tiny pretraining cuts validation perplexity below 0.6× its starting value', () => {
    const { before: b, after: a } = result.validation;
    assert.ok(b.perplexity > 300, `a fresh model should be near uniform over 512 tokens, got ${b.perplexity}`);
    assert.ok(a.perplexity < 0.6 * b.perplexity, `perplexity ${b.perplexity.toFixed(1)} → ${a.perplexity.toFixed(1)}`);
    assert.equal(result.samples.length, 3);
    assert.ok(result.samples.every((s) => s.continuation.trim().length > 0));
  });

  it('saves a Hugging Face checkpoint that opens with openHfCheckpoint and TextTokenizer.load', async () => {
    const ckpt = await openHfCheckpoint(model);
    try {
      assert.equal(ckpt.config.modelType, 'llama');
      assert.equal(ckpt.config.vocabSize, 512);
      assert.equal(ckpt.config.hiddenSize, 64);
      assert.deepEqual(ckpt.ignoredTensors, []);
      assert.ok(ckpt.tokenizerPath?.endsWith('tokenizer.json'));
      assert.equal(ckpt.generationConfig?.eos_token_id, ckpt.config.eosTokenId);
    } finally {
      await ckpt.close();
    }
    const tok = await TextTokenizer.load(model);
    assert.equal(tok.vocabSize, 512);
    assert.equal(tok.decode(tok.encode('Call me Ishmael.'), { skipSpecialTokens: true }), 'Call me Ishmael.');
  });

  it('evalPerplexity on the saved directory reproduces the reported validation perplexity within 1e-3', async () => {
    const loaded = await loadModel(model);
    const tok = loaded.tokenizer as TextTokenizer;
    const sequences = buildPretrainCorpus('tiny', 0).validation.map((d) => tok.encode(d.text));
    const r = await evalPerplexity({ config: loaded.config, weights: loaded.weights, sequences, sequenceLength: result.validation.sequenceLength, batchSize: 3, cache });
    assert.equal(r.tokens, result.validation.after.tokens);
    assert.ok(relative(r.perplexity, result.validation.after.perplexity) < 1e-3, `${r.perplexity} vs ${result.validation.after.perplexity}`);
  });

  it('greedy generation with the KV cache picks the same tokens as re-running the whole sequence, with or without left padding', async () => {
    const loaded = await loadModel(model);
    const tok = loaded.tokenizer as TextTokenizer;
    const prompts = ['Call me Ishmael.', 'The'].map((p) => tok.encode(p));
    const cached = await generate({ config: loaded.config, weights: loaded.weights, prompts, maxNewTokens: 6, cache });
    const prefill = await cache.forGraph(buildPrefillGraph(loaded.config, { weights: loaded.weights }).graph);
    for (const [r, prompt] of prompts.entries()) {
      const seq = [...prompt];
      for (let i = 0; i < 6; i++) {
        const logits = (await prefill.run(prefillFeeds([seq]).feeds)).logits?.data as Float32Array;
        seq.push(logits.indexOf(Math.max(...logits)));
      }
      assert.deepEqual(cached[r], seq.slice(prompt.length), `prompt ${r}`);
      assert.deepEqual((await generate({ config: loaded.config, weights: loaded.weights, prompts: [prompt], maxNewTokens: 6, cache }))[0], cached[r]);
    }
  });

  describe('eval', () => {
    const text = 'Call me Ishmael. Some years ago, never mind how long precisely, I thought I would sail about a little and see the watery part of the world.';

    it('gives the same perplexity for a text file, JSON Lines and pre-tokenized input_ids of the same text', async () => {
      const tok = await TextTokenizer.load(model);
      const files = {
        text: join(dir, 'same.txt'),
        jsonl: join(dir, 'same.jsonl'),
        tokens: join(dir, 'same.tokens.jsonl'),
        field: join(dir, 'field.jsonl'),
      };
      writeFileSync(files.text, text);
      writeFileSync(files.jsonl, `${JSON.stringify({ text })}\n`);
      writeFileSync(files.tokens, `${JSON.stringify({ input_ids: tok.encode(text) })}\n`);
      writeFileSync(files.field, `${JSON.stringify({ body: text })}\n`);
      const base = { model, sequenceLength: 16, batchSize: 2 };
      const fromText = await runEval({ ...base, data: files.text }, undefined, cache);
      const fromJsonl = await runEval({ ...base, data: files.jsonl }, undefined, cache);
      const fromTokens = await runEval({ ...base, data: files.tokens, format: 'tokens' }, undefined, cache);
      const fromField = await runEval({ ...base, data: files.field, textField: 'body' }, undefined, cache);
      assert.equal(fromText.tokens, tok.encode(text).length - 1);
      for (const r of [fromJsonl, fromTokens, fromField]) {
        assert.equal(r.tokens, fromText.tokens);
        assert.ok(relative(r.perplexity, fromText.perplexity) < 1e-6, `${r.perplexity} vs ${fromText.perplexity}`);
      }
    });

    it('with a PEFT adapter whose B is zero gives the same perplexity as without', async () => {
      const loaded = await loadModel(model);
      const d = loaded.config.hiddenSize;
      const kv = loaded.config.numKeyValueHeads * loaded.config.headDim;
      const pairs = [0, 1].flatMap((l) => [
        { name: linearPath(l, 'q_proj'), A: { dtype: 'F32' as const, shape: [4, d], data: Float32Array.from({ length: 4 * d }, (_, i) => Math.sin(i)) }, B: { dtype: 'F32' as const, shape: [d, 4], data: new Float32Array(d * 4) } },
        { name: linearPath(l, 'v_proj'), A: { dtype: 'F32' as const, shape: [4, d], data: Float32Array.from({ length: 4 * d }, (_, i) => Math.cos(i)) }, B: { dtype: 'F32' as const, shape: [kv, 4], data: new Float32Array(kv * 4) } },
      ]);
      const adapterDir = join(dir, 'zero-adapter');
      await saveLoraAdapter(adapterDir, buildLoraAdapter(loraConfig({ r: 4, loraAlpha: 8, targetModules: ['q_proj', 'v_proj'] }), pairs));
      const data = join(dir, 'adapter.txt');
      writeFileSync(data, text);
      const without = await runEval({ model, data, sequenceLength: 32 }, undefined, cache);
      const withAdapter = await runEval({ model, data, sequenceLength: 32, adapter: adapterDir }, undefined, cache);
      assert.equal(withAdapter.tokens, without.tokens);
      assert.ok(relative(withAdapter.perplexity, without.perplexity) < 1e-6, `${withAdapter.perplexity} vs ${without.perplexity}`);
    });

    it('with a JD bundle adapter (BUNDLE#NAME) gives the perplexity of the PEFT adapter it compresses exactly', async () => {
      const loaded = await loadModel(model);
      const d = loaded.config.hiddenSize;
      const kv = loaded.config.numKeyValueHeads * loaded.config.headDim;
      const wave = (n: number, seed: number, scale: number) => Float32Array.from({ length: n }, (_, i) => scale * Math.sin(seed * 7.3 + i * 0.37));
      const adapters = [];
      for (let i = 0; i < 3; i++) {
        const pairs = [0, 1].flatMap((l) => [
          { name: linearPath(l, 'q_proj'), A: { dtype: 'F32' as const, shape: [2, d], data: wave(2 * d, 10 * i + l, 0.3) }, B: { dtype: 'F32' as const, shape: [d, 2], data: wave(2 * d, 10 * i + l + 5, 0.3) } },
          { name: linearPath(l, 'v_proj'), A: { dtype: 'F32' as const, shape: [2, d], data: wave(2 * d, 10 * i + l + 1, 0.3) }, B: { dtype: 'F32' as const, shape: [kv, 2], data: wave(2 * kv, 10 * i + l + 6, 0.3) } },
        ]);
        const adapterDir = join(dir, `jd-source-${i}`);
        await saveLoraAdapter(adapterDir, buildLoraAdapter(loraConfig({ r: 2, loraAlpha: 4, targetModules: ['q_proj', 'v_proj'] }), pairs));
        adapters.push({ name: `a${i}`, dir: adapterDir });
      }
      // Rank 6 spans all three rank-2 adapters, so JD-Full reconstructs them exactly.
      const bundle = join(dir, 'bundle');
      await compressAdapters({ adapters, method: 'jd-full', rank: 6, clusters: 1, iterations: 20, output: bundle });
      const data = join(dir, 'adapter.txt');
      writeFileSync(data, text);
      const sources = [JD_BUNDLE_SOURCE, PEFT_DIRECTORY_SOURCE];
      const base = await runEval({ model, data, sequenceLength: 32 }, sources, cache);
      const peft = await runEval({ model, data, sequenceLength: 32, adapter: adapters[1]!.dir }, sources, cache);
      const fromBundle = await runEval({ model, data, sequenceLength: 32, adapter: `${bundle}#a1` }, sources, cache);
      assert.ok(relative(peft.perplexity, base.perplexity) > 1e-3, 'the adapter changes the model');
      assert.ok(relative(fromBundle.perplexity, peft.perplexity) < 1e-4, `${fromBundle.perplexity} vs ${peft.perplexity}`);
      await assert.rejects(runEval({ model, data, sequenceLength: 32, adapter: `${bundle}#nope` }, sources, cache), /adapter "nope" is not in bundle revision/);
    });

    it('rejects an adapter for another model, naming the adapter directory and module', async () => {
      const adapterDir = join(dir, 'wrong-adapter');
      const A = { dtype: 'F32' as const, shape: [2, 32], data: new Float32Array(64) };
      const B = { dtype: 'F32' as const, shape: [64, 2], data: new Float32Array(128) };
      await saveLoraAdapter(adapterDir, buildLoraAdapter(loraConfig({ r: 2, targetModules: ['q_proj'] }), [{ name: linearPath(0, 'q_proj'), A, B }]));
      await assert.rejects(runEval({ model, data: join(dir, 'adapter.txt'), adapter: adapterDir }, undefined, cache), /wrong-adapter does not fit the base model.*model\.layers\.0\.self_attn\.q_proj: lora_A is \[2, 32\], expected \[2, 64\]/s);
    });

    it('prints {"perplexity", "tokens", "loss"} as JSON from the command line', async () => {
      const program = new Command('tessera-worker').exitOverride();
      registerEval(program);
      registerPretrain(program);
      const lines: string[] = [];
      const write = process.stdout.write.bind(process.stdout);
      process.stdout.write = ((chunk: string) => lines.push(chunk) > 0) as typeof process.stdout.write;
      try {
        await program.parseAsync(['eval', '--model', model, '--data', join(dir, 'same.jsonl'), '--sequence-length', '16'], { from: 'user' });
      } finally {
        process.stdout.write = write;
      }
      const out = JSON.parse(lines.join('')) as Record<string, number>;
      assert.deepEqual(Object.keys(out).sort(), ['loss', 'perplexity', 'tokens']);
      assert.ok(Math.abs(Math.exp(out.loss as number) - (out.perplexity as number)) < 1e-9);
    });
  });

  it('cuts a token stream into non-overlapping windows that share one boundary token, padding the last', () => {
    assert.deepEqual(perplexityWindows([1, 2, 3, 4, 5, 6], 2), [[1, 2, 3], [3, 4, 5], [5, 6, IGNORE_INDEX]]);
    assert.deepEqual(perplexityWindows([1, 2, 3, 4, 5], 2), [[1, 2, 3], [3, 4, 5]]);
    assert.throws(() => perplexityWindows([1], 4), /at least 2 tokens, the data has 1/);
  });
});
