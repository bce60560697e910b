// The corpora that ship in npm packages, as documents: counts, genres, clean text, and a
// train/validation split that depends on nothing but each document's id.
import { strict as assert } from 'node:assert';
import { BROWN_GENRES, detokenizeBrownSentence, type Document, loadBrown, loadMobyDick, loadSotu, mixDocuments, shuffleDocuments, splitDocuments } from '../../../worker/data/corpora.js';

const doc = (id: string, text = `text of ${id}`): Document => ({ id, text });

describe('corpora', () => {
  describe('Brown', () => {
    let brown: Document[];
    before(() => (brown = loadBrown()));

    it('has 500 documents in the 15 genres named by the file prefixes ca … cr', () => {
      assert.equal(brown.length, 500);
      assert.deepEqual(new Set(brown.map((d) => d.genre)), new Set(Object.values(BROWN_GENRES)));
      assert.equal(new Set(brown.map((d) => d.genre)).size, 15);
      assert.equal(brown.filter((d) => d.genre === 'news').length, 44);
      assert.equal(brown[0]?.id, 'brown-ca01');
    });

    it('strips every POS tag so no word/tag tokens like /at or /nn-tl remain', () => {
      const tagged = /\S\/(at|nn|nns|np|in|vbd|jj|cc|cs|rb)(-tl|-hl)?(?=\s|$)|``|''/;
      for (const d of brown) {
        const m = tagged.exec(d.text);
        if (m) assert.fail(`${d.id} still has ${JSON.stringify(m[0])} in ${JSON.stringify(d.text.slice(Math.max(0, m.index - 30), m.index + 30))}`);
      }
    });

    it('restores normal spacing around punctuation and quotes', () => {
      assert.ok(brown[0]?.text.startsWith('The Fulton County Grand Jury said Friday an investigation of Atlanta\'s recent primary election produced "no evidence" that any irregularities took place.'), brown[0]?.text.slice(0, 160));
      assert.equal(detokenizeBrownSentence('He/pps said/vbd (/( of/in course/nn )/) ,/, ``/`` yes/rb ;/. no/rb ?/. \'\'/\'\''), 'He said (of course), "yes; no?"');
    });
  });

  it('State of the Union: one document per address with its president and year', () => {
    const sotu = loadSotu();
    assert.ok(sotu.length > 200, `only ${sotu.length} addresses`);
    const first = sotu[0] as Document;
    assert.equal(first.year, 1790);
    assert.equal(first.author, 'George Washington');
    assert.ok(first.text.startsWith('Fellow-Citizens of the Senate'));
    assert.ok(sotu.every((d) => d.genre === 'sotu' && Number.isInteger(d.year) && d.text.length > 1000));
    assert.equal(new Set(sotu.map((d) => d.id)).size, sotu.length);
  });

  it('Moby Dick: 135 chapters plus etymology, extracts and epilogue, in reading order', () => {
    const moby = loadMobyDick();
    assert.equal(moby.length, 138);
    assert.deepEqual(moby.slice(0, 3).map((d) => d.id), ['moby-dick-etymology', 'moby-dick-extracts', 'moby-dick-1']);
    assert.equal(moby.at(-1)?.id, 'moby-dick-epilogue');
    assert.ok(moby[2]?.text.startsWith('Call me Ishmael.'));
    assert.equal(moby[2]?.title, '1. Loomings.');
  });

  describe('splits', () => {
    const docs = Array.from({ length: 200 }, (_, i) => doc(`d${i}`));

    it('are disjoint, cover every document and land near the requested fraction', () => {
      const s = splitDocuments(docs, 0.1);
      assert.equal(s.train.length + s.validation.length, 200);
      assert.equal(new Set([...s.train, ...s.validation].map((d) => d.id)).size, 200);
      assert.ok(s.validation.length >= 8 && s.validation.length <= 35, `validation has ${s.validation.length}`);
    });

    it('are the same on every call and do not move documents when others are added', () => {
      const a = splitDocuments(docs, 0.1, 3);
      assert.deepEqual(splitDocuments(docs, 0.1, 3), a);
      const grown = splitDocuments([...docs, ...Array.from({ length: 50 }, (_, i) => doc(`new${i}`))], 0.1, 3);
      const validationIds = new Set(grown.validation.map((d) => d.id));
      assert.ok(a.validation.every((d) => validationIds.has(d.id)));
      assert.notDeepEqual(splitDocuments(docs, 0.1, 4).validation, a.validation);
    });

    it('give both sides a document when there are only two', () => {
      const s = splitDocuments([doc('a'), doc('b')], 0.01);
      assert.equal(s.train.length, 1);
      assert.equal(s.validation.length, 1);
    });

    it('reject a duplicate id and a fraction outside [0, 1)', () => {
      assert.throws(() => splitDocuments([doc('a'), doc('a')], 0.5), /document id "a" appears twice/);
      assert.throws(() => splitDocuments(docs, 1), /validationFraction must be in \[0, 1\), got 1/);
    });

    it('shuffles deterministically by seed', () => {
      assert.deepEqual(shuffleDocuments(docs, 1), shuffleDocuments([...docs].reverse(), 1));
      assert.notDeepEqual(shuffleDocuments(docs, 1).map((d) => d.id), docs.map((d) => d.id));
    });
  });

  it('mixes corpora round-robin up to a character budget, cutting the last document at a word', () => {
    const a = [doc('a1', 'aaaa aaaa'), doc('a2', 'aaaa')];
    const b = [doc('b1', 'bbbb bbbb bbbb')];
    const mixed = mixDocuments([a, b], 20);
    assert.deepEqual(mixed.map((d) => d.id), ['a1', 'b1']);
    assert.equal(mixed[1]?.text, 'bbbb bbbb');
    assert.deepEqual(mixDocuments([a, b], 1000).map((d) => d.id), ['a1', 'b1', 'a2']);
  });
});
