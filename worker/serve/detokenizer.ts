// Token ids → text as it streams, and stop strings.
//
// Byte-level BPE splits characters across tokens, so decoding one token at a time would emit
// broken UTF-8; a token can also change how the previous one decodes (a leading space). As
// text-generation-inference does, keep two offsets: text is re-decoded from `prefix` on, and
// only what lies beyond the text up to `read` is new, once it does not end in U+FFFD.
//
// Stop strings may span tokens: text that could still become a stop string is held back until
// it either completes one (cut there, finish) or cannot any more.

export interface Decoder {
  decode(ids: readonly number[], options?: { skipSpecialTokens?: boolean }): string;
}

export class IncrementalDetokenizer {
  private readonly ids: number[] = [];
  private prefix = 0;
  private read = 0;

  constructor(private readonly tokenizer: Decoder) {}

  /** The text this token completes (possibly empty). */
  push(token: number): string {
    this.ids.push(token);
    const before = this.text(this.prefix, this.read);
    const after = this.text(this.prefix, this.ids.length);
    if (after.length <= before.length || after.endsWith('\uFFFD')) return '';
    this.prefix = this.read;
    this.read = this.ids.length;
    return after.slice(before.length);
  }

  /** Whatever is still held back at the end (an incomplete character decodes as U+FFFD). */
  flush(): string {
    const before = this.text(this.prefix, this.read);
    const after = this.text(this.prefix, this.ids.length);
    this.prefix = this.read = this.ids.length;
    return after.length > before.length ? after.slice(before.length) : '';
  }

  private text(from: number, to: number): string {
    // The tokenizers library refuses to decode an empty list.
    return to > from ? this.tokenizer.decode(this.ids.slice(from, to), { skipSpecialTokens: true }) : '';
  }
}

export class StopMatcher {
  private held = '';
  private stopped = false;

  constructor(private readonly stops: readonly string[]) {}

  get done(): boolean {
    return this.stopped;
  }

  /** Text safe to emit now; `stop` once a stop string was completed (it and what follows are dropped). */
  push(text: string): { text: string; stop: boolean } {
    if (this.stopped) return { text: '', stop: true };
    const buf = this.held + text;
    let cut = -1;
    for (const s of this.stops) {
      const at = buf.indexOf(s);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) {
      this.stopped = true;
      this.held = '';
      return { text: buf.slice(0, cut), stop: true };
    }
    const keep = this.partialSuffix(buf);
    this.held = buf.slice(buf.length - keep);
    return { text: buf.slice(0, buf.length - keep), stop: false };
  }

  /** The held-back text, at the end of the sequence. */
  flush(): string {
    const out = this.stopped ? '' : this.held;
    this.held = '';
    return out;
  }

  /** Length of the longest suffix of `buf` that is a proper prefix of some stop string. */
  private partialSuffix(buf: string): number {
    let best = 0;
    for (const s of this.stops) {
      for (let n = Math.min(s.length - 1, buf.length); n > best; n--) {
        if (buf.endsWith(s.slice(0, n))) {
          best = n;
          break;
        }
      }
    }
    return best;
  }
}
