"""Independent NumPy reference for the Llama family (llama / mistral / qwen2), written from
transformers' modeling_llama.py / modeling_qwen2.py (LlamaRMSNorm, LlamaRotaryEmbedding with
rope_type default|linear, rotate_half, apply_rotary_pos_emb, repeat_kv, eager_attention_forward,
LlamaMLP, LlamaForCausalLM) and masking_utils.py (sliding_window_overlay: a query sees the keys
q - window < k <= q; mistral slides in every layer, qwen2 with use_sliding_window from layer
max_window_layers on, as Qwen2Config's layer_types), in float64.

It writes test/fixtures/model/llama-tiny.json: for each variant a tiny random checkpoint
(config.json fields, HF tensor names), fixed token ids, and the expected logits.
Tensors are little-endian float32 in base64. Tests read the fixture; they never run Python.

Regenerate (from the repository root):
    python3 -m venv ~/.cache/tessera/venv && ~/.cache/tessera/venv/bin/pip install numpy
    ~/.cache/tessera/venv/bin/python scripts/reference/llama_numpy.py test/fixtures/model/llama-tiny.json
Variants draw from one seeded generator in order, so appending a variant leaves the others' bytes
unchanged.
"""
import base64
import json
import sys

import numpy as np


def rms_norm(x, weight, eps):
    variance = np.mean(x * x, axis=-1, keepdims=True)
    return weight * (x / np.sqrt(variance + eps))


def inv_freq(cfg):
    dim = cfg["head_dim"]
    inv = 1.0 / (cfg["rope_theta"] ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
    scaling = cfg.get("rope_scaling")
    if scaling and scaling.get("rope_type", scaling.get("type")) == "linear":
        inv = inv / scaling["factor"]
    return inv


def rotary_cos_sin(cfg, position_ids):
    freqs = position_ids[..., None].astype(np.float64) * inv_freq(cfg)[None, None, :]  # [B, T, hd/2]
    emb = np.concatenate([freqs, freqs], axis=-1)
    return np.cos(emb), np.sin(emb)


def rotate_half(x):
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def linear(x, w, name, params):
    y = x @ w.T
    bias = params.get(name + ".bias")
    return y if bias is None else y + bias


def repeat_kv(h, n_rep):
    b, kv, t, d = h.shape
    return np.broadcast_to(h[:, :, None], (b, kv, n_rep, t, d)).reshape(b, kv * n_rep, t, d)


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def layer_window(cfg, layer):
    """The sliding window of a layer in tokens, or None for full causal attention."""
    if cfg["model_type"] == "mistral":
        return cfg.get("sliding_window")
    if cfg["model_type"] == "qwen2" and cfg.get("use_sliding_window") and layer >= cfg.get("max_window_layers", 28):
        return cfg.get("sliding_window")
    return None


def attention_mask(t, window):
    """Additive [T, T]: -inf where the key is after the query or window or more positions before it."""
    q = np.arange(t)[:, None]
    k = np.arange(t)[None, :]
    visible = k <= q
    if window is not None:
        visible &= k > q - window
    return np.where(visible, 0.0, -np.inf)


def forward(cfg, params, input_ids):
    """Logits [B, T, vocab] for unpadded sequences starting at position 0."""
    b, t = input_ids.shape
    h_heads, kv_heads, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps = cfg["rms_norm_eps"]
    x = params["model.embed_tokens.weight"][input_ids]
    position_ids = np.broadcast_to(np.arange(t), (b, t))
    cos, sin = rotary_cos_sin(cfg, position_ids)
    cos, sin = cos[:, None], sin[:, None]  # unsqueeze_dim=1 → [B, 1, T, hd]
    for i in range(cfg["num_hidden_layers"]):
        mask = attention_mask(t, layer_window(cfg, i))
        p = f"model.layers.{i}."
        residual = x
        hs = rms_norm(x, params[p + "input_layernorm.weight"], eps)
        a = p + "self_attn."
        q = linear(hs, params[a + "q_proj.weight"], a + "q_proj", params).reshape(b, t, h_heads, hd).transpose(0, 2, 1, 3)
        k = linear(hs, params[a + "k_proj.weight"], a + "k_proj", params).reshape(b, t, kv_heads, hd).transpose(0, 2, 1, 3)
        v = linear(hs, params[a + "v_proj.weight"], a + "v_proj", params).reshape(b, t, kv_heads, hd).transpose(0, 2, 1, 3)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = repeat_kv(k, h_heads // kv_heads)
        v = repeat_kv(v, h_heads // kv_heads)
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd) + mask
        out = softmax(scores) @ v
        out = out.transpose(0, 2, 1, 3).reshape(b, t, h_heads * hd)
        x = residual + linear(out, params[a + "o_proj.weight"], a + "o_proj", params)
        residual = x
        hs = rms_norm(x, params[p + "post_attention_layernorm.weight"], eps)
        m = p + "mlp."
        gate = linear(hs, params[m + "gate_proj.weight"], m + "gate_proj", params)
        up = linear(hs, params[m + "up_proj.weight"], m + "up_proj", params)
        silu = gate / (1.0 + np.exp(-gate))
        x = residual + linear(silu * up, params[m + "down_proj.weight"], m + "down_proj", params)
    x = rms_norm(x, params["model.norm.weight"], eps)
    head = params["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else params["lm_head.weight"]
    return x @ head.T


def random_checkpoint(cfg, rng):
    d, ffn, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    hd, h, kv = cfg["head_dim"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    qkv_bias = cfg["model_type"] == "qwen2" or cfg.get("attention_bias", False)
    # Scales keep activations O(1) so attention is far from uniform and errors show.
    lin = lambda o, i: rng.standard_normal((o, i)) / np.sqrt(i)
    params = {"model.embed_tokens.weight": rng.standard_normal((v, d))}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        params[p + "input_layernorm.weight"] = 1.0 + 0.1 * rng.standard_normal(d)
        shapes = {"q_proj": (h * hd, d), "k_proj": (kv * hd, d), "v_proj": (kv * hd, d), "o_proj": (d, h * hd)}
        for name, (o, n) in shapes.items():
            params[p + "self_attn." + name + ".weight"] = lin(o, n)
            if qkv_bias and name != "o_proj":
                params[p + "self_attn." + name + ".bias"] = 0.1 * rng.standard_normal(o)
        params[p + "post_attention_layernorm.weight"] = 1.0 + 0.1 * rng.standard_normal(d)
        params[p + "mlp.gate_proj.weight"] = lin(ffn, d)
        params[p + "mlp.up_proj.weight"] = lin(ffn, d)
        params[p + "mlp.down_proj.weight"] = lin(d, ffn)
    params["model.norm.weight"] = 1.0 + 0.1 * rng.standard_normal(d)
    if not cfg["tie_word_embeddings"]:
        params["lm_head.weight"] = lin(v, d)
    # The fixture stores float32: compute the reference from the rounded values.
    return {k: val.astype(np.float32).astype(np.float64) for k, val in params.items()}


def b64(a):
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode("ascii")


BASE = {
    "model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8, "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0, "rope_scaling": None, "max_position_embeddings": 64, "vocab_size": 64,
    "tie_word_embeddings": False, "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
}

VARIANTS = {
    "llama": {},
    "llama-linear-rope-tied": {"rope_scaling": {"rope_type": "linear", "factor": 2.0}, "tie_word_embeddings": True},
    "qwen2-bias": {"model_type": "qwen2", "rope_theta": 1000000.0},
    # Windows of 3 over 7 tokens: most queries lose keys, so a missing or off-by-one mask shows.
    "mistral-window3": {"model_type": "mistral", "sliding_window": 3},
    "qwen2-window3-from-layer1": {"model_type": "qwen2", "rope_theta": 1000000.0, "use_sliding_window": True, "sliding_window": 3, "max_window_layers": 1},
}


def main(out_path):
    rng = np.random.default_rng(20240611)
    input_ids = rng.integers(0, BASE["vocab_size"], size=(2, 7))
    variants = {}
    for name, overrides in VARIANTS.items():
        cfg = {**BASE, **overrides}
        params = random_checkpoint(cfg, rng)
        logits = forward(cfg, params, input_ids)
        variants[name] = {
            "config": cfg,
            "weights": {k: {"shape": list(v.shape), "data": b64(v)} for k, v in params.items()},
            "logits": {"shape": list(logits.shape), "data": b64(logits)},
        }
    fixture = {
        "generator": "scripts/reference/llama_numpy.py",
        "input_ids": input_ids.tolist(),
        "variants": variants,
    }
    with open(out_path, "w") as f:
        json.dump(fixture, f, separators=(",", ":"))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "test/fixtures/model/llama-tiny.json")
