// Rolls a LoRAServer's bundle set out to its running replicas over the status hub, without
// restarting them: each replica loads and checks the new set next to the one it serves, then
// activates it. With the canary strategy one replica goes first and the rest follow only once
// it serves the new set. A replica that refuses keeps serving what it had; the failure is
// remembered for that revision and not retried until a newer revision comes.
//
// The reconciler calls observe() on every pass; it never waits. Directives run in the
// background and, when they finish, onChange() requeues the object, so the next pass sees
// the replicas' new revisions (each replica reports them before it acknowledges).
import type { Logger } from 'pino';
import { NotConnectedError, type StatusHub } from '../../status/hub.js';
import type { BundleRef, DirectiveAck, DirectiveRequest } from '../../status/wire.js';

/** The set as replicas see it: bundle locations are paths inside the pod. */
export interface RolloutTarget {
  revision: string;
  bundles: BundleRef[];
}

export interface RolloutFailure {
  revision: string;
  pod: string;
  message: string;
  /** RFC 3339. */
  time: string;
}

export interface ReplicaRevision {
  pod: string;
  /** The set it serves; '' when it serves no bundles. */
  revision: string;
}

export interface RolloutView {
  /** Replicas with an open status stream that reported what they serve, sorted by pod. */
  replicas: ReplicaRevision[];
  /** Replicas being moved to the target now. */
  inFlight: string[];
  /** Why the target revision did not roll out, when it did not. */
  failure: RolloutFailure | undefined;
}

export type RolloutStrategy = 'canary' | 'all-at-once';

export interface ServerRef {
  namespace: string;
  name: string;
}

/** What the reconciler needs from a rollout driver. */
export interface BundleRolloutDriver {
  observe(server: ServerRef, target: RolloutTarget, options: { strategy: RolloutStrategy; knownFailure?: RolloutFailure }): RolloutView;
}

export type RolloutHub = Pick<StatusHub, 'connectedPods' | 'state' | 'send' | 'onServingChange'>;

export interface BundleRolloutsOptions {
  /** Requeues the LoRAServer; called when a rollout step finishes either way. */
  onChange: (server: ServerRef) => void;
  logger: Logger;
  now?: () => Date;
  /** How long a replica may take to read and check a bundle set (default 10 min: bundles can be large). */
  loadTimeoutMs?: number;
  /** How long activation may take (default 30 s: it is a pointer swap). */
  activateTimeoutMs?: number;
}

const KIND = 'LoRAServer';

export class BundleRollouts implements BundleRolloutDriver {
  private readonly running = new Map<string, { revision: string; pods: string[] }>();
  private readonly failures = new Map<string, RolloutFailure>();

  constructor(private readonly hub: RolloutHub, private readonly options: BundleRolloutsOptions) {}

  observe(server: ServerRef, target: RolloutTarget, options: { strategy: RolloutStrategy; knownFailure?: RolloutFailure }): RolloutView {
    const key = `${server.namespace}/${server.name}`;
    const replicas = this.replicas(server);
    const remembered = this.failures.get(key) ?? options.knownFailure;
    const failure = target.revision && remembered?.revision === target.revision ? remembered : undefined;
    const inFlight = this.running.get(key);
    const view = (): RolloutView => ({ replicas, inFlight: [...(this.running.get(key)?.pods ?? [])], failure });
    if (!target.revision || inFlight || failure) return view();
    const behind = replicas.filter((r) => r.revision !== target.revision).map((r) => r.pod);
    if (behind.length === 0) return view();
    const ahead = replicas.length - behind.length;
    const wave = options.strategy === 'canary' && ahead === 0 ? behind.slice(0, 1) : behind;
    this.start(server, key, target, wave);
    return view();
  }

  /** Forgets a deleted LoRAServer. */
  forget(server: ServerRef): void {
    this.failures.delete(`${server.namespace}/${server.name}`);
  }

  private replicas(server: ServerRef): ReplicaRevision[] {
    const ref = { kind: KIND, namespace: server.namespace, name: server.name };
    const serving = this.hub.state(ref)?.serving ?? {};
    return this.hub.connectedPods(ref)
      .filter((pod) => serving[pod] !== undefined)
      .map((pod) => ({ pod, revision: serving[pod]?.activeRevision ?? '' }))
      .sort((a, b) => a.pod.localeCompare(b.pod));
  }

  private start(server: ServerRef, key: string, target: RolloutTarget, pods: string[]): void {
    const log = this.options.logger.child({ namespace: server.namespace, name: server.name, revision: target.revision.slice(0, 12) });
    this.running.set(key, { revision: target.revision, pods });
    log.info({ pods }, 'rolling out bundle set');
    void Promise.all(pods.map((pod) => this.moveReplica(server, pod, target).then(
      () => undefined,
      (err: unknown) => ({ pod, err }),
    ))).then((outcomes) => {
      this.running.delete(key);
      // A replica that went away mid-step is not a verdict on the bundles: the next pass retries with those still there.
      const refused = outcomes.find((o): o is { pod: string; err: unknown } => o !== undefined && !(o.err instanceof NotConnectedError));
      if (refused) {
        const message = refused.err instanceof Error ? refused.err.message : String(refused.err);
        this.failures.set(key, { revision: target.revision, pod: refused.pod, message, time: (this.options.now?.() ?? new Date()).toISOString() });
        log.warn({ pod: refused.pod, reason: message }, 'a replica refused the bundle set; the others keep serving what they had');
      } else if (outcomes.every((o) => o === undefined)) {
        this.failures.delete(key);
        log.info({ pods }, 'replicas serve the bundle set');
      }
      this.options.onChange(server);
    });
  }

  /** Load, then activate; either refusal or a missing ack rejects. */
  private async moveReplica(server: ServerRef, pod: string, target: RolloutTarget): Promise<void> {
    const to = { namespace: server.namespace, pod };
    const expect = async (request: DirectiveRequest, timeoutMs: number): Promise<DirectiveAck> => {
      const ack = await this.hub.send(to, request, timeoutMs);
      if (!ack.ok) throw new Error(`pod ${pod} refused to ${request.body === 'loadBundle' ? 'load' : 'activate'} revision ${target.revision.slice(0, 12)}: ${ack.message || 'no reason given'}`);
      return ack;
    };
    await expect({ body: 'loadBundle', loadBundle: { revision: target.revision, bundles: target.bundles } }, this.options.loadTimeoutMs ?? 600_000);
    await expect({ body: 'activate', activate: { revision: target.revision } }, this.options.activateTimeoutMs ?? 30_000);
  }
}
