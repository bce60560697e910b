// Chat messages → one prompt string, the way transformers' apply_chat_template does it: the
// tokenizer_config.json's `chat_template` (Jinja) rendered by @huggingface/jinja with the
// messages, the special tokens and add_generation_prompt. A model without a template gets a
// plain "role: content" transcript ending in "assistant:", which a base model continues.
import { Template } from '@huggingface/jinja';

export interface ChatMessage {
  role: string;
  content: string;
}

export interface ChatPrompt {
  text: string;
  /** Whether the text already holds the special tokens (a template adds BOS itself). */
  hasSpecialTokens: boolean;
}

export class ChatTemplate {
  private constructor(
    private readonly template: Template | null,
    private readonly specials: Record<string, string>,
  ) {}

  /** From tokenizer_config.json's fields; a template that does not parse fails here, naming the file. */
  static fromTokenizerConfig(config: Readonly<Record<string, unknown>>, source = 'tokenizer_config.json'): ChatTemplate {
    const raw = config.chat_template;
    let text: string | null = null;
    if (typeof raw === 'string') text = raw;
    else if (Array.isArray(raw)) {
      // Newer configs list named templates; "default" is the one apply_chat_template uses.
      const named = raw.filter((t): t is { name: string; template: string } => typeof t === 'object' && t !== null && typeof (t as { template?: unknown }).template === 'string');
      text = (named.find((t) => t.name === 'default') ?? named[0])?.template ?? null;
    }
    const specials: Record<string, string> = {};
    for (const key of ['bos_token', 'eos_token', 'unk_token', 'pad_token']) {
      const v = config[key];
      const content = typeof v === 'string' ? v : typeof v === 'object' && v !== null && typeof (v as { content?: unknown }).content === 'string' ? (v as { content: string }).content : null;
      if (content !== null) specials[key] = content;
    }
    let template: Template | null = null;
    if (text !== null) {
      try {
        template = new Template(text);
      } catch (err) {
        throw new Error(`${source}: chat_template does not parse: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    return new ChatTemplate(template, specials);
  }

  get hasTemplate(): boolean {
    return this.template !== null;
  }

  render(messages: readonly ChatMessage[]): ChatPrompt {
    if (!this.template) {
      const lines = messages.map((m) => `${m.role}: ${m.content}`);
      return { text: `${lines.join('\n')}\nassistant:`, hasSpecialTokens: false };
    }
    const text = this.template.render({ messages: messages.map((m) => ({ ...m })), add_generation_prompt: true, ...this.specials });
    return { text, hasSpecialTokens: true };
  }
}
