// The bundle rollout driver against a scripted hub: who gets which directive, in which order,
// and what is remembered when a replica refuses.
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { BundleRollouts, type RolloutHub, type RolloutTarget } from '../../../operator/controllers/loraserver/rollout.js';
import { NotConnectedError } from '../../../operator/status/hub.js';
import { emptyState, type ObjectState } from '../../../operator/status/state.js';
import type { DirectiveAck, DirectiveRequest } from '../../../operator/status/wire.js';

/** Replicas that serve a revision, take directives like the serve worker, and log what they got. */
class ScriptedHub implements RolloutHub {
  readonly log: string[] = [];
  readonly revisions = new Map<string, string>();
  readonly refuse = new Set<string>();
  readonly gone = new Set<string>();
  private readonly loaded = new Map<string, Set<string>>();

  constructor(pods: Record<string, string>) {
    for (const [pod, rev] of Object.entries(pods)) this.revisions.set(pod, rev);
  }

  onServingChange(): void {
    // The driver never listens; the manager does.
  }

  connectedPods(): string[] {
    return [...this.revisions.keys()].filter((p) => !this.gone.has(p)).sort();
  }

  state(): ObjectState {
    const s = emptyState({ apiVersion: 'tessera.dev/v1alpha1', kind: 'LoRAServer', namespace: 'ns', name: 'srv', uid: 'u', generation: 1 });
    for (const [pod, activeRevision] of this.revisions) {
      s.serving[pod] = { pod, unixMs: 0, activeRevision, loadedAdapters: [], queueDepth: 0, requestsPerSecond: 0, tokensPerSecond: 0, p50LatencyMs: 0, p99LatencyMs: 0 };
    }
    return s;
  }

  async send(target: { namespace: string; pod: string } | { object: unknown }, request: DirectiveRequest): Promise<DirectiveAck> {
    const pod = 'pod' in target ? target.pod : '';
    if (this.gone.has(pod)) throw new NotConnectedError(`pod ns/${pod} has no open status stream`);
    await new Promise((r) => setImmediate(r));
    this.log.push(`${pod}:${request.body}`);
    if (request.body === 'loadBundle') {
      if (this.refuse.has(pod)) return { directiveId: '1', ok: false, message: 'module model.layers.0.self_attn.q_proj is [32, 32] in the bundle, but [16, 16] in the base model' };
      const set = this.loaded.get(pod) ?? new Set();
      set.add(request.loadBundle.revision);
      this.loaded.set(pod, set);
      return { directiveId: '1', ok: true, message: '' };
    }
    if (request.body === 'activate') {
      if (!this.loaded.get(pod)?.has(request.activate.revision)) return { directiveId: '2', ok: false, message: 'not loaded' };
      this.revisions.set(pod, request.activate.revision);
    }
    return { directiveId: '2', ok: true, message: '' };
  }
}

const target = (revision: string): RolloutTarget => ({ revision, bundles: [{ adapterCluster: 'pool', revision: `b-${revision}`, uri: `/b/${revision}`, sha256: '' }] });
const server = { namespace: 'ns', name: 'srv' };

function driver(hub: RolloutHub) {
  const changes: string[] = [];
  let settle: () => void = () => undefined;
  const rollouts = new BundleRollouts(hub, {
    logger: pino({ level: 'silent' }),
    now: () => new Date('2026-11-30T00:00:00Z'),
    onChange: (s) => {
      changes.push(`${s.namespace}/${s.name}`);
      settle();
    },
  });
  const step = () => new Promise<void>((resolve) => (settle = resolve));
  return { rollouts, changes, step };
}

describe('bundle rollout to running replicas', () => {
  it('moves one replica first with the canary strategy, then the rest, each loading before activating', async () => {
    const hub = new ScriptedHub({ 'srv-a': 'r1', 'srv-b': 'r1', 'srv-c': 'r1' });
    const { rollouts, step } = driver(hub);
    let waiting = step();
    let view = rollouts.observe(server, target('r2'), { strategy: 'canary' });
    assert.deepEqual(view.inFlight, ['srv-a'], 'one canary');
    assert.deepEqual(rollouts.observe(server, target('r2'), { strategy: 'canary' }).inFlight, ['srv-a'], 'a second pass while it runs starts nothing new');
    await waiting;
    assert.deepEqual(hub.log, ['srv-a:loadBundle', 'srv-a:activate']);
    waiting = step();
    view = rollouts.observe(server, target('r2'), { strategy: 'canary' });
    assert.deepEqual(view.inFlight, ['srv-b', 'srv-c'], 'the rest once the canary serves it');
    await waiting;
    assert.deepEqual(hub.log.slice(2).filter((l) => l.startsWith('srv-b')), ['srv-b:loadBundle', 'srv-b:activate']);
    view = rollouts.observe(server, target('r2'), { strategy: 'canary' });
    assert.deepEqual(view.replicas.map((r) => r.revision), ['r2', 'r2', 'r2']);
    assert.deepEqual(view.inFlight, []);
    assert.equal(view.failure, undefined);
  });

  it('moves every replica at once with all-at-once', async () => {
    const hub = new ScriptedHub({ 'srv-a': '', 'srv-b': '' });
    const { rollouts, step } = driver(hub);
    const waiting = step();
    assert.deepEqual(rollouts.observe(server, target('r1'), { strategy: 'all-at-once' }).inFlight, ['srv-a', 'srv-b']);
    await waiting;
    assert.deepEqual([...hub.revisions.values()], ['r1', 'r1']);
  });

  it('keeps the old revision when the canary refuses, and does not retry that revision', async () => {
    const hub = new ScriptedHub({ 'srv-a': 'r1', 'srv-b': 'r1' });
    hub.refuse.add('srv-a');
    const { rollouts, step, changes } = driver(hub);
    const waiting = step();
    rollouts.observe(server, target('r2'), { strategy: 'canary' });
    await waiting;
    assert.deepEqual(hub.log, ['srv-a:loadBundle'], 'no activate after a refused load, and no other replica touched');
    assert.deepEqual(changes, ['ns/srv']);
    const view = rollouts.observe(server, target('r2'), { strategy: 'canary' });
    assert.deepEqual(view.inFlight, [], 'not retried');
    assert.equal(view.failure?.pod, 'srv-a');
    assert.equal(view.failure?.revision, 'r2');
    assert.match(view.failure?.message ?? '', /pod srv-a refused to load revision r2: module model\.layers\.0\.self_attn\.q_proj is \[32, 32\]/);
    assert.deepEqual([...hub.revisions.values()], ['r1', 'r1']);

    // A newer revision is tried afresh.
    hub.refuse.clear();
    const again = step();
    assert.deepEqual(rollouts.observe(server, target('r3'), { strategy: 'canary' }).inFlight, ['srv-a']);
    await again;
    assert.equal(hub.revisions.get('srv-a'), 'r3');
  });

  it('remembers a failure recorded in status across operator restarts', () => {
    const hub = new ScriptedHub({ 'srv-a': 'r1' });
    const { rollouts } = driver(hub);
    const knownFailure = { revision: 'r2', pod: 'srv-a', message: 'bad', time: '2026-11-30T00:00:00Z' };
    const view = rollouts.observe(server, target('r2'), { strategy: 'canary', knownFailure });
    assert.deepEqual(view.inFlight, []);
    assert.deepEqual(hub.log, []);
    assert.equal(view.failure, knownFailure);
  });

  it('does not blame the bundles when a replica goes away mid-rollout', async () => {
    const hub = new ScriptedHub({ 'srv-a': 'r1', 'srv-b': 'r1' });
    hub.gone.add('srv-a');
    hub.revisions.set('srv-a', 'r1');
    const { rollouts, step } = driver(hub);
    // srv-a is not connected, so srv-b is the canary; make it vanish during its step.
    const original = hub.send.bind(hub);
    hub.send = async (t, r) => {
      hub.gone.add('srv-b');
      return original(t, r);
    };
    const waiting = step();
    assert.deepEqual(rollouts.observe(server, target('r2'), { strategy: 'canary' }).inFlight, ['srv-b']);
    await waiting;
    assert.equal(rollouts.observe(server, target('r2'), { strategy: 'canary' }).failure, undefined);
  });

  it('does nothing without bundles to serve or replicas to move', () => {
    const hub = new ScriptedHub({ 'srv-a': '' });
    const { rollouts } = driver(hub);
    assert.deepEqual(rollouts.observe(server, { revision: '', bundles: [] }, { strategy: 'canary' }).inFlight, []);
    assert.deepEqual(new BundleRollouts(new ScriptedHub({}), { logger: pino({ level: 'silent' }), onChange: () => undefined }).observe(server, target('r1'), { strategy: 'canary' }).replicas, []);
    assert.deepEqual(hub.log, []);
  });
});
