// Leader election on a real Lease: one leader at a time; a crashed leader is replaced once its
// lease expires, a leader that steps down is replaced at once.
import assert from 'node:assert/strict';
import { CoordinationV1Api } from '@kubernetes/client-node';
import { waitFor } from '../../cluster/probe.js';
import { session } from '../../cluster/session.js';
import { deleteNamespace, freshNamespace } from '../helpers.js';
import { LeaderElector } from '../../../operator/runtime/leader-election.js';
import { silentLogger } from '../../../operator/runtime/log.js';
import { RestClient } from '../../../operator/runtime/rest.js';

const LEASE_MS = 2000;
const RENEW_MS = 1500;
const RETRY_MS = 300;
/** One API round trip or two on a busy 2-core machine. */
const SLACK_MS = 700;

describe('LeaderElector on a real Lease', function () {
  let ns: string;
  const electors: LeaderElector[] = [];

  before(async () => {
    ns = await freshNamespace('rt-lease');
  });
  afterEach(async () => {
    await Promise.all(electors.splice(0).map((e) => e.stop({ release: false })));
  });
  after(async () => {
    await deleteNamespace(ns);
  });

  function candidates(lease: string): { a: LeaderElector; b: LeaderElector; log: string[] } {
    const log: string[] = [];
    const make = (id: string): LeaderElector => {
      const elector = new LeaderElector(new RestClient(session().kubeConfig), {
        namespace: ns, name: lease, identity: id, leaseDurationMs: LEASE_MS, renewDeadlineMs: RENEW_MS, retryPeriodMs: RETRY_MS,
      }, { onStartedLeading: () => log.push(`${id} started`), onStoppedLeading: () => log.push(`${id} stopped`) }, silentLogger());
      electors.push(elector);
      void elector.start();
      return elector;
    };
    return { a: make('a'), b: make('b'), log };
  }

  const leaderOf = (a: LeaderElector, b: LeaderElector): LeaderElector | undefined => (a.isLeader() ? a : b.isLeader() ? b : undefined);

  it('lets exactly one of two candidates lead, and writes MicroTime the API server accepts', async () => {
    const { a, b } = candidates('one-leader');
    await waitFor('a leader', async () => a.isLeader() || b.isLeader(), 10_000, 20);
    for (let i = 0; i < 10; i++) {
      assert.ok(!(a.isLeader() && b.isLeader()), 'both candidates lead');
      await new Promise((r) => setTimeout(r, RETRY_MS / 2));
    }
    assert.ok(a.isLeader() !== b.isLeader());
    const lease = await session().kubeConfig.makeApiClient(CoordinationV1Api).readNamespacedLease({ name: 'one-leader', namespace: ns });
    assert.equal(lease.spec?.holderIdentity, leaderOf(a, b)?.identity);
    assert.equal(lease.spec?.leaseDurationSeconds, 2);
  });

  it('hands over after the lease expires when the leader crashes without releasing', async () => {
    const { a, b } = candidates('crash');
    await waitFor('a leader', async () => a.isLeader() || b.isLeader(), 10_000, 20);
    const leader = leaderOf(a, b) as LeaderElector;
    const follower = leader === a ? b : a;
    await leader.stop({ release: false });
    const crashed = Date.now();
    await waitFor('the follower to take over', async () => follower.isLeader(), 10_000, 20);
    const took = Date.now() - crashed;
    // The follower restarts its expiry clock when it last saw a renewal (up to one jittered retry
    // after it happened) and then polls every retry period with jitter.
    assert.ok(took >= LEASE_MS - 2 * RETRY_MS, `took over after ${took} ms, before the lease (${LEASE_MS} ms) could have expired`);
    assert.ok(took <= LEASE_MS + 2.4 * RETRY_MS + SLACK_MS, `took over after ${took} ms, later than leaseDuration + retry period`);
  });

  it('hands over within about one retry period when the leader releases the lease', async () => {
    const { a, b, log } = candidates('release');
    await waitFor('a leader', async () => a.isLeader() || b.isLeader(), 10_000, 20);
    const leader = leaderOf(a, b) as LeaderElector;
    const follower = leader === a ? b : a;
    await leader.stop({ release: true });
    const released = Date.now();
    await waitFor('the follower to take over', async () => follower.isLeader(), 10_000, 20);
    const took = Date.now() - released;
    assert.ok(took <= 1.2 * RETRY_MS + SLACK_MS, `took over after ${took} ms`);
    assert.deepEqual(log, [`${leader.identity} started`, `${leader.identity} stopped`, `${follower.identity} started`]);
  });
});
