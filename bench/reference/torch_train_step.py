"""The training step of bench/kernels.ts in PyTorch on CPU: what a user would run instead.

Same Llama architecture and shapes (RMSNorm, RoPE, grouped-query attention, SwiGLU, untied LM
head), same batch, same optimizer (torch.optim.AdamW), same thread count. Attention uses
scaled_dot_product_attention with is_causal, PyTorch's fused path, since that is what a user
gets. Two modes: full gradients, and LoRA-only gradients on q/k/v/o with the base frozen.

Usage: python3 torch_train_step.py '{"hidden": 256, ...}'  → one JSON line on stdout:
  {"torch": "2.x", "threads": 2, "full": {"ms": …, "tokens_per_s": …}, "lora": {...}}
"""

import json
import math
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class LoraLinear(nn.Module):
    """y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ, the PEFT LoRA branch; rank 0 means a plain linear layer."""

    def __init__(self, inp, out, rank, alpha):
        super().__init__()
        self.base = nn.Linear(inp, out, bias=False)
        self.rank = rank
        if rank > 0:
            self.A = nn.Parameter(torch.empty(rank, inp).uniform_(-1 / math.sqrt(inp), 1 / math.sqrt(inp)))
            self.B = nn.Parameter(torch.zeros(out, rank))
            self.scaling = alpha / rank

    def forward(self, x):
        y = self.base(x)
        if self.rank > 0:
            y = y + (x @ self.A.t()) @ self.B.t() * self.scaling
        return y


def rope_tables(seq, head_dim, theta):
    inv = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    freqs = torch.outer(torch.arange(seq, dtype=torch.float32), inv)
    emb = torch.cat([freqs, freqs], -1)
    return emb.cos(), emb.sin()


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], -1)


class Block(nn.Module):
    def __init__(self, c, rank, alpha):
        super().__init__()
        d, hd = c["hidden"], c["head_dim"]
        self.h, self.kv, self.hd = c["heads"], c["kv_heads"], hd
        self.ln1 = RMSNorm(d, c["eps"])
        self.ln2 = RMSNorm(d, c["eps"])
        self.q = LoraLinear(d, self.h * hd, rank, alpha)
        self.k = LoraLinear(d, self.kv * hd, rank, alpha)
        self.v = LoraLinear(d, self.kv * hd, rank, alpha)
        self.o = LoraLinear(self.h * hd, d, rank, alpha)
        self.gate = nn.Linear(d, c["ffn"], bias=False)
        self.up = nn.Linear(d, c["ffn"], bias=False)
        self.down = nn.Linear(c["ffn"], d, bias=False)

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        h = self.ln1(x)
        q = self.q(h).view(b, t, self.h, self.hd).transpose(1, 2)
        k = self.k(h).view(b, t, self.kv, self.hd).transpose(1, 2)
        v = self.v(h).view(b, t, self.kv, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = self.h // self.kv
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.o(a.transpose(1, 2).reshape(b, t, -1))
        h = self.ln2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Llama(nn.Module):
    def __init__(self, c, rank=0, alpha=0):
        super().__init__()
        self.embed = nn.Embedding(c["vocab"], c["hidden"])
        self.blocks = nn.ModuleList(Block(c, rank, alpha) for _ in range(c["layers"]))
        self.norm = RMSNorm(c["hidden"], c["eps"])
        self.head = nn.Linear(c["hidden"], c["vocab"], bias=False)
        cos, sin = rope_tables(c["seq"], c["head_dim"], c["rope_theta"])
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        for name, p in self.named_parameters():
            if p.dim() == 2 and not name.endswith((".A", ".B")):
                nn.init.normal_(p, std=0.02)

    def forward(self, ids):
        x = self.embed(ids)
        cos, sin = self.cos[: ids.shape[1]], self.sin[: ids.shape[1]]
        for blk in self.blocks:
            x = blk(x, cos, sin)
        return self.head(self.norm(x))


def measure(c, mode, steps):
    torch.manual_seed(0)
    rank = c["lora_rank"] if mode == "lora" else 0
    model = Llama(c, rank, 2 * rank)
    if mode == "lora":
        for name, p in model.named_parameters():
            p.requires_grad = name.endswith(".A") or name.endswith(".B")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0)
    gen = torch.Generator().manual_seed(1)
    b, t = c["batch"], c["seq"]

    def step():
        ids = torch.randint(0, c["vocab"], (b, t + 1), generator=gen)
        t0 = time.perf_counter()
        logits = model(ids[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, c["vocab"]), ids[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - t0

    step()  # warm-up: allocator and kernels
    times = sorted(step() for _ in range(steps))
    median = statistics.median(times)
    return {"ms": median * 1e3, "tokens_per_s": b * t / median}


def main():
    c = json.loads(sys.argv[1])
    torch.set_num_threads(c["threads"])
    out = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    for mode in ("full", "lora"):
        out[mode] = measure(c, mode, c["steps"])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
