// Dataset files: plain text, JSON Lines with a text field, pre-tokenized JSON Lines, and
// errors that name the file, the line and what was expected.
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseDatasetFormat, readDataset, tokenizeDataset } from '../../../worker/data/datasets.js';

describe('dataset readers', () => {
  let dir: string;
  const file = (name: string, content: string): string => {
    const path = join(dir, name);
    writeFileSync(path, content);
    return path;
  };
  before(() => (dir = mkdtempSync(join(tmpdir(), 'tessera-datasets-'))));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('reads a text file as one document', async () => {
    const path = file('a.txt', 'Call me Ishmael.\n\nSome years ago.\n');
    assert.deepEqual(await readDataset(path), { kind: 'text', file: path, texts: ['Call me Ishmael.\n\nSome years ago.\n'] });
  });

  it('reads JSON Lines by the text field, skipping blank lines, and a chosen field with textField', async () => {
    const path = file('a.jsonl', '{"text": "one", "label": 1}\n\n{"text": "two", "body": "b"}\n');
    assert.deepEqual(await readDataset(path), { kind: 'text', file: path, texts: ['one', 'two'] });
    const other = file('b.jsonl', '{"body": "x"}\n{"body": "y"}\n');
    assert.deepEqual(await readDataset(other, { textField: 'body' }), { kind: 'text', file: other, texts: ['x', 'y'] });
  });

  it('reads pre-tokenized input_ids records with format tokens', async () => {
    const path = file('t.jsonl', '{"input_ids": [1, 5, 7]}\n{"input_ids": [1, 2]}\n');
    assert.deepEqual(await readDataset(path, { format: 'tokens' }), { kind: 'tokens', file: path, sequences: [[1, 5, 7], [1, 2]] });
  });

  it('picks the format from the extension unless one is given', async () => {
    const path = file('looks.jsonl', '{"text": "hi"}\n');
    assert.deepEqual(await readDataset(path, { format: 'text' }), { kind: 'text', file: path, texts: ['{"text": "hi"}\n'] });
  });

  const errors: Array<{ name: string; content: string; format?: 'jsonl' | 'tokens'; vocabSize?: number; error: RegExp }> = [
    { name: 'bad.jsonl', content: '{"text": "ok"}\n{"text": oops}\n', error: /bad\.jsonl:2: not valid JSON .*"\{\\"text\\": oops\}"/ },
    { name: 'array.jsonl', content: '["a"]\n', error: /array\.jsonl:1: expected a JSON object per line, got an array/ },
    { name: 'field.jsonl', content: '{"text": "a"}\n{"txt": "b"}\n', error: /field\.jsonl:2: field "text" must be a string, got nothing \(fields present: txt; pick another with --text-field\)/ },
    { name: 'number.jsonl', content: '{"text": 5}\n', error: /number\.jsonl:1: field "text" must be a string, got 5/ },
    { name: 'empty.jsonl', content: '\n\n', error: /empty\.jsonl: the dataset has no records/ },
    { name: 'empty.txt', content: '  \n', error: /empty\.txt: the dataset is empty/ },
    { name: 'ids.jsonl', content: '{"input_ids": [1, 2.5]}\n', format: 'tokens', error: /ids\.jsonl:1: input_ids\[1\] is 2\.5: expected an integer ≥ 0/ },
    { name: 'range.jsonl', content: '{"input_ids": [1]}\n{"input_ids": [3, 99]}\n', format: 'tokens', vocabSize: 50, error: /range\.jsonl:2: input_ids\[1\] is 99: expected an integer in \[0, 50\)/ },
    { name: 'none.jsonl', content: '{"text": "a"}\n', format: 'tokens', error: /none\.jsonl:1: input_ids must be a non-empty array of token ids, got nothing/ },
  ];
  for (const e of errors) {
    it(`rejects ${e.name} naming the file and line`, async () => {
      await assert.rejects(readDataset(file(e.name, e.content), { format: e.format, vocabSize: e.vocabSize }), e.error);
    });
  }

  it('names a missing file and an unknown format with the valid ones', async () => {
    await assert.rejects(readDataset(join(dir, 'nope.txt')), /nope\.txt: cannot read the dataset \(no such file\)/);
    assert.throws(() => parseDatasetFormat('csv'), /invalid dataset format "csv": expected one of text, jsonl, tokens/);
  });

  it('tokenizes text datasets and passes token datasets through', () => {
    const encode = (t: string): number[] => [...t].map((ch) => ch.charCodeAt(0));
    assert.deepEqual(tokenizeDataset({ kind: 'text', file: 'f', texts: ['ab'] }, encode), [[97, 98]]);
    assert.deepEqual(tokenizeDataset({ kind: 'tokens', file: 'f', sequences: [[1]] }, null), [[1]]);
    assert.throws(() => tokenizeDataset({ kind: 'text', file: 'f.txt', texts: ['ab'] }, null), /f\.txt: a text dataset needs a tokenizer/);
  });
});
