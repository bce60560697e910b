// Authentication verdicts are cached briefly by token hash; refusals keep their status code.
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { AuthError, bearerToken, CachingAuthenticator, type PodIdentity, type TokenReviewer } from '../../../operator/status/auth.js';
import type { OwnerResolver } from '../../../operator/status/owner.js';
import { FakeClock } from '../fake-clock.js';

const POD: PodIdentity = { namespace: 'ns', podName: 'a-0', podUid: 'pu', serviceAccount: 'default' };
const OWNER = { apiVersion: 'tessera.dev/v1alpha1', kind: 'SparseFineTune', namespace: 'ns', name: 'a', uid: 'ou' };

function counting(verdict: () => Promise<PodIdentity>) {
  const calls = { reviews: 0, resolves: 0 };
  const reviewer: TokenReviewer = { review: async () => (calls.reviews++, verdict()) };
  const resolver: OwnerResolver = { resolve: async () => (calls.resolves++, OWNER) };
  return { calls, reviewer, resolver };
}

describe('the caching authenticator', () => {
  it('reviews a token once within the TTL and again after it', async () => {
    const clock = new FakeClock();
    const { calls, reviewer, resolver } = counting(async () => POD);
    const auth = new CachingAuthenticator({ reviewer, resolver, ttlMs: 1000, clock });
    assert.deepEqual(await auth.authenticate('t'), { pod: POD, owner: OWNER });
    await auth.authenticate('t');
    assert.equal(calls.reviews, 1);
    await clock.advance(1001);
    await auth.authenticate('t');
    assert.equal(calls.reviews, 2);
  });

  it('caps the TTL at 30 seconds', async () => {
    const clock = new FakeClock();
    const { calls, reviewer, resolver } = counting(async () => POD);
    const auth = new CachingAuthenticator({ reviewer, resolver, ttlMs: 3600_000, clock });
    await auth.authenticate('t');
    await clock.advance(30_001);
    await auth.authenticate('t');
    assert.equal(calls.reviews, 2);
  });

  it('refuses a missing token with UNAUTHENTICATED without asking the API server', async () => {
    const { calls, reviewer, resolver } = counting(async () => POD);
    const auth = new CachingAuthenticator({ reviewer, resolver });
    await assert.rejects(auth.authenticate(undefined), (err: AuthError) => err.code === grpc.status.UNAUTHENTICATED);
    assert.equal(calls.reviews, 0);
  });

  it('caches a rejection but not an API server outage', async () => {
    const clock = new FakeClock();
    let error = new AuthError(grpc.status.UNAUTHENTICATED, 'token rejected by TokenReview');
    const { calls, reviewer, resolver } = counting(async () => { throw error; });
    const auth = new CachingAuthenticator({ reviewer, resolver, ttlMs: 1000, clock });
    await assert.rejects(auth.authenticate('bad'), /token rejected/);
    await assert.rejects(auth.authenticate('bad'), /token rejected/);
    assert.equal(calls.reviews, 1);
    error = new AuthError(grpc.status.UNAVAILABLE, 'TokenReview failed: HTTP 503');
    await assert.rejects(auth.authenticate('other'), (err: AuthError) => err.code === grpc.status.UNAVAILABLE);
    await assert.rejects(auth.authenticate('other'), (err: AuthError) => err.code === grpc.status.UNAVAILABLE);
    assert.equal(calls.reviews, 3);
  });

  it('shares one review between concurrent streams with the same token', async () => {
    const { calls, reviewer, resolver } = counting(() => new Promise((resolve) => setTimeout(() => resolve(POD), 10)));
    const auth = new CachingAuthenticator({ reviewer, resolver });
    await Promise.all([auth.authenticate('t'), auth.authenticate('t'), auth.authenticate('t')]);
    assert.equal(calls.reviews, 1);
  });

  it('never keeps the token itself', async () => {
    const { reviewer, resolver } = counting(async () => POD);
    const auth = new CachingAuthenticator({ reviewer, resolver });
    await auth.authenticate('super-secret-token');
    const cache = (auth as unknown as { cache: Map<string, unknown> }).cache;
    assert.ok(![...cache.keys()].some((k) => k.includes('super-secret')));
    assert.ok(!JSON.stringify([...cache.values()]).includes('super-secret'));
  });
});

describe('bearer token metadata', () => {
  it('accepts "Bearer <token>" in any case and nothing else', () => {
    assert.equal(bearerToken(['Bearer abc.def']), 'abc.def');
    assert.equal(bearerToken(['bearer abc']), 'abc');
    for (const bad of [[], ['Basic abc'], ['Bearer'], ['Bearer a b'], [Buffer.from('Bearer x')]]) assert.equal(bearerToken(bad), undefined, JSON.stringify(bad));
  });
});
