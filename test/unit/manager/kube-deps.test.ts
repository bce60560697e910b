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
