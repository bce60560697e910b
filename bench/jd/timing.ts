// Part (a) of the jd bench: wall time of our JD-Full / JD-Diag against a NumPy implementation of
// the same algorithms (bench/reference/jd_numpy.py) on the same synthetic LoRA adapters, passed
// through a safetensors file. One module slot of d = 512 (m = k = 512), adapters of rank 16,
// 10 iterations, no early stop, float32 on both sides. Ours first runs the smallest setting
// untimed until V8 has compiled the host code (a fresh process was up to 1.8× slower at n = 10);
// both sides get WARMUPS untimed runs per setting and the same number of threads (ORT intra-op threads; OPENBLAS/OMP/MKL_NUM_THREADS for NumPy);
// each setting then runs `repeats` times, ours and NumPy's alternating so load drifts hit both
// alike, each after a pause that lets the other side's threads go idle, and the row reports the
// medians.
import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { jdDiag } from '../../worker/compress/jd-diag.js';
import { jdFull } from '../../worker/compress/jd-full.js';
import { JdKernels } from '../../worker/compress/kernels.js';
import { countParameters } from '../../worker/compress/params.js';
import { gaussianArray } from '../../worker/compress/random.js';
import { packSlot, type SlotFactors } from '../../worker/compress/slot.js';
import { writeSafetensors } from '../../worker/formats/safetensors.js';
import { makeTensor, type Tensor } from '../../worker/formats/tensor.js';
import { SessionCache } from '../../worker/onnx/session.js';

const here = dirname(fileURLToPath(import.meta.url));
export const TIMING = { d: 512, r0: 16, iterations: 10 } as const;

export interface TimingRow {
  n: number;
  rank: number;
  method: 'jd-full' | 'jd-diag';
  /** Median seconds over the repeats, and the mean error of the last run. */
  ours: { seconds: number; meanError: number };
  numpy: { seconds: number; meanError: number } | undefined;
  saved: { perAdapter: number; total: number };
}

export interface TimingResult {
  rows: TimingRow[];
  /** Geometric mean over settings of NumPy seconds ÷ ours; NaN without NumPy. */
  /** Geometric mean of the per-setting ratios NumPy seconds ÷ ours. */
  speedup: number;
  /** Σ NumPy seconds ÷ Σ ours over the settings: the whole table's wall time, weighted by size. */
  totalSpeedup: number;
  blas: string;
}

export interface TimingOptions {
  counts: readonly number[];
  ranks: readonly number[];
  python?: string;
  /** Threads on each side. */
  threads: number;
  /** ORT's intra-op threads spin while waiting (its default) or sleep. */
  spinning: boolean;
  /** Timed runs per setting and side. */
  repeats: number;
  onRow?: (row: TimingRow) => void;
}

function adapters(n: number): SlotFactors[] {
  const { d, r0 } = TIMING;
  return Array.from({ length: n }, (_, i) => ({ A: gaussianArray(r0 * d, 2 * i + 1, 1 / Math.sqrt(d)), B: gaussianArray(d * r0, 2 * i + 2, 0.02), rank: r0, scaling: 2 }));
}

/** bench/reference/jd_numpy.py --serve: one NumPy process for all runs, each request a timed run. */
class NumpyRunner {
  private readonly lines: AsyncIterator<string>;
  private readonly child;
  private failure: string | undefined;

  constructor(python: string, threads: number) {
    const env = { ...process.env, OPENBLAS_NUM_THREADS: String(threads), OMP_NUM_THREADS: String(threads), MKL_NUM_THREADS: String(threads) };
    this.child = spawn(python, [join(here, '..', 'reference', 'jd_numpy.py'), '--serve'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    this.child.stderr.on('data', (b: Buffer) => (stderr = (stderr + b.toString()).slice(-2000)));
    this.child.on('error', (err) => (this.failure = err.message));
    this.child.on('exit', (code) => (this.failure ??= `exited ${code}: ${stderr.trim().split('\n').at(-1) ?? ''}`.slice(0, 160)));
    this.lines = createInterface({ input: this.child.stdout })[Symbol.asyncIterator]();
  }

  async run(file: string, method: string, rank: number, iterations: number): Promise<{ seconds: number; meanError: number; blas: string } | string> {
    if (this.failure) return `unavailable (${this.failure})`;
    this.child.stdin.write(`${JSON.stringify({ file, method, rank, iterations, warmups: WARMUPS })}\n`);
    const line = await this.lines.next();
    if (line.done) return `unavailable (${this.failure ?? 'no reply'})`;
    return JSON.parse(line.value) as { seconds: number; meanError: number; blas: string };
  }

  close(): void {
    this.child.stdin.end();
  }
}

/**
 * A pause before each timed run: BLAS and ORT worker threads spin for a while after a call
 * returns (OpenBLAS up to about 0.1 s), and a run that starts inside the other side's spin
 * shares its cores with it. Measured: NumPy right after ours ran up to 2× slower, ours right
 * after NumPy about 1.8× at n = 10.
 */
const SETTLE_MS = 250;
/** Untimed runs per setting and side before the timed ones. */
const WARMUPS = 3;
/** Untimed runs of the smallest setting, per method, before any setting is measured. */
const RUNTIME_WARMUPS = 30;
const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, SETTLE_MS));

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const h = Math.floor(s.length / 2);
  return s.length % 2 ? (s[h] as number) : ((s[h - 1] as number) + (s[h] as number)) / 2;
};

export async function timeVsNumpy(opts: TimingOptions): Promise<TimingResult> {
  const { d, r0, iterations } = TIMING;
  const dir = await fsp.mkdtemp(join(tmpdir(), 'tessera-bench-jd-'));
  const kernels = new JdKernels(new SessionCache({ intraOpThreads: opts.threads, spinning: opts.spinning }));
  const numpy = opts.python ? new NumpyRunner(opts.python, opts.threads) : undefined;
  const rows: TimingRow[] = [];
  let blas = opts.python ? 'unknown' : 'unavailable';
  try {
    // A process-wide warm-up first, as a long-running worker has had: V8 optimizes the host code
    // (packing, transposes, r×r algebra) only after many calls, and without this the first
    // settings measured the compiler (n = 10 ran in 12-14 ms cold against 7.5 ms warm).
    const small = adapters(Math.min(...opts.counts));
    for (let w = 0; w < RUNTIME_WARMUPS; w++) {
      for (const method of ['jd-full', 'jd-diag'] as const) {
        const slot = await packSlot(kernels, 'q_proj', d, d, small);
        const o = { rank: Math.min(...opts.ranks), iterations, tolerance: 0, seed: 0 };
        await (method === 'jd-full' ? jdFull(kernels, slot, o) : jdDiag(kernels, slot, o));
      }
    }
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
          // Builds and caches this shape's sessions and lets V8 optimize the host code; NumPy's server
          // makes as many untimed runs before its first timed one.
          for (let w = 0; w < WARMUPS; w++) await run(iterations);
          const ours: number[] = [];
          const theirs: number[] = [];
          let last = { ours: { seconds: 0, meanError: 0 }, numpy: undefined as { seconds: number; meanError: number } | undefined };
          for (let k = 0; k < opts.repeats; k++) {
            await settle();
            const o = await run(iterations);
            ours.push(o.seconds);
            await settle();
            const np = numpy ? await numpy.run(file, method, rank, iterations) : 'unavailable';
            if (typeof np === 'string') blas = np;
            else {
              blas = np.blas;
              theirs.push(np.seconds);
            }
            last = { ours: o, numpy: typeof np === 'string' ? undefined : np };
          }
          const saved = countParameters(method, 1, [{ m: d, k: d, rank, ranks: factors.map((f) => f.rank) }]);
          const row: TimingRow = {
            n,
            rank,
            method,
            ours: { seconds: median(ours), meanError: last.ours.meanError },
            numpy: last.numpy && theirs.length ? { seconds: median(theirs), meanError: last.numpy.meanError } : undefined,
            saved: { perAdapter: saved.perAdapterSavedRatio, total: saved.savedRatio },
          };
          rows.push(row);
          opts.onRow?.(row);
        }
      }
    }
  } finally {
    numpy?.close();
    await kernels.dispose();
    await fsp.rm(dir, { recursive: true, force: true });
  }
  const ratios = rows.flatMap((r) => (r.numpy ? [r.numpy.seconds / r.ours.seconds] : []));
  const speedup = ratios.length ? Math.exp(ratios.reduce((a, s) => a + Math.log(s), 0) / ratios.length) : Number.NaN;
  const timed = rows.filter((r) => r.numpy);
  const totalSpeedup = timed.length ? timed.reduce((a, r) => a + (r.numpy?.seconds ?? 0), 0) / timed.reduce((a, r) => a + r.ours.seconds, 0) : Number.NaN;
  return { rows, speedup, totalSpeedup, blas };
}

export function formatTimingRow(r: TimingRow): string {
  const np = r.numpy ? `${r.numpy.seconds.toFixed(3).padStart(10)} ${(r.numpy.seconds / r.ours.seconds).toFixed(2).padStart(8)} ${r.numpy.meanError.toFixed(3).padStart(9)}` : `${'unavailable'.padStart(10)} ${'-'.padStart(8)} ${'-'.padStart(9)}`;
  return `${String(r.n).padStart(4)} ${String(r.rank).padStart(4)} ${r.method.padEnd(8)} ${r.ours.seconds.toFixed(3).padStart(10)} ${np} ${r.ours.meanError.toFixed(3).padStart(9)} ${r.saved.perAdapter.toFixed(2).padStart(5)}/${r.saved.total.toFixed(2)}`;
}

export const TIMING_HEADER = `${'n'.padStart(4)} ${'r'.padStart(4)} ${'method'.padEnd(8)} ${'ours s'.padStart(10)} ${'numpy s'.padStart(10)} ${'speedup'.padStart(8)} ${'np err'.padStart(9)} ${'our err'.padStart(9)} saved (per-adapter/total)`;
