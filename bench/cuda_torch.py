"""PyTorch's side of `bench cuda`: the same shapes on the same GPU, written as JSON that
`npm run bench -- cuda --torch FILE` puts beside our figures (ratioToTorch).

Softmax attention is torch's scaled_dot_product_attention (its flash kernel where it has one);
linear-angular attention is written with torch ops as the release computes it (docs/algorithms.md
section 2: normalised q and k, S = k^T v, z = 0.5 v + q S / pi, y = normalize(z) + a depthwise
convolution of v along the tokens); the ViT is DeiT's (patch embedding, class token, pre-norm
blocks, GELU MLP, final norm, head). float32 throughout: TF32 is switched off, as our kernels
compute in float32. Times end with torch.cuda.synchronize(); medians of interleaved rounds.

    python3 bench/cuda_torch.py --out torch.json [--tokens 197,785 --models deitSmall --images 224
                                                   --batches 1,32 --train-batch 8 --repeats 10]
    python3 bench/cuda_torch.py --device cpu --quick     (a check that the script runs)
"""
import argparse
import json
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

HEADS, HEAD_DIM, TAPS = 6, 64, 9
MODELS = {"deitSmall": (384, 6), "deitBase": (768, 12)}  # width, heads; depth 12, patch 16


def softmax_attention(q, k, v):
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v)
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1) @ v


def linear_angular_attention(q, k, v, dconv, aux_tau=None):
    qn, kn = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    s = kn.transpose(-2, -1) @ v
    z = 0.5 * v + (qn @ s) / math.pi
    y = F.normalize(z, dim=-1)
    heads, taps = dconv.shape
    conv = F.conv2d(v, dconv.view(heads, 1, taps, 1), padding=(taps // 2, 0), groups=heads)
    y = y + conv
    if aux_tau is not None:  # the auxiliary masked softmax branch of training
        p = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
        y = y + (p * (p > aux_tau)) @ v
    return y


class Block(nn.Module):
    def __init__(self, width, heads, kind):
        super().__init__()
        self.heads, self.kind = heads, kind
        self.norm1, self.norm2 = nn.LayerNorm(width, eps=1e-6), nn.LayerNorm(width, eps=1e-6)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.fc1, self.fc2 = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)
        self.dconv = nn.Parameter(torch.randn(heads, TAPS) * 0.02) if kind != "softmax" else None

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        if self.kind == "softmax":
            a = softmax_attention(q, k, v)
        else:
            a = linear_angular_attention(q, k, v, self.dconv, 0.02 if self.kind == "castling (auxiliary branch on)" else None)
        x = x + self.proj(a.transpose(1, 2).reshape(b, n, c))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class VisionTransformer(nn.Module):
    def __init__(self, width, heads, image, kind, depth=12, patch=16, classes=1000):
        super().__init__()
        self.patch = nn.Conv2d(3, width, patch, patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        self.pos = nn.Parameter(torch.randn(1, (image // patch) ** 2 + 1, width) * 0.02)
        self.blocks = nn.ModuleList(Block(width, heads, kind) for _ in range(depth))
        self.norm, self.head = nn.LayerNorm(width, eps=1e-6), nn.Linear(width, classes)

    def forward(self, images):
        x = self.patch(images).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)[:, 0])


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_in_rounds(cases, repeats, device):
    """cases: list of (record, run); every case once as warm-up, then `repeats` interleaved rounds."""
    times = [[] for _ in cases]
    for _, run in cases:
        run()
    sync(device)
    for _ in range(repeats):
        for i, (_, run) in enumerate(cases):
            start = time.perf_counter()
            run()
            sync(device)
            times[i].append((time.perf_counter() - start) * 1000)
    return [dict(record, medianMs=statistics.median(t), minMs=min(t)) for (record, _), t in zip(cases, times)]


def attention_records(tokens, repeats, device):
    records = []
    for n in tokens:
        q, k, v, dy = (torch.randn(1, HEADS, n, HEAD_DIM, device=device) for _ in range(4))
        dconv = torch.randn(HEADS, TAPS, device=device)
        base = {"section": "attention", "tokens": n, "heads": HEADS, "headDim": HEAD_DIM, "batch": 1}

        def forward(fn):
            def run():
                with torch.no_grad():
                    fn(q, k, v)
            return run

        def forward_backward(fn):
            def run():
                qg, kg, vg = (t.detach().requires_grad_() for t in (q, k, v))
                fn(qg, kg, vg).backward(dy)
            return run

        angular = lambda a, b, c: linear_angular_attention(a, b, c, dconv)
        cases = [
            ({**base, "kind": "softmax", "pass": "forward"}, forward(softmax_attention)),
            ({**base, "kind": "softmax", "pass": "forward+backward"}, forward_backward(softmax_attention)),
            ({**base, "kind": "castling", "pass": "forward"}, forward(angular)),
            ({**base, "kind": "castling", "pass": "forward+backward"}, forward_backward(angular)),
        ]
        records += time_in_rounds(cases, repeats, device)
    return records


def model_records(models, images, batches, train_batch, repeats, device):
    records = []
    for name in models:
        width, heads = MODELS[name]
        for image in images:
            base = {"section": "model", "model": name, "image": image, "tokens": (image // 16) ** 2 + 1}
            cases = []
            for kind in ("softmax", "castling"):
                model = VisionTransformer(width, heads, image, kind).to(device).eval()
                for batch in batches:
                    x = torch.randn(batch, 3, image, image)  # host memory, moved per call as ours are

                    def predict(model=model, x=x):
                        with torch.no_grad():
                            model(x.to(device))
                    cases.append(({**base, "kind": kind, "pass": "predict", "batch": batch}, predict))
            for kind in ("softmax", "castling (auxiliary branch on)"):
                model = VisionTransformer(width, heads, image, kind).to(device).train()
                optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
                x = torch.randn(train_batch, 3, image, image)
                labels = torch.arange(train_batch) % 1000

                def step(model=model, optimizer=optimizer, x=x, labels=labels):
                    optimizer.zero_grad(set_to_none=True)
                    F.cross_entropy(model(x.to(device)), labels.to(device)).backward()
                    optimizer.step()
                cases.append(({**base, "kind": kind, "pass": "trainStep", "batch": train_batch}, step))
            records += time_in_rounds(cases, repeats, device)
    return records


def numbers(text):
    return [int(s) for s in text.split(",") if s]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="cuda-torch.json")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tokens", type=numbers, default=[197, 785, 3137, 12545, 16384])
    parser.add_argument("--models", default="deitSmall,deitBase")
    parser.add_argument("--images", type=numbers, default=[224, 448, 896])
    parser.add_argument("--batches", type=numbers, default=[1, 32])
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="tokens 197,785; deitSmall at 224; batch 1; train batch 2; 2 repeats")
    args = parser.parse_args()
    if args.quick:
        args.tokens, args.models, args.images, args.batches, args.train_batch, args.repeats = [197, 785], "deitSmall", [224], [1], 2, 2
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    records = attention_records(args.tokens, args.repeats, device)
    records += model_records(args.models.split(","), args.images, args.batches, args.train_batch, args.repeats, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    with open(args.out, "w") as f:
        json.dump({"bench": "cuda-torch", "machine": {"device": name, "torch": torch.__version__}, "results": records}, f, indent=1)
    for r in records:
        print(r)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
