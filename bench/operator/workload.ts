// The 600 objects the operator bench creates, and the watches it times them with.
import { Watch, type KubeConfig } from '@kubernetes/client-node';

export const GROUP = 'tessera.dev';
export const VERSION = 'v1alpha1';

export type Kind = 'SparseFineTune' | 'AdapterCluster' | 'LoRAServer';

export interface KindInfo {
  kind: Kind;
  plural: string;
  /** Object names are `<prefix>-<index>`. */
  prefix: string;
  /** The child whose appearance ends the apply→child timing. */
  child: { kind: 'Job' | 'Deployment'; path: (namespace: string) => string };
  spec(name: string): Record<string, unknown>;
}

const jobs = { kind: 'Job' as const, path: (ns: string) => `/apis/batch/v1/namespaces/${ns}/jobs` };
const deployments = { kind: 'Deployment' as const, path: (ns: string) => `/apis/apps/v1/namespaces/${ns}/deployments` };

/**
 * Specs as a user would write them (pvc:// storage, one GPU each). Nothing runs them: the bench
 * cluster has no node, so every worker pod stays Pending and no workload ever starts.
 */
export const KINDS: readonly KindInfo[] = [
  {
    kind: 'SparseFineTune', plural: 'sparsefinetunes', prefix: 'sft', child: jobs,
    spec: (name) => ({
      baseModel: { uri: 'pvc://models/llama-tiny' },
      dataset: { uri: 'pvc://datasets/brown/train.jsonl' },
      method: 'sparsepeft',
      sparsity: { targetPercent: 50 },
      adapter: { rank: 8 },
      training: { steps: 500 },
      output: { uri: `pvc://outputs/${name}` },
      resources: { gpus: 1 },
    }),
  },
  {
    kind: 'AdapterCluster', plural: 'adapterclusters', prefix: 'ac', child: jobs,
    spec: (name) => ({
      baseModel: { uri: 'pvc://models/llama-tiny' },
      adapters: [0, 1, 2, 3].map((i) => ({ name: `a${i}`, uri: `pvc://adapters/${name}/a${i}` })),
      compression: { method: 'jd-full', rank: 16, clusters: 1 },
      output: { uri: `pvc://bundles/${name}` },
      resources: { gpus: 1 },
    }),
  },
  {
    kind: 'LoRAServer', plural: 'loraservers', prefix: 'ls', child: deployments,
    spec: () => ({
      baseModel: { uri: 'pvc://models/llama-tiny' },
      adapters: [{ name: 'sotu', uri: 'pvc://adapters/sotu' }],
      replicas: 1,
      resources: { gpus: 1 },
    }),
  },
];

export const kindInfo = (kind: string): KindInfo | undefined => KINDS.find((k) => k.kind === kind);

export interface WatchedObject {
  metadata?: { name?: string; namespace?: string; resourceVersion?: string; ownerReferences?: { kind: string; name: string; controller?: boolean }[] };
  status?: Record<string, unknown>;
}

/**
 * A watch on one collection that survives the apiserver ending it: it resumes from the last
 * resourceVersion it saw (a 410 would mean events were lost, and then the bench fails loudly
 * rather than under-count). Events are timestamped as they arrive.
 */
export class CollectionWatch {
  private abort: AbortController | undefined;
  private stopped = false;
  private resourceVersion: string | undefined;
  restarts = 0;
  error: Error | undefined;

  constructor(
    private readonly kubeConfig: KubeConfig,
    private readonly path: string,
    private readonly onEvent: (type: string, obj: WatchedObject, atMs: number) => void,
  ) {}

  async start(): Promise<void> {
    const query: Record<string, string | boolean> = { allowWatchBookmarks: true };
    if (this.resourceVersion) query.resourceVersion = this.resourceVersion;
    this.abort = await new Watch(this.kubeConfig).watch(this.path, query, (type: string, obj: WatchedObject) => {
      const atMs = performance.now();
      if (obj.metadata?.resourceVersion) this.resourceVersion = obj.metadata.resourceVersion;
      if (type === 'ERROR') {
        this.error = new Error(`watch ${this.path} reported ${JSON.stringify(obj).slice(0, 200)}`);
        return;
      }
      if (type !== 'BOOKMARK') this.onEvent(type, obj, atMs);
    }, (err: unknown) => {
      if (this.stopped || this.error) return;
      if (err && !(err instanceof Error && err.name === 'AbortError')) this.error = err instanceof Error ? err : new Error(String(err));
      this.restarts++;
      void this.start().catch((e: unknown) => (this.error = e instanceof Error ? e : new Error(String(e))));
    });
  }

  stop(): void {
    this.stopped = true;
    this.abort?.abort();
  }
}

/** Nearest-rank percentile of unsorted samples; NaN when there are none. */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] as number;
}
