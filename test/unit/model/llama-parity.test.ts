// The graphs against the independent NumPy reference (scripts/reference/llama_numpy.py):
// training-graph logits, prefill, and prefill followed by step-by-step decoding, for every
// variant including sliding-window attention (mistral in every layer, qwen2 from a layer on).
import { strict as assert } from 'node:assert';
import {
  buildDecodeGraph,
  buildPrefillGraph,
  buildTrainingGraph,
  int64Rows,
  pastName,
  prefillFeeds,
  presentName,
  sequentialPositions,
} from '../../../worker/model/llama/index.js';
import * as nn from '../../../worker/onnx/index.js';
import { cache, f32, inputIds, maxAbsDiff, positionSlice, variants } from './fixture.js';

const TOL = 1e-4;
const [B, T] = [inputIds.length, (inputIds[0] as number[]).length];

describe('Llama graphs match the NumPy reference', () => {
  after(() => cache.dispose());

  for (const v of variants) {
    describe(`variant ${v.name}`, () => {
      it('the training graph gives the reference logits and the cross-entropy of those logits', async () => {
        const { graph } = buildTrainingGraph(v.config, { weights: v.weights, wrt: ['model.norm.weight'], logits: true });
        const targets = inputIds.map((row) => [...row.slice(1), 0]);
        const weights = new Float32Array(B * T);
        for (let b = 0; b < B; b++) for (let t = 0; t < T - 1; t++) weights[b * T + t] = 1 / (B * (T - 1));
        const s = await cache.forGraph(graph);
        const out = await s.run({
          input_ids: int64Rows(inputIds),
          position_ids: sequentialPositions(B, T),
          targets: int64Rows(targets),
          loss_weights: nn.tensor('float32', [B, T], weights),
          'model.norm.weight': nn.tensor('float32', [v.config.hiddenSize], (v.weights.get('model.norm.weight') as { data: Float32Array }).data),
        });
        const diff = maxAbsDiff(f32(out.logits, 'logits'), v.logits.data);
        assert.ok(diff < TOL, `max |Δlogits| = ${diff}`);

        const vocab = v.config.vocabSize;
        let expected = 0;
        for (let b = 0; b < B; b++) {
          for (let t = 0; t < T - 1; t++) {
            const row = v.logits.data.subarray((b * T + t) * vocab, (b * T + t + 1) * vocab);
            const max = Math.max(...row);
            const lse = max + Math.log(row.reduce((s2, x) => s2 + Math.exp(x - max), 0));
            expected += (lse - (row[(targets[b] as number[])[t] as number] as number)) / (B * (T - 1));
          }
        }
        assert.ok(Math.abs((f32(out.loss, 'loss')[0] as number) - expected) < TOL, `loss ${f32(out.loss, 'loss')[0]} vs ${expected}`);
      });

      it('prefill returns the logits of the last position and a cache of every position', async () => {
        const s = await cache.forGraph(buildPrefillGraph(v.config, { weights: v.weights }).graph);
        const out = await s.run(prefillFeeds(inputIds).feeds);
        const diff = maxAbsDiff(f32(out.logits, 'logits'), positionSlice(v.logits, T - 1));
        assert.ok(diff < TOL, `max |Δlogits| = ${diff}`);
        assert.deepEqual(out[presentName(1, 'key')]?.dims, [B, v.config.numKeyValueHeads, T, v.config.headDim]);
      });

      it('prefill of a left-padded batch gives each row the logits of its own last token', async () => {
        const rows = [inputIds[0] as number[], (inputIds[1] as number[]).slice(0, 4)];
        const s = await cache.forGraph(buildPrefillGraph(v.config, { weights: v.weights }).graph);
        const logits = f32((await s.run(prefillFeeds(rows, 63).feeds)).logits, 'logits');
        const vocab = v.config.vocabSize;
        assert.ok(maxAbsDiff(logits.subarray(0, vocab), positionSlice(v.logits, T - 1).subarray(0, vocab)) < TOL);
        assert.ok(maxAbsDiff(logits.subarray(vocab), positionSlice(v.logits, 3).subarray(vocab)) < TOL);
      });

      it('decoding token by token after a 3-token prefill reproduces the full-sequence logits at each position', async () => {
        const prefill = await cache.forGraph(buildPrefillGraph(v.config, { weights: v.weights }).graph);
        const decode = await cache.forGraph(buildDecodeGraph(v.config, { weights: v.weights }).graph);
        const start = 3;
        let out = await prefill.run(prefillFeeds(inputIds.map((r) => r.slice(0, start))).feeds);
        let worst = maxAbsDiff(f32(out.logits, 'logits'), positionSlice(v.logits, start - 1));
        for (let pos = start; pos < T; pos++) {
          const feeds: Record<string, nn.Tensor> = {
            input_ids: int64Rows(inputIds.map((r) => [r[pos] as number])),
            position_ids: int64Rows(inputIds.map(() => [pos])),
            attention_mask: int64Rows(inputIds.map(() => new Array<number>(pos + 1).fill(1))),
          };
          for (let l = 0; l < v.config.numHiddenLayers; l++) {
            for (const which of ['key', 'value'] as const) feeds[pastName(l, which)] = out[presentName(l, which)] as nn.Tensor;
          }
          out = await decode.run(feeds);
          worst = Math.max(worst, maxAbsDiff(f32(out.logits, 'logits'), positionSlice(v.logits, pos)));
          assert.equal(out[presentName(0, 'key')]?.dims[2], pos + 1);
        }
        assert.ok(worst < TOL, `max |Δlogits| over decode steps = ${worst}`);
      });

      it('decoding a left-padded batch keeps each row on its own positions, window and padding masked together', async () => {
        const prefill = await cache.forGraph(buildPrefillGraph(v.config, { weights: v.weights }).graph);
        const decode = await cache.forGraph(buildDecodeGraph(v.config, { weights: v.weights }).graph);
        const starts = [3, 2]; // row 1 is one slot of padding behind row 0
        const vocab = v.config.vocabSize;
        const rowAt = (r: number, pos: number): Float32Array => v.logits.data.subarray((r * T + pos) * vocab, (r * T + pos + 1) * vocab);
        const compare = (logits: Float32Array, pos: (r: number) => number): number =>
          Math.max(...starts.map((_, r) => maxAbsDiff(logits.subarray(r * vocab, (r + 1) * vocab), rowAt(r, pos(r)))));
        let out = await prefill.run(prefillFeeds(inputIds.map((row, r) => row.slice(0, starts[r]))).feeds);
        let worst = compare(f32(out.logits, 'logits'), (r) => starts[r]! - 1);
        for (let step = 0; starts[0]! + step < T; step++) {
          const pos = (r: number): number => starts[r]! + step;
          const width = 3 + step + 1;
          const feeds: Record<string, nn.Tensor> = {
            input_ids: int64Rows(inputIds.map((row, r) => [row[pos(r)] as number])),
            position_ids: int64Rows(starts.map((_, r) => [pos(r)])),
            attention_mask: int64Rows(starts.map((st) => Array.from({ length: width }, (_, j) => (j < 3 - st ? 0 : 1)))),
          };
          for (let l = 0; l < v.config.numHiddenLayers; l++) {
            for (const which of ['key', 'value'] as const) feeds[pastName(l, which)] = out[presentName(l, which)] as nn.Tensor;
          }
          out = await decode.run(feeds);
          worst = Math.max(worst, compare(f32(out.logits, 'logits'), pos));
        }
        assert.ok(worst < TOL, `max |Δlogits| over padded decode steps = ${worst}`);
      });

      if (v.config.slidingWindow !== null && v.config.slidingWindow !== undefined) {
        it('the same weights without the sliding window give other logits: the window is what the parity checks', async () => {
          const s = await cache.forGraph(buildPrefillGraph({ ...v.config, slidingWindow: null }, { weights: v.weights }).graph);
          const diff = maxAbsDiff(f32((await s.run(prefillFeeds(inputIds).feeds)).logits, 'logits'), positionSlice(v.logits, T - 1));
          assert.ok(diff > 1e-2, `max |Δlogits| without the window = ${diff}`);
        });
      }
    });
  }
});
