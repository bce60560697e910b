// GPT-2's byte-level alphabet: every byte maps to one printable Unicode character, so BPE
// can run over arbitrary UTF-8 (emoji, broken sequences) with no unknown tokens. The
// printable ASCII and Latin-1 bytes map to themselves; the rest to U+0100 onwards.

function buildByteToChar(): string[] {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const table: string[] = new Array<string>(256);
  for (const b of printable) table[b] = String.fromCodePoint(b);
  let next = 256;
  for (let b = 0; b < 256; b++) if (table[b] === undefined) table[b] = String.fromCodePoint(next++);
  return table;
}

export const BYTE_TO_CHAR: readonly string[] = buildByteToChar();
export const CHAR_TO_BYTE: ReadonlyMap<string, number> = new Map(BYTE_TO_CHAR.map((c, b) => [c, b]));

/**
 * The ByteLevel pre-tokenizer's split (GPT-2's pattern). @huggingface/tokenizers always
 * uses exactly this one for ByteLevel, so the trainer must split the same way.
 */
export const BYTE_LEVEL_PATTERN = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

export function bytesToSymbols(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += BYTE_TO_CHAR[b];
  return s;
}
