// KubeDeps' CA publication: once per namespace and minute, not once per reconcile.
import assert from 'node:assert/strict';
import { KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import { pino } from 'pino';
import { KubeDeps, type Caches } from '../../../operator/manager/kube-deps.js';

/** KubeDeps with its writes recorded instead of sent, and a clock the test moves. */
class RecordingDeps extends KubeDeps {
  readonly applied: KubernetesObject[] = [];
  clockMs = Date.parse('2026-01-01T00:00:00Z');

  override now(): Date {
    return new Date(this.clockMs);
  }

  override async apply(obj: KubernetesObject): Promise<void> {
    this.applied.push(obj);
  }
}

function deps(caBundlePem: string | undefined): RecordingDeps {
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromOptions({
    clusters: [{ name: 'c', server: 'https://127.0.0.1:1' }], users: [{ name: 'u' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }], currentContext: 'x',
  });
  const settings = { image: 'img', statusAddress: 'hub:9443', caConfigMap: 'tessera-ca', tokenAudience: 'tessera.dev' };
  return new RecordingDeps(kubeConfig, {} as Caches, settings, pino({ level: 'silent' }), caBundlePem);
}

describe('KubeDeps.ensureCa', () => {
  it('applies the CA ConfigMap once per namespace however many reconciles ask for it', async () => {
    const d = deps('PEM');
    for (let i = 0; i < 5; i++) await d.ensureCa('a');
    await d.ensureCa('b');
    assert.deepEqual(d.applied.map((o) => `${o.metadata?.namespace}/${o.metadata?.name}`), ['a/tessera-ca', 'b/tessera-ca']);
    assert.deepEqual((d.applied[0] as KubernetesObject & { data?: Record<string, string> }).data, { 'ca.crt': 'PEM' });
  });

  it('applies it again after a minute, so a deleted ConfigMap comes back', async () => {
    const d = deps('PEM');
    await d.ensureCa('a');
    d.clockMs += 59_000;
    await d.ensureCa('a');
    assert.equal(d.applied.length, 1);
    d.clockMs += 2_000;
    await d.ensureCa('a');
    assert.equal(d.applied.length, 2);
  });

  it('tries again at the next reconcile when the apply failed', async () => {
    const d = deps('PEM');
    let fail = true;
    d.apply = async (obj) => {
      if (fail) throw new Error('HTTP 500');
      d.applied.push(obj);
    };
    await assert.rejects(d.ensureCa('a'), /HTTP 500/);
    fail = false;
    await d.ensureCa('a');
    assert.equal(d.applied.length, 1);
  });

  it('publishes nothing without TLS', async () => {
    const d = deps(undefined);
    await d.ensureCa('a');
    assert.equal(d.applied.length, 0);
  });
});

/** KubeDeps whose server-side applies are recorded, with a Deployment cache the test fills. */
class ApplyingDeps extends KubeDeps {
  readonly sent: string[] = [];
  clockMs = Date.parse('2026-01-01T00:00:00Z');
  generation = 1;

  override now(): Date {
    return new Date(this.clockMs);
  }

  protected override async serverSideApply(obj: KubernetesObject): Promise<KubernetesObject> {
    this.sent.push(`${obj.kind}/${obj.metadata?.name}`);
    return { ...obj, metadata: { ...obj.metadata, generation: this.generation } };
  }
}

describe('KubeDeps.apply', () => {
  const cached = new Map<string, KubernetesObject>();
  const caches = { deployments: { get: (k: string) => cached.get(k) }, jobs: { get: () => undefined } } as unknown as Caches;
  const make = (): ApplyingDeps => {
    const kubeConfig = new KubeConfig();
    kubeConfig.loadFromOptions({ clusters: [{ name: 'c', server: 'https://127.0.0.1:1' }], users: [{ name: 'u' }], contexts: [{ name: 'x', cluster: 'c', user: 'u' }], currentContext: 'x' });
    return new ApplyingDeps(kubeConfig, caches, { image: 'img', statusAddress: 'hub:9443', caConfigMap: 'tessera-ca', tokenAudience: 'tessera.dev' }, pino({ level: 'silent' }), undefined);
  };
  const deployment = (replicas: number): KubernetesObject => ({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'd', namespace: 'ns' }, spec: { replicas } } as KubernetesObject);
  const service: KubernetesObject = { apiVersion: 'v1', kind: 'Service', metadata: { name: 's', namespace: 'ns' } };

  it('sends an unchanged child once, and a changed one again', async () => {
    const d = make();
    cached.set('ns/d', { ...deployment(2), metadata: { name: 'd', namespace: 'ns', generation: 1 } });
    await d.apply(deployment(2));
    await d.apply(deployment(2));
    await d.apply(service);
    await d.apply(service);
    assert.deepEqual(d.sent, ['Deployment/d', 'Service/s']);
    d.generation = 2;
    await d.apply(deployment(3));
    assert.deepEqual(d.sent, ['Deployment/d', 'Service/s', 'Deployment/d']);
  });

  it('sends it again when the watched child was edited or deleted behind its back', async () => {
    const d = make();
    cached.set('ns/d', { ...deployment(2), metadata: { name: 'd', namespace: 'ns', generation: 1 } });
    await d.apply(deployment(2));
    cached.set('ns/d', { ...deployment(5), metadata: { name: 'd', namespace: 'ns', generation: 2 } });
    await d.apply(deployment(2));
    cached.delete('ns/d');
    await d.apply(deployment(2));
    assert.equal(d.sent.length, 3);
  });

  it('re-sends children it cannot watch after ten minutes, as a resync would', async () => {
    const d = make();
    await d.apply(service);
    d.clockMs += 9 * 60_000;
    await d.apply(service);
    d.clockMs += 2 * 60_000;
    await d.apply(service);
    assert.equal(d.sent.length, 2);
  });
});
