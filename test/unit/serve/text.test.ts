// Text at the edges of the engine: incremental detokenization, stop strings across token
// boundaries, and chat prompts from a template or the plain fallback.
import assert from 'node:assert/strict';
import { ChatTemplate } from '../../../worker/serve/chat-template.js';
import { type Decoder, IncrementalDetokenizer, StopMatcher } from '../../../worker/serve/detokenizer.js';

/** Tokens are byte values; decoding is UTF-8 with replacement characters, as byte-level BPE does. */
const bytes: Decoder = { decode: (ids) => Buffer.from(ids).toString('utf8') };

describe('serve: streaming text', () => {
  it('holds back a character split across tokens until it is complete', () => {
    const d = new IncrementalDetokenizer(bytes);
    const utf8 = [...Buffer.from('a€b')]; // € is three bytes
    const out = utf8.map((t) => d.push(t));
    assert.deepEqual(out, ['a', '', '', '€', 'b']);
    assert.equal(d.flush(), '');
  });

  it('gives out an incomplete character at the end as U+FFFD', () => {
    const d = new IncrementalDetokenizer(bytes);
    assert.equal(d.push(0xe2), '');
    assert.equal(d.flush(), '\uFFFD');
  });

  it('cuts at the earliest stop string, even when it spans several pushes, and emits nothing after it', () => {
    const s = new StopMatcher(['END', 'xy']);
    const parts = ['hello E', 'N', 'D tail'].map((t) => s.push(t));
    assert.deepEqual(parts, [{ text: 'hello ', stop: false }, { text: '', stop: false }, { text: '', stop: true }]);
    assert.ok(s.done);
    assert.deepEqual(s.push('more'), { text: '', stop: true });
  });

  it('releases held-back text once it can no longer become a stop string, and at the end', () => {
    const s = new StopMatcher(['END']);
    assert.deepEqual(s.push('an E'), { text: 'an ', stop: false });
    assert.deepEqual(s.push('ND? no: EX'), { text: '', stop: true });
    const t = new StopMatcher(['END']);
    assert.deepEqual(t.push('the EN'), { text: 'the ', stop: false });
    assert.deepEqual(t.push('d'), { text: 'ENd', stop: false });
    assert.deepEqual(t.push(' E'), { text: ' ', stop: false });
    assert.equal(t.flush(), 'E');
  });
});

describe('serve: chat prompts', () => {
  const messages = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }];

  it('renders tokenizer_config.json\'s chat_template with the special tokens and a generation prompt', () => {
    const t = ChatTemplate.fromTokenizerConfig({ bos_token: { content: '<s>' }, chat_template: "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}" });
    assert.deepEqual(t.render(messages), { text: '<s>[system] Be brief.\n[user] Hi\n[assistant]', hasSpecialTokens: true });
  });

  it('takes the "default" of named templates', () => {
    const t = ChatTemplate.fromTokenizerConfig({ chat_template: [{ name: 'tool_use', template: 'tools' }, { name: 'default', template: '{{ messages[0].content }}' }] });
    assert.equal(t.render(messages).text, 'Be brief.');
  });

  it('falls back to a role: content transcript without a template', () => {
    const t = ChatTemplate.fromTokenizerConfig({});
    assert.equal(t.hasTemplate, false);
    assert.deepEqual(t.render(messages), { text: 'system: Be brief.\nuser: Hi\nassistant:', hasSpecialTokens: false });
  });

  it('names the file of a template that does not parse', () => {
    assert.throws(() => ChatTemplate.fromTokenizerConfig({ chat_template: '{% for m in messages %}' }, '/m/tokenizer_config.json'), /\/m\/tokenizer_config\.json: chat_template does not parse/);
  });
});
