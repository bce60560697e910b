// At most one status write per object per interval: the first change is written at once
// (leading edge), changes during the interval collapse into one write at its end
// (trailing edge) that carries the latest state. A failed write is retried at the next
// interval with whatever the state is by then, never with the stale snapshot.
import { systemClock, type Clock, type TimerHandle } from './clock.js';

export interface CoalescerOptions<T> {
  /** Minimum time between two writes of the same key. */
  intervalMs: number;
  /** Performs the write; its rejection is reported to onError and retried. */
  write: (key: string, value: T) => Promise<void>;
  onError?: (key: string, err: unknown) => void;
  clock?: Clock;
  /** Give up on a key after this many failed writes in a row (the object is probably gone). */
  maxFailures?: number;
}

interface Slot<T> {
  value: T;
  dirty: boolean;
  writing: boolean;
  lastWriteAt: number;
  timer: TimerHandle | undefined;
  failures: number;
}

export class Coalescer<T> {
  private readonly slots = new Map<string, Slot<T>>();
  private readonly clock: Clock;
  private readonly idle = new Set<() => void>();
  private closed = false;

  constructor(private readonly options: CoalescerOptions<T>) {
    this.clock = options.clock ?? systemClock;
  }

  /** Records the latest value for key and schedules its write. */
  offer(key: string, value: T): void {
    if (this.closed) return;
    let slot = this.slots.get(key);
    if (!slot) {
      slot = { value, dirty: true, writing: false, lastWriteAt: -Infinity, timer: undefined, failures: 0 };
      this.slots.set(key, slot);
    }
    slot.value = value;
    slot.dirty = true;
    this.schedule(key, slot);
  }

  /** Drops a key (its object was deleted); a write in flight finishes but is not retried. */
  forget(key: string): void {
    const slot = this.slots.get(key);
    if (slot?.timer !== undefined) this.clock.clearTimeout(slot.timer);
    this.slots.delete(key);
  }

  /** Writes everything pending now, ignoring the interval; for shutdown. */
  async flush(): Promise<void> {
    for (const [key, slot] of this.slots) {
      if (slot.timer !== undefined) this.clock.clearTimeout(slot.timer);
      slot.timer = undefined;
      if (slot.dirty && !slot.writing) void this.write(key, slot);
    }
    await this.whenIdle();
  }

  /** Stops scheduling; pending trailing writes are dropped. */
  close(): void {
    this.closed = true;
    for (const slot of this.slots.values()) if (slot.timer !== undefined) this.clock.clearTimeout(slot.timer);
    this.slots.clear();
  }

  /** Resolves when no write is in flight. */
  whenIdle(): Promise<void> {
    if (![...this.slots.values()].some((s) => s.writing)) return Promise.resolve();
    return new Promise((resolve) => this.idle.add(resolve));
  }

  private schedule(key: string, slot: Slot<T>): void {
    if (slot.writing || slot.timer !== undefined || !slot.dirty || this.closed) return;
    const wait = slot.lastWriteAt + this.options.intervalMs - this.clock.now();
    if (wait <= 0) {
      void this.write(key, slot);
      return;
    }
    slot.timer = this.clock.setTimeout(() => {
      slot.timer = undefined;
      this.schedule(key, slot);
    }, wait);
  }

  private async write(key: string, slot: Slot<T>): Promise<void> {
    slot.writing = true;
    slot.dirty = false;
    slot.lastWriteAt = this.clock.now();
    try {
      await this.options.write(key, slot.value);
      slot.failures = 0;
    } catch (err) {
      slot.failures++;
      this.options.onError?.(key, err);
      if (slot.failures < (this.options.maxFailures ?? 10)) slot.dirty = true;
    } finally {
      slot.writing = false;
    }
    if (this.slots.get(key) === slot) this.schedule(key, slot);
    if (![...this.slots.values()].some((s) => s.writing)) {
      for (const resolve of this.idle) resolve();
      this.idle.clear();
    }
  }
}
