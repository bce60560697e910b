// Status writes are coalesced to about one per second per object, and the last state wins.
import assert from 'node:assert/strict';
import { Coalescer } from '../../../operator/status/coalescer.js';
import { FakeClock } from '../fake-clock.js';

describe('the status write coalescer', () => {
  function recording(clock: FakeClock, fail = () => false) {
    const writes: { key: string; value: number; at: number }[] = [];
    const coalescer = new Coalescer<number>({
      intervalMs: 1000,
      clock,
      write: async (key, value) => {
        writes.push({ key, value, at: clock.now() });
        if (fail()) throw new Error('API server said no');
      },
    });
    return { writes, coalescer };
  }

  it('writes the first change at once and 10 changes within a second as at most 2 writes, the last value last', async () => {
    const clock = new FakeClock();
    const { writes, coalescer } = recording(clock);
    const start = clock.now();
    for (let i = 1; i <= 10; i++) {
      coalescer.offer('a', i);
      await clock.advance(99);
    }
    await clock.advance(2000);
    assert.ok(writes.length <= 2, `${writes.length} writes`);
    assert.equal(writes[0]?.value, 1);
    assert.equal(writes[0]?.at, start, 'leading edge is immediate');
    assert.equal(writes.at(-1)?.value, 10);
    assert.equal(writes.at(-1)?.at, start + 1000, 'trailing edge one interval later');
  });

  it('keeps objects independent', async () => {
    const clock = new FakeClock();
    const { writes, coalescer } = recording(clock);
    coalescer.offer('a', 1);
    coalescer.offer('b', 2);
    await clock.advance(0);
    assert.deepEqual(writes.map((w) => w.key).sort(), ['a', 'b']);
  });

  it('retries a failed write an interval later with the newest value', async () => {
    const clock = new FakeClock();
    let failures = 1;
    const { writes, coalescer } = recording(clock, () => failures-- > 0);
    coalescer.offer('a', 1);
    await clock.advance(10);
    coalescer.offer('a', 2);
    await clock.advance(5000);
    assert.deepEqual(writes.map((w) => w.value), [1, 2]);
  });

  it('does nothing more when nothing changed', async () => {
    const clock = new FakeClock();
    const { writes, coalescer } = recording(clock);
    coalescer.offer('a', 1);
    await clock.advance(10_000);
    assert.equal(writes.length, 1);
    assert.equal(clock.pending, 0);
  });

  it('flush() writes a pending trailing value immediately', async () => {
    const clock = new FakeClock();
    const { writes, coalescer } = recording(clock);
    coalescer.offer('a', 1);
    await clock.advance(10);
    coalescer.offer('a', 2);
    await coalescer.flush();
    assert.deepEqual(writes.map((w) => w.value), [1, 2]);
  });
});
