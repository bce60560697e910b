// Evaluation and training data files, in the forms the ecosystem uses:
//   text    — a plain text file, one document (as the wikitext perplexity recipes read it);
//   jsonl   — JSON Lines, one document per line in a string field (default "text");
//   tokens  — JSON Lines of pre-tokenized {"input_ids": [...]} records.
// Every error names the file and, for JSON Lines, the 1-based line, and says what was expected.
import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';

export type DatasetFormat = 'text' | 'jsonl' | 'tokens';
export const DATASET_FORMATS: readonly DatasetFormat[] = ['text', 'jsonl', 'tokens'];

export type Dataset =
  | { kind: 'text'; file: string; texts: string[] }
  | { kind: 'tokens'; file: string; sequences: number[][] };

export interface ReadDatasetOptions {
  /** Default: from the extension (.jsonl/.json → jsonl, anything else → text). */
  format?: DatasetFormat;
  /** The string field of each JSON Lines record. Default "text". */
  textField?: string;
  /** Largest valid token id + 1, to reject ids a model cannot embed. */
  vocabSize?: number;
}

export function parseDatasetFormat(value: string): DatasetFormat {
  if (!(DATASET_FORMATS as readonly string[]).includes(value)) throw new Error(`invalid dataset format ${JSON.stringify(value)}: expected one of ${DATASET_FORMATS.join(', ')}`);
  return value as DatasetFormat;
}

export function formatFromExtension(file: string): DatasetFormat {
  const ext = extname(file).toLowerCase();
  return ext === '.jsonl' || ext === '.json' ? 'jsonl' : 'text';
}

async function readUtf8(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(`${file}: cannot read the dataset (${code === 'ENOENT' ? 'no such file' : (err as Error).message})`);
  }
}

/** Non-blank lines with their 1-based numbers, each parsed as a JSON object. */
function* jsonRecords(file: string, content: string): Generator<{ line: number; record: Record<string, unknown> }> {
  const lines = content.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const raw = (lines[i] as string).trim();
    if (raw === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch (err) {
      throw new Error(`${file}:${i + 1}: not valid JSON (${(err as Error).message}): ${JSON.stringify(raw.slice(0, 60))}`);
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new Error(`${file}:${i + 1}: expected a JSON object per line, got ${Array.isArray(value) ? 'an array' : JSON.stringify(value)?.slice(0, 40)}`);
    }
    yield { line: i + 1, record: value as Record<string, unknown> };
  }
}

export function parseTextFile(file: string, content: string): Dataset {
  if (content.trim() === '') throw new Error(`${file}: the dataset is empty`);
  return { kind: 'text', file, texts: [content] };
}

export function parseJsonlTexts(file: string, content: string, textField = 'text'): Dataset {
  const texts: string[] = [];
  for (const { line, record } of jsonRecords(file, content)) {
    const v = record[textField];
    if (typeof v !== 'string') {
      const fields = Object.keys(record).slice(0, 8).join(', ') || 'none';
      throw new Error(`${file}:${line}: field ${JSON.stringify(textField)} must be a string, got ${v === undefined ? 'nothing' : JSON.stringify(v).slice(0, 40)} (fields present: ${fields}; pick another with --text-field)`);
    }
    texts.push(v);
  }
  if (texts.length === 0) throw new Error(`${file}: the dataset has no records`);
  return { kind: 'text', file, texts };
}

export function parseJsonlTokens(file: string, content: string, vocabSize?: number): Dataset {
  const sequences: number[][] = [];
  for (const { line, record } of jsonRecords(file, content)) {
    const ids = record.input_ids;
    if (!Array.isArray(ids) || ids.length === 0) {
      throw new Error(`${file}:${line}: input_ids must be a non-empty array of token ids, got ${ids === undefined ? 'nothing' : JSON.stringify(ids).slice(0, 40)}`);
    }
    ids.forEach((id, j) => {
      const bad = typeof id !== 'number' || !Number.isInteger(id) || id < 0;
      if (bad || (vocabSize !== undefined && (id as number) >= vocabSize)) {
        const range = vocabSize === undefined ? 'an integer ≥ 0' : `an integer in [0, ${vocabSize})`;
        throw new Error(`${file}:${line}: input_ids[${j}] is ${JSON.stringify(id)}: expected ${range}`);
      }
    });
    sequences.push(ids as number[]);
  }
  if (sequences.length === 0) throw new Error(`${file}: the dataset has no records`);
  return { kind: 'tokens', file, sequences };
}

export async function readDataset(file: string, opts: ReadDatasetOptions = {}): Promise<Dataset> {
  const format = opts.format ?? formatFromExtension(file);
  const content = await readUtf8(file);
  switch (format) {
    case 'text':
      return parseTextFile(file, content);
    case 'jsonl':
      return parseJsonlTexts(file, content, opts.textField);
    case 'tokens':
      return parseJsonlTokens(file, content, opts.vocabSize);
    default:
      throw new Error(`invalid dataset format ${JSON.stringify(format)}: expected one of ${DATASET_FORMATS.join(', ')}`);
  }
}

/** Texts → token sequences with `encode`; token datasets pass through unchanged. */
export function tokenizeDataset(ds: Dataset, encode: ((text: string) => number[]) | null): number[][] {
  if (ds.kind === 'tokens') return ds.sequences;
  if (!encode) throw new Error(`${ds.file}: a text dataset needs a tokenizer: the model directory has no tokenizer.json (or use --format tokens with pre-tokenized input_ids)`);
  return ds.texts.map((t) => encode(t));
}
