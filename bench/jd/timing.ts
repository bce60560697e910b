// Part (a) of the jd bench: wall time of our JD-Full / JD-Diag against a NumPy implementation of
// the same algorithms (bench/reference/jd_numpy.py) on the same synthetic LoRA adapters, passed
// through a safetensors file. One module slot of d = 512 (m = k = 512), adapters of rank 16,
// 10 iterations, no early stop, float32 on both sides.
import { spawnSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { jdDiag } from '../../worker/compress/jd-diag.js';
import { jdFull } from '../../worker/compress/jd-full.js';
import { type JdKernels } from '../../worker/compress/kernels.js';
import { countParameters } from '../../worker/compress/params.js';
import { gaussianArray } from '../../worker/compress/random.js';
import { packSlot, type SlotFactors } from '../../worker/compress/slot.js';
import { writeSafetensors } from '../../worker/formats/safetensors.js';
import { makeTensor, type Tensor } from '../../worker/formats/tensor.js';

const here = dirname(fileURLToPath(import.meta.url));
export const TIMING = { d: 512, r0: 16, iterations: 10 } as const;

export interface TimingRow {
  n: number;
  rank: number;
  method: 'jd-full' | 'jd-diag';
  ours: { seconds: number; meanError: number };
  numpy: { seconds: number; meanError: number } | undefined;
  saved: { perAdapter: number; total: number };
}

export interface TimingResult {
  rows: TimingRow[];
  /** Geometric mean over settings of NumPy seconds ÷ ours; NaN without NumPy. */
  speedup: number;
  blas: string;
}

function adapters(n: number): SlotFactors[] {
  const { d, r0 } = TIMING;
  return Array.from({ length: n }, (_, i) => ({ A: gaussianArray(r0 * d, 2 * i + 1, 1 / Math.sqrt(d)), B: gaussianArray(d * r0, 2 * i + 2, 0.02), rank: r0, scaling: 2 }));
}

function runNumpy(python: string, file: string, method: string, rank: number): { seconds: number; meanError: number; blas: string } | string {
  const res = spawnSync(python, [join(here, '..', 'reference', 'jd_numpy.py'), file, method, String(rank), String(TIMING.iterations)], { encoding: 'utf8' });
  if (res.error) return `unavailable (${res.error.message})`;
  if (res.status !== 0) return `unavailable (${(res.stderr.trim().split('\n').at(-1) ?? 'python failed').slice(0, 80)})`;
  return JSON.parse(res.stdout.trim().split('\n').at(-1) as string) as { seconds: number; meanError: number; blas: string };
}

export async function timeVsNumpy(kernels: JdKernels, opts: { counts: readonly number[]; ranks: readonly number[]; python?: string; onRow?: (row: TimingRow) => void }): Promise<TimingResult> {
  const { d, r0, iterations } = TIMING;
  const dir = await fsp.mkdtemp(join(tmpdir(), 'tessera-bench-jd-'));
  const rows: TimingRow[] = [];
  let blas = opts.python ? 'unknown' : 'unavailable';
  try {
    for (const n of opts.counts) {
      const factors = adapters(n);
      const file = join(dir, `adapters-${n}.safetensors`);
      const tensors: Array<[string, Tensor]> = [['scaling', makeTensor('F32', [n], Float32Array.from(factors, (f) => f.scaling))]];
      factors.forEach((f, i) => tensors.push([`A.${i}`, makeTensor('F32', [r0, d], f.A)], [`B.${i}`, makeTensor('F32', [d, r0], f.B)]));
      await writeSafetensors(file, tensors);
      for (const rank of opts.ranks) {
        for (const method of ['jd-full', 'jd-diag'] as const) {
          const run = async (its: number): Promise<{ seconds: number; meanError: number }> => {
            const t0 = process.hrtime.bigint();
            const slot = await packSlot(kernels, 'q_proj', d, d, factors);
            const o = { rank, iterations: its, tolerance: 0, seed: 0 };
            const res = method === 'jd-full' ? await jdFull(kernels, slot, o) : await jdDiag(kernels, slot, o);
            return { seconds: Number(process.hrtime.bigint() - t0) / 1e9, meanError: res.errors.reduce((a, b) => a + b, 0) / n };
          };
          await run(1); // warm-up: builds and caches this shape's sessions
          const ours = await run(iterations);
          const np = opts.python ? runNumpy(opts.python, file, method, rank) : 'unavailable';
          if (typeof np === 'string') blas = np;
          else blas = np.blas;
          const saved = countParameters(method, 1, [{ m: d, k: d, rank, ranks: factors.map((f) => f.rank) }]);
          const row: TimingRow = { n, rank, method, ours, numpy: typeof np === 'string' ? undefined : { seconds: np.seconds, meanError: np.meanError }, saved: { perAdapter: saved.perAdapterSavedRatio, total: saved.savedRatio } };
          rows.push(row);
          opts.onRow?.(row);
        }
      }
    }
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
  const ratios = rows.flatMap((r) => (r.numpy ? [r.numpy.seconds / r.ours.seconds] : []));
  const speedup = ratios.length ? Math.exp(ratios.reduce((a, s) => a + Math.log(s), 0) / ratios.length) : Number.NaN;
  return { rows, speedup, blas };
}

export function formatTimingRow(r: TimingRow): string {
  const np = r.numpy ? `${r.numpy.seconds.toFixed(3).padStart(10)} ${(r.numpy.seconds / r.ours.seconds).toFixed(2).padStart(8)} ${r.numpy.meanError.toFixed(3).padStart(9)}` : `${'unavailable'.padStart(10)} ${'-'.padStart(8)} ${'-'.padStart(9)}`;
  return `${String(r.n).padStart(4)} ${String(r.rank).padStart(4)} ${r.method.padEnd(8)} ${r.ours.seconds.toFixed(3).padStart(10)} ${np} ${r.ours.meanError.toFixed(3).padStart(9)} ${r.saved.perAdapter.toFixed(2).padStart(5)}/${r.saved.total.toFixed(2)}`;
}

export const TIMING_HEADER = `${'n'.padStart(4)} ${'r'.padStart(4)} ${'method'.padEnd(8)} ${'ours s'.padStart(10)} ${'numpy s'.padStart(10)} ${'speedup'.padStart(8)} ${'np err'.padStart(9)} ${'our err'.padStart(9)} saved (per-adapter/total)`;
