// The training loop's progress bar: drawn on a terminal only, never into logs or CI captures,
// and off whenever the caller says so. A one-parameter quadratic model stands in for a network
// so the test is about the bar, not about ORT.
import { strict as assert } from 'node:assert';
import { Writable } from 'node:stream';
import { type ProgressStream, showProgressBar, train } from '../../../worker/train/loop.js';
import { type TrainModel } from '../../../worker/train/model-step.js';

/** loss = Σ weights · (w − 3)², one parameter w: enough for the loop to run its steps. */
function quadraticModel(): TrainModel {
  const w = new Float32Array([0]);
  const loss = (weights: Float32Array): number => weights.reduce((s, x) => s + x, 0) * ((w[0] as number) - 3) ** 2;
  return {
    params: new Map([['w', w]]),
    shapes: new Map([['w', [1]]]),
    noDecay: new Set(),
    lossAndGradients: (_b, weights) => {
      const total = weights.reduce((s, x) => s + x, 0);
      return Promise.resolve({ loss: loss(weights), grads: new Map([['w', new Float32Array([2 * total * ((w[0] as number) - 3)])]]) });
    },
    loss: (_b, weights) => Promise.resolve(loss(weights)),
    dispose: () => Promise.resolve(),
  };
}

/** A stream that records what is written; `tty` makes it look like a terminal 80 columns wide. */
function captureStream(tty: boolean): { stream: ProgressStream; text: () => string } {
  const chunks: string[] = [];
  const w = new Writable({
    write(chunk: Buffer | string, _enc, done) {
      chunks.push(chunk.toString());
      done();
    },
  });
  const stream = Object.assign(w, tty ? { isTTY: true, columns: 80 } : {});
  return { stream, text: () => chunks.join('') };
}

const CONFIG = { steps: 3, batchSize: 1, sequenceLength: 4, learningRate: 0.1, maxGradNorm: 0 };
const CORPUS = Array.from({ length: 32 }, (_, i) => i % 5);

describe('training progress bar', () => {
  describe('whether it is drawn', () => {
    const cases: Array<{ enabled: boolean | undefined; isTTY: boolean | undefined; shown: boolean }> = [
      { enabled: undefined, isTTY: true, shown: true },
      { enabled: true, isTTY: true, shown: true },
      { enabled: false, isTTY: true, shown: false },
      { enabled: undefined, isTTY: false, shown: false },
      { enabled: true, isTTY: false, shown: false },
      { enabled: undefined, isTTY: undefined, shown: false },
    ];
    for (const c of cases) {
      it(`progressBar ${String(c.enabled)} on a stream with isTTY ${String(c.isTTY)}: ${c.shown ? 'drawn' : 'not drawn'}`, () => {
        assert.equal(showProgressBar(c.enabled, c.isTTY === undefined ? {} : { isTTY: c.isTTY }), c.shown);
      });
    }
  });

  it('renders steps, total and the last loss to a terminal stream and restores the cursor', async () => {
    const { stream, text } = captureStream(true);
    const result = await train({ model: quadraticModel(), train: CORPUS, config: CONFIG, progressStream: stream });
    const out = text();
    assert.match(out, /3\/3 loss \d+\.\d{4} lr \d\.\d{2}e[+-]\d+ \d+ tok\/s eta 0s/);
    assert.ok(out.includes(`loss ${result.losses.at(-1)!.toFixed(4)}`), `the final line should carry the last loss ${result.losses.at(-1)}: ${JSON.stringify(out)}`);
    assert.ok(out.includes('\x1B[?25l') && out.includes('\x1B[?25h'), 'the cursor is hidden while drawing and shown again at the end');
  });

  it('writes nothing to a stream that is not a terminal (logs, CI)', async () => {
    const { stream, text } = captureStream(false);
    await train({ model: quadraticModel(), train: CORPUS, config: CONFIG, progressStream: stream });
    assert.equal(text(), '');
  });

  it('writes nothing to a terminal when progressBar is false', async () => {
    const { stream, text } = captureStream(true);
    await train({ model: quadraticModel(), train: CORPUS, config: CONFIG, progressStream: stream, progressBar: false });
    assert.equal(text(), '');
  });
});
