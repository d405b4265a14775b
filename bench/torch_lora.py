"""PyTorch reference for `npm run bench -- train`: the same Llama-style model, LoRA on q, k, v, o,
gate, up, down, random tokens, AdamW, fp32. Prints one JSON line: median step time, tokens/s and
peak RSS. Run with OMP_WAIT_POLICY=PASSIVE and the thread count in the config (the bench does).
Usage: python3 torch_lora.py '{"d":256,"layers":4,"heads":4,"ff":688,"seq":256,"batch":4,"rank":8}'
"""
import json
import math
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

cfg = json.loads(sys.argv[1])
torch.set_num_threads(int(cfg.get("threads", 2)))
torch.manual_seed(0)
d, n_layer, n_head, ff = cfg["d"], cfg["layers"], cfg["heads"], cfg["ff"]
seq, batch, rank, vocab = cfg["seq"], cfg["batch"], cfg["rank"], cfg.get("vocab", 32000)
hd = d // n_head


class LoraLinear(nn.Module):
    """y = W x + (alpha / r) B A x with W frozen."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_out, n_in) / math.sqrt(n_in), requires_grad=False)
        self.lora_a = nn.Parameter(torch.empty(rank, n_in).uniform_(-1 / math.sqrt(n_in), 1 / math.sqrt(n_in)))
        self.lora_b = nn.Parameter(torch.zeros(n_out, rank))
        self.scale = 2.0

    def forward(self, x):
        return F.linear(x, self.weight) + F.linear(F.linear(x, self.lora_a), self.lora_b) * self.scale


class RmsNorm(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n), requires_grad=False)

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * self.weight


def rotary(t, cos, sin):
    # t [B, H, T, hd]; pairs (i, i + hd/2)
    a, b = t[..., : hd // 2], t[..., hd // 2 :]
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn_norm, self.ffn_norm = RmsNorm(d), RmsNorm(d)
        self.q, self.k, self.v, self.o = (LoraLinear(d, d) for _ in range(4))
        self.gate, self.up, self.down = LoraLinear(d, ff), LoraLinear(d, ff), LoraLinear(ff, d)

    def forward(self, x, cos, sin, mask):
        h = self.attn_norm(x)
        shape = (batch, seq, n_head, hd)
        q = rotary(self.q(h).view(shape).transpose(1, 2), cos, sin)
        k = rotary(self.k(h).view(shape).transpose(1, 2), cos, sin)
        v = self.v(h).view(shape).transpose(1, 2)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + mask, dim=-1)
        x = x + self.o((att @ v).transpose(1, 2).reshape(batch, seq, d))
        h = self.ffn_norm(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Parameter(torch.randn(vocab, d) * 0.02, requires_grad=False)
        self.blocks = nn.ModuleList(Block() for _ in range(n_layer))
        self.norm = RmsNorm(d)
        self.head = nn.Parameter(torch.randn(vocab, d) / math.sqrt(d), requires_grad=False)
        inv = 1.0 / (10000 ** (torch.arange(0, hd // 2).float() * 2 / hd))
        ang = torch.arange(seq).float()[:, None] * inv[None, :]
        self.register_buffer("cos", ang.cos())
        self.register_buffer("sin", ang.sin())
        self.register_buffer("mask", torch.full((seq, seq), float("-inf")).triu(1))

    def forward(self, tokens):
        x = self.embed[tokens]
        for blk in self.blocks:
            x = blk(x, self.cos, self.sin, self.mask)
        return F.linear(self.norm(x), self.head)


model = Model()
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=1e-4)
tokens = torch.randint(0, vocab, (batch, seq))
targets = torch.randint(0, vocab, (batch, seq))


def step():
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(tokens).view(-1, vocab), targets.view(-1))
    loss.backward()
    opt.step()
    return loss.item()


for _ in range(2):
    step()
times = []
for _ in range(int(cfg.get("steps", 6))):
    t0 = time.perf_counter()
    step()
    times.append(time.perf_counter() - t0)
ms = statistics.median(times) * 1000
print(json.dumps({
    "torch": torch.__version__, "threads": torch.get_num_threads(), "ms": ms,
    "tokensPerSecond": batch * seq / (ms / 1000), "peakRssMiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "trainable": sum(p.numel() for p in params),
}))
