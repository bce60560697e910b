// The work queue keeps client-go's promises: de-duplication, one worker per key, backoff, drain.
import assert from 'node:assert/strict';
import { ExponentialBackoffRateLimiter, TokenBucketRateLimiter, WorkQueue, defaultControllerRateLimiter } from '../../../operator/runtime/workqueue.js';
import { FakeClock, settle } from '../fake-clock.js';

describe('WorkQueue', () => {
  it('hands out a key added twice only once', async () => {
    const queue = new WorkQueue({ clock: new FakeClock() });
    queue.add('ns/a');
    queue.add('ns/a');
    assert.equal(queue.len(), 1);
    assert.equal(await queue.get(), 'ns/a');
    queue.done('ns/a');
    assert.equal(queue.len(), 0);
  });

  it('re-queues a key added while it is processed once done is called, never handing it to two workers', async () => {
    const queue = new WorkQueue({ clock: new FakeClock() });
    queue.add('ns/a');
    const key = await queue.get();
    queue.add('ns/a');
    assert.equal(queue.len(), 0, 'a key in processing is parked, not queued');
    let second: string | undefined;
    void queue.get().then((k) => (second = k));
    await settle();
    assert.equal(second, undefined, 'no second worker gets a key that is being processed');
    queue.done(key ?? '');
    await settle();
    assert.equal(second, 'ns/a');
  });

  it('wakes a waiting worker when a key arrives', async () => {
    const queue = new WorkQueue({ clock: new FakeClock() });
    const next = queue.get();
    queue.add('ns/b');
    assert.equal(await next, 'ns/b');
  });

  it('adds a key after the delay given to addAfter, keeping the earlier of two delays', async () => {
    const clock = new FakeClock();
    const queue = new WorkQueue({ clock });
    queue.addAfter('ns/a', 1000);
    queue.addAfter('ns/a', 500);
    assert.deepEqual(clock.pendingDelays(), [500]);
    await clock.advance(499);
    assert.equal(queue.len(), 0);
    await clock.advance(1);
    assert.equal(queue.len(), 1);
  });

  it('backs a failing key off exponentially from 5 ms and forgets it on success', async () => {
    const clock = new FakeClock();
    const queue = new WorkQueue({ clock, rateLimiter: new ExponentialBackoffRateLimiter(5, 1_000_000) });
    const delays: number[] = [];
    for (let i = 0; i < 5; i++) {
      queue.addRateLimited('ns/a');
      delays.push(clock.pendingDelays()[0] ?? -1);
      await clock.advance(delays[i] ?? 0);
      const key = await queue.get();
      queue.done(key ?? '');
    }
    assert.deepEqual(delays, [5, 10, 20, 40, 80]);
    assert.equal(queue.numRequeues('ns/a'), 5);
    queue.forget('ns/a');
    assert.equal(queue.numRequeues('ns/a'), 0);
  });

  it('caps the per-key backoff at 1000 s', () => {
    const limiter = new ExponentialBackoffRateLimiter(5, 1_000_000);
    let last = 0;
    for (let i = 0; i < 40; i++) last = limiter.when('k');
    assert.equal(last, 1_000_000);
  });

  it('lets a burst of 100 through the token bucket, then spaces keys at 10 per second', async () => {
    const clock = new FakeClock();
    const bucket = new TokenBucketRateLimiter(10, 100, clock);
    const first = Array.from({ length: 100 }, () => bucket.when());
    assert.ok(first.every((d) => d === 0));
    assert.equal(bucket.when(), 100);
    assert.equal(bucket.when(), 200);
    await clock.advance(1000);
    // Ten tokens came back in that second, two of which the reservations above already owed.
    const after = Array.from({ length: 9 }, () => bucket.when());
    assert.deepEqual(after, [0, 0, 0, 0, 0, 0, 0, 0, 100]);
  });

  it('takes the larger of per-key backoff and token bucket in the default limiter', () => {
    const clock = new FakeClock();
    const limiter = defaultControllerRateLimiter(clock);
    for (let i = 0; i < 100; i++) assert.equal(limiter.when(`k${i}`), 5, 'the first failure of each key waits 5 ms');
    assert.equal(limiter.when('k100'), 100, 'the 101st key in the same instant waits for the bucket');
  });

  it('hands out what is queued after shutDown, then undefined, and ignores new keys', async () => {
    const queue = new WorkQueue({ clock: new FakeClock() });
    queue.add('ns/a');
    queue.shutDown();
    queue.add('ns/b');
    assert.equal(await queue.get(), 'ns/a');
    assert.equal(await queue.get(), undefined);
  });

  it('releases waiting workers on shutDown', async () => {
    const queue = new WorkQueue({ clock: new FakeClock() });
    const waiting = queue.get();
    queue.shutDown();
    assert.equal(await waiting, undefined);
  });

  it('resolves shutDownWithDrain only after the keys in processing are done', async () => {
    const queue = new WorkQueue({ clock: new FakeClock() });
    queue.add('ns/a');
    const key = await queue.get();
    let drained = false;
    const drain = queue.shutDownWithDrain().then(() => (drained = true));
    await settle();
    assert.equal(drained, false);
    queue.done(key ?? '');
    await drain;
    assert.equal(drained, true);
  });

  it('drops pending addAfter timers on shutdown', async () => {
    const clock = new FakeClock();
    const queue = new WorkQueue({ clock });
    queue.addAfter('ns/a', 100);
    queue.shutDown();
    assert.deepEqual(clock.pendingDelays(), []);
  });

  it('reports its depth as keys come and go', async () => {
    const depths: number[] = [];
    const queue = new WorkQueue({ clock: new FakeClock(), onDepthChange: (d) => depths.push(d) });
    queue.add('a');
    queue.add('b');
    await queue.get();
    assert.deepEqual(depths, [1, 2, 1]);
  });
});
