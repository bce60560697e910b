// The one door to ONNX Runtime: nothing else in Tessera imports onnxruntime-node. Callers
// see our `Tensor` and `Session`; sessions are cached by a hash of the model bytes and
// options, and released explicitly (ORT holds native memory the GC does not see).
import { createHash } from 'node:crypto';
import * as ort from 'onnxruntime-node';
import { type DType, DTYPES, type TensorData } from './dtype.js';
import { type Graph } from './graph.js';
import { type Shape } from './shape.js';
import { elementCount, type Tensor } from './tensor.js';

export type ExecutionProvider = 'cpu' | 'cuda';

export interface SessionOptions {
  /** Tried in order; 'cuda' needs a GPU build of onnxruntime-node. Default ['cpu']. */
  executionProviders?: readonly ExecutionProvider[];
  /** Threads for one op (MLAS). Default: ORT's choice, one per physical core. */
  intraOpThreads?: number;
  /** ORT graph optimization level. Default 'all'. */
  optimization?: 'disabled' | 'basic' | 'extended' | 'all';
  /**
   * Intra-op threads spin while they wait for work (ORT's default: lowest latency on an idle
   * machine). false lets them sleep, which holds up far better when cores are shared or
   * CPU-limited: measured on the shared 2-core machine, a training step's median went from
   * 0.7–1.8 s spinning to 0.5–1.2 s sleeping, interleaved runs under the same load.
   */
  spinning?: boolean;
}

export interface InputSpec {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: Shape;
}

export interface Session {
  /** sha256 of the model bytes and options: equal keys mean interchangeable sessions. */
  readonly key: string;
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  /**
   * Runs the graph; `fetch` limits which outputs are computed (default: all). Outputs named in
   * `into` are written into those tensors (their dims must be what the graph produces), so a
   * caller that reuses buffers across runs allocates and copies nothing for them.
   */
  run(feeds: Readonly<Record<string, Tensor>>, fetch?: readonly string[], into?: Readonly<Record<string, Tensor>>): Promise<Record<string, Tensor>>;
  dispose(): Promise<void>;
}

export function sessionKey(model: Uint8Array, opts: SessionOptions = {}): string {
  const h = createHash('sha256');
  h.update(model);
  h.update(JSON.stringify([opts.executionProviders ?? ['cpu'], opts.intraOpThreads ?? 0, opts.optimization ?? 'all', opts.spinning ?? true]));
  return h.digest('hex');
}

/** Creates a session; with `inputs` (from a Graph) feeds are checked before ORT sees them. */
export async function createSession(model: Uint8Array, opts: SessionOptions = {}, inputs?: readonly InputSpec[]): Promise<Session> {
  const options: ort.InferenceSession.SessionOptions = {
    executionProviders: [...(opts.executionProviders ?? ['cpu'])],
    graphOptimizationLevel: opts.optimization ?? 'all',
  };
  if (opts.intraOpThreads !== undefined) options.intraOpNumThreads = opts.intraOpThreads;
  // A session config entry (onnxruntime_session_options_config_keys.h), passed through `extra`.
  if (opts.spinning === false) options.extra = { session: { intra_op: { allow_spinning: '0' } } };
  const inner = await ort.InferenceSession.create(model, options);
  return new OrtSession(sessionKey(model, opts), inner, inputs);
}

class OrtSession implements Session {
  private disposed = false;
  onDispose: (() => void) | undefined;

  constructor(
    readonly key: string,
    private readonly inner: ort.InferenceSession,
    private readonly specs: readonly InputSpec[] | undefined,
  ) {}

  get inputNames(): readonly string[] {
    return this.inner.inputNames;
  }

  get outputNames(): readonly string[] {
    return this.inner.outputNames;
  }

  async run(feeds: Readonly<Record<string, Tensor>>, fetch?: readonly string[], into?: Readonly<Record<string, Tensor>>): Promise<Record<string, Tensor>> {
    if (this.disposed) throw new Error(`session ${this.key.slice(0, 12)} was disposed`);
    if (this.specs) checkFeeds(this.specs, feeds);
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const [name, t] of Object.entries(feeds)) ortFeeds[name] = new ort.Tensor(t.dtype, t.data, [...t.dims]);
    for (const name of [...(fetch ?? []), ...Object.keys(into ?? {})]) {
      if (!this.inner.outputNames.includes(name)) throw new Error(`unknown output ${name}: expected one of ${this.inner.outputNames.join(', ')}`);
    }
    let result: ort.InferenceSession.OnnxValueMapType;
    if (into) {
      const fetches: Record<string, ort.Tensor | null> = {};
      for (const name of fetch ?? this.inner.outputNames) fetches[name] = null;
      for (const [name, t] of Object.entries(into)) fetches[name] = new ort.Tensor(t.dtype, t.data, [...t.dims]);
      result = await this.inner.run(ortFeeds, fetches);
    } else result = fetch ? await this.inner.run(ortFeeds, [...fetch]) : await this.inner.run(ortFeeds);
    const out: Record<string, Tensor> = {};
    for (const [name, t] of Object.entries(result)) out[name] = into?.[name] ?? fromOrt(name, t);
    return out;
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    this.onDispose?.();
    await this.inner.release();
  }
}

function fromOrt(name: string, t: ort.Tensor): Tensor {
  const dtype = t.type as DType;
  if (!DTYPES.includes(dtype)) throw new Error(`output ${name} has dtype ${t.type}: expected one of ${DTYPES.join(', ')}`);
  return { dtype, dims: t.dims.map(Number), data: t.data as TensorData } as Tensor;
}

function checkFeeds(specs: readonly InputSpec[], feeds: Readonly<Record<string, Tensor>>): void {
  const symbols = new Map<string, { size: number; from: string }>();
  for (const spec of specs) {
    const t = feeds[spec.name];
    if (!t) throw new Error(`missing input ${spec.name}: expected ${spec.dtype}[${spec.shape.join(',')}]`);
    const want = `${spec.dtype}[${spec.shape.join(',')}]`;
    const got = `${t.dtype}[${t.dims.join(',')}]`;
    if (t.dtype !== spec.dtype) throw new Error(`input ${spec.name} has dtype ${t.dtype}: expected ${spec.dtype}`);
    if (t.dims.length !== spec.shape.length) throw new Error(`input ${spec.name} is ${got}: expected ${want}`);
    if (t.data.length !== elementCount(t.dims)) throw new Error(`input ${spec.name} is ${got} but holds ${t.data.length} elements`);
    spec.shape.forEach((d, i) => {
      const size = t.dims[i] as number;
      if (typeof d === 'number') {
        if (d !== size) throw new Error(`input ${spec.name} is ${got}: expected ${want}`);
        return;
      }
      const seen = symbols.get(d);
      if (seen && seen.size !== size) throw new Error(`input ${spec.name} sets ${d}=${size} but ${seen.from} set ${d}=${seen.size}`);
      symbols.set(d, { size, from: spec.name });
    });
  }
  for (const name of Object.keys(feeds)) {
    if (!specs.some((s) => s.name === name)) throw new Error(`unknown input ${name}: expected ${specs.map((s) => s.name).join(', ')}`);
  }
}

/** Sessions by graph signature: the same model bytes and options give the same session. */
export class SessionCache {
  private readonly sessions = new Map<string, Promise<Session>>();

  constructor(private readonly defaults: SessionOptions = {}) {}

  get size(): number {
    return this.sessions.size;
  }

  /** The cached session for this graph (built and serialized once per call). */
  forGraph(graph: Graph, opts: SessionOptions = {}): Promise<Session> {
    // ORT's extended level fuses x·σ(x) into QuickGelu, which has only a float32 kernel, so
    // float64 graphs (gradient checks, references) default to the basic level.
    const usesFloat64 = graph.inputs.some((v) => v.dtype === 'float64') || graph.nodes.some((n) => n.outputs.some((v) => v.dtype === 'float64'));
    if (usesFloat64 && opts.optimization === undefined && this.defaults.optimization === undefined) opts = { ...opts, optimization: 'basic' };
    const specs = graph.inputs.map((v) => ({ name: v.name, dtype: v.dtype, shape: v.shape }));
    return this.get(graph.toModel(), opts, specs);
  }

  get(model: Uint8Array, opts: SessionOptions = {}, inputs?: readonly InputSpec[]): Promise<Session> {
    const merged = { ...this.defaults, ...opts };
    const key = sessionKey(model, merged);
    let s = this.sessions.get(key);
    if (!s) {
      s = createSession(model, merged, inputs).then((session) => {
        if (session instanceof OrtSession) session.onDispose = () => this.sessions.delete(key);
        return session;
      });
      s.catch(() => this.sessions.delete(key));
      this.sessions.set(key, s);
    }
    return s;
  }

  async dispose(): Promise<void> {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    const settled = await Promise.allSettled(all);
    await Promise.all(settled.map((r) => (r.status === 'fulfilled' ? r.value.dispose() : undefined)));
  }
}
