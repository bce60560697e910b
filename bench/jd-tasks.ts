// JD compression of adapters that were actually trained: n task adapters (one per Brown document,
// round-robin over genres) on the tiny pretrained base, then every method × rank → mean
// reconstruction error, mean relative performance on the tasks' held-out paragraphs and the
// parameter-saved ratio — the paper's Table 3 trade-off at toy scale. Prints; asserts nothing.
// Run: npx tsx bench/jd-tasks.ts [--n 24] [--steps 40] [--plot FILE.png]
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import { pino } from 'pino';
import { JdKernels } from '../worker/compress/kernels.js';
import { compressAdapters } from '../worker/compress/run.js';
import { type JdMethod } from '../worker/compress/types.js';
import { JD_BUNDLE_SOURCE } from '../worker/modes/jd-adapter-source.js';
import { loadModel } from '../worker/modes/load-model.js';
import { pretrain } from '../worker/modes/pretrain.js';
import { brownTasks, relativePerformance, taskPerplexities, trainTaskAdapters } from '../worker/modes/task-adapters.js';
import { SessionCache } from '../worker/onnx/session.js';

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
    await fsp.writeFile(PLOT, scatterPng(rows));
    console.log(`plot: ${PLOT} (x: parameters saved 0…1, y: reconstruction error 0…1; red svd, blue jd-full, green jd-diag; settings that save nothing left out)`);
  }
  // A setting that stores more than the adapters themselves is no compression, whatever it keeps.
  const compressing = rows.filter((r) => r.saved > 0 && !Number.isNaN(r.relPerf));
  const keeping = compressing.filter((r) => r.relPerf >= 0.99);
  const best = keeping.length ? keeping.reduce((a, b) => (b.saved > a.saved ? b : a)) : compressing.reduce((a, b) => (b.relPerf > a.relPerf ? b : a));
  console.log(`RESULT jd-tasks rel_perf_best=${best.relPerf.toFixed(3)} param_saved_best=${best.saved.toFixed(3)} (${best.method} rank ${best.rank}, error ${best.error.toFixed(3)}, n=${N}${keeping.length ? '' : ', no setting keeps 0.99'})`);
}

// A dependency-free PNG (no plotting library in the project): points on a white canvas with
// axes, x = parameters saved in [0, 1], y = error in [0, 1].
function scatterPng(rows: readonly Row[]): Buffer {
  const W = 480;
  const H = 360;
  const M = 30;
  const px = new Uint8Array(W * H * 3).fill(255);
  const put = (x: number, y: number, c: readonly number[]): void => {
    if (x < 0 || y < 0 || x >= W || y >= H) return;
    px.set(c, (y * W + x) * 3);
  };
  for (let x = M; x < W - M; x++) put(x, H - M, [0, 0, 0]);
  for (let y = M; y < H - M; y++) put(M, y, [0, 0, 0]);
  const colors: Record<JdMethod, number[]> = { svd: [220, 40, 40], 'jd-full': [40, 80, 220], 'jd-diag': [30, 160, 60] };
  for (const r of rows.filter((x) => x.saved >= 0)) {
    const cx = Math.round(M + r.saved * (W - 2 * M));
    const cy = Math.round(H - M - Math.min(1, r.error) * (H - 2 * M));
    for (let dy = -3; dy <= 3; dy++) for (let dx = -3; dx <= 3; dx++) if (dx * dx + dy * dy <= 9) put(cx + dx, cy + dy, colors[r.method]);
  }
  const raw = Buffer.alloc(H * (1 + W * 3));
  for (let y = 0; y < H; y++) {
    raw[y * (1 + W * 3)] = 0; // filter: none
    Buffer.from(px.buffer, y * W * 3, W * 3).copy(raw, y * (1 + W * 3) + 1);
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(W, 0);
  ihdr.writeUInt32BE(H, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

function chunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'ascii');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

// zlib.crc32 arrived in Node 22; the project supports Node 20.
function crc32(buf: Buffer): number {
  let c = 0xffffffff;
  for (const b of buf) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

await main();
