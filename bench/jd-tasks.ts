// JD compression of adapters that were actually trained: n task adapters (one per Brown document,
// round-robin over genres) on the tiny pretrained base, then every method × rank → mean
// reconstruction error, mean relative performance on the tasks' held-out paragraphs and the
// parameter-saved ratio — the paper's Table 3 trade-off at toy scale. Prints; asserts nothing.
// Run: npx tsx bench/jd-tasks.ts [--n 24] [--steps 40] [--plot FILE.png]
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { JdKernels } from '../worker/compress/kernels.js';
import { compressAdapters } from '../worker/compress/run.js';
import { type JdMethod } from '../worker/compress/types.js';
import { JD_BUNDLE_SOURCE } from '../worker/modes/jd-adapter-source.js';
import { loadModel } from '../worker/modes/load-model.js';
import { pretrain } from '../worker/modes/pretrain.js';
import { brownTasks, relativePerformance, taskPerplexities, trainTaskAdapters } from '../worker/modes/task-adapters.js';
import { SessionCache } from '../worker/onnx/session.js';
import { type Rgb, scatterPng } from './jd/plot.js';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v <= 0) throw new Error(`--${name} must be a positive integer, got ${JSON.stringify(process.argv[i + 1])}`);
  return v;
}

const N = arg('n', 24);
const STEPS = arg('steps', 40);
const R0 = 4;
const plotIndex = process.argv.indexOf('--plot');
const PLOT = plotIndex >= 0 ? process.argv[plotIndex + 1] : undefined;
// The per-LoRA SVD baseline cannot exceed the adapters' own rank; JD ranks go up to where the
// bases hold about as much as the original adapters.
const SETTINGS: Array<{ method: JdMethod; rank: number }> = [
  ...[1, 2, 3].map((rank) => ({ method: 'svd' as const, rank })),
  ...[2, 4, 8, 12, 16, 24, 32].map((rank) => ({ method: 'jd-full' as const, rank })),
  ...[2, 4, 8, 12, 16, 24, 32].map((rank) => ({ method: 'jd-diag' as const, rank })),
];

interface Row {
  method: JdMethod;
  rank: number;
  error: number;
  relPerf: number;
  saved: number;
}

const mean = (xs: readonly number[]): number => xs.reduce((s, x) => s + x, 0) / xs.length;

async function main(): Promise<void> {
  const log = pino({ level: 'silent' });
  const dir = await fsp.mkdtemp(join(tmpdir(), 'tessera-bench-jd-tasks-'));
  const cache = new SessionCache({ intraOpThreads: 1 });
  const kernels = new JdKernels();
  const rows: Row[] = [];
  try {
    const started = performance.now();
    const base = join(dir, 'tiny');
    await pretrain({ output: base, size: 'tiny', seed: 0, threads: 1, log });
    const tasks = brownTasks(N);
    const trained = await trainTaskAdapters({ model: base, tasks, rank: R0, steps: STEPS, output: join(dir, 'adapters'), seed: 0, log, cache });
    console.log(`${N} task adapters (Brown documents, rank ${R0}, q_proj+v_proj, ${STEPS} steps) trained in ${((performance.now() - started) / 1000).toFixed(0)} s`);
    console.log(`${'task'.padEnd(12)} ${'ppl base'.padStart(9)} ${'ppl lora'.padStart(9)}`);
    for (const a of trained.adapters) console.log(`${a.name.padEnd(12)} ${a.pplBase.toFixed(2).padStart(9)} ${a.pplLora.toFixed(2).padStart(9)}`);
    // Relative performance is a ratio of gains: only defined where the adapter helped at all.
    const helped = trained.adapters.map((a) => a.pplLora < a.pplBase);
    console.log(`adapters that lower their task's held-out perplexity: ${helped.filter(Boolean).length}/${N}`);

    const model = await loadModel(base);
    const adapters = trained.adapters.map((a) => ({ name: a.name, dir: a.dir }));
    for (const { method, rank } of SETTINGS) {
      const output = join(dir, `${method}-${rank}`);
      const summary = await compressAdapters({ adapters, method, rank, clusters: 1, output, kernels });
      const ppl = await taskPerplexities({ model, tasks, adapter: (t) => `${output}#${t.name}`, sources: [JD_BUNDLE_SOURCE], sequenceLength: trained.sequenceLength, cache });
      const rel = trained.adapters.map((a, i) => relativePerformance(a.pplBase, ppl[i] as number, a.pplLora)).filter((_, i) => helped[i]);
      rows.push({ method, rank, error: summary.meanErrorPercent / 100, relPerf: rel.length ? mean(rel) : Number.NaN, saved: summary.parameters.savedRatio });
      const r = rows.at(-1) as Row;
      console.error(`${method} rank ${rank}: error ${r.error.toFixed(3)} rel ${r.relPerf.toFixed(3)} saved ${r.saved.toFixed(3)}`);
    }
  } finally {
    await kernels.dispose();
    await cache.dispose();
    await fsp.rm(dir, { recursive: true, force: true });
  }

  console.log(`${'method'.padEnd(8)} ${'rank'.padStart(4)} ${'error'.padStart(7)} ${'rel perf'.padStart(9)} ${'saved'.padStart(7)}`);
  for (const r of rows) console.log(`${r.method.padEnd(8)} ${String(r.rank).padStart(4)} ${r.error.toFixed(3).padStart(7)} ${r.relPerf.toFixed(3).padStart(9)} ${r.saved.toFixed(3).padStart(7)}`);
  if (PLOT) {
    const colors: Record<JdMethod, Rgb> = { svd: [220, 40, 40], 'jd-full': [40, 80, 220], 'jd-diag': [30, 160, 60] };
    const legend = (Object.keys(colors) as JdMethod[]).map((m) => ({ label: m, color: colors[m], marker: 'disc' as const }));
    await fsp.writeFile(PLOT, scatterPng(rows.map((r) => ({ x: r.saved, y: r.error, color: colors[r.method], marker: 'disc' })), { xLabel: 'parameters saved', yLabel: 'reconstruction error', legend }));
    console.log(`plot: ${PLOT} (x: parameters saved 0…1, y: reconstruction error 0…1; settings that save nothing left out)`);
  }
  // A setting that stores more than the adapters themselves is no compression, whatever it keeps.
  const compressing = rows.filter((r) => r.saved > 0 && !Number.isNaN(r.relPerf));
  const keeping = compressing.filter((r) => r.relPerf >= 0.99);
  const best = keeping.length ? keeping.reduce((a, b) => (b.saved > a.saved ? b : a)) : compressing.reduce((a, b) => (b.relPerf > a.relPerf ? b : a));
  console.log(`RESULT jd-tasks rel_perf_best=${best.relPerf.toFixed(3)} param_saved_best=${best.saved.toFixed(3)} (${best.method} rank ${best.rank}, error ${best.error.toFixed(3)}, n=${N}${keeping.length ? '' : ', no setting keeps 0.99'})`);
}

await main();
