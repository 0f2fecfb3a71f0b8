#!/usr/bin/env python3
"""PyTorch CPU reference for scripts/bench/train.ts: training throughput of the
same models on the same synthetic Fashion-MNIST-shaped data (28x28x1, 10 classes).

    /usr/bin/python3 scripts/bench/torch_train.py --model mlp|convnet [--width 128]
        [--depth 3] [--batch 128] [--steps 50] [--warmup 5] [--threads N] [--seed 0]

Prints one JSON object on stdout: examples/s (wall clock, and per CPU-second
of the process) over `steps` timed steps after `warmup` untimed ones, plus the
thread count, torch version and BLAS library.

The models mirror ml/models.ts: MLP 784-256-10 (ReLU); the DC-bench ConvNet,
depth x [conv 3x3 'same' (no bias: the norm cancels it) -> instance norm
(GroupNorm with one group per channel, affine, as DC-bench does) -> ReLU ->
avg-pool 2x2], then a linear layer. SGD with momentum 0.9, lr 0.01, mean
cross-entropy. Each step turns a uint8 batch into floats in [0, 1], as the
trainer in ml/train.ts does.

Linear layers go through the system BLAS: with Debian's reference BLAS
(libblas3 alone) the MLP is ~25x slower than with OpenBLAS, so the JSON names
the BLAS library loaded (scripts/install-torch installs libopenblas0-openmp).
"""
import argparse
import json
import sys
import time


def build_model(torch, nn, args):
    if args.model == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    layers = []
    channels, size = 1, 28
    for _ in range(args.depth):
        layers += [
            nn.Conv2d(channels, args.width, 3, padding=1, bias=False),
            nn.GroupNorm(args.width, args.width, affine=True),
            nn.ReLU(),
            nn.AvgPool2d(2, 2),
        ]
        channels, size = args.width, size // 2
    layers += [nn.Flatten(), nn.Linear(channels * size * size, 10)]
    return nn.Sequential(*layers)


def loaded_blas():
    """The BLAS library this process actually loaded (Linux), e.g. OpenBLAS or the slow reference BLAS."""
    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1] for line in f if "blas" in line.rsplit("/", 1)[-1].lower()}
        return sorted(libs)[0] if libs else None
    except OSError:
        return None


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=["mlp", "convnet"], required=True)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.steps < 1 or args.warmup < 0 or args.batch < 1:
        p.error("--steps must be >= 1, --warmup >= 0, --batch >= 1")

    try:
        import torch
        from torch import nn
    except ImportError as e:
        print(f"torch_train.py: cannot import torch ({e}); install it with scripts/install-torch", file=sys.stderr)
        sys.exit(69)

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)

    # Synthetic data: a fixed random template per class plus noise, as uint8.
    total = args.batch * (args.warmup + args.steps)
    labels = torch.randint(0, 10, (total,), generator=g)
    templates = torch.rand(10, 1, 28, 28, generator=g) * 255
    noise = torch.randn(total, 1, 28, 28, generator=g) * 40
    pixels = (templates[labels] + noise).clamp(0, 255).to(torch.uint8)

    model = build_model(torch, nn, args)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    model.train()

    def step(t):
        lo, hi = t * args.batch, (t + 1) * args.batch
        x = pixels[lo:hi].float().div_(255)
        y = labels[lo:hi]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    for t in range(args.warmup):
        step(t)
    t0, c0 = time.perf_counter(), time.process_time()
    last = float("nan")
    for t in range(args.warmup, args.warmup + args.steps):
        last = step(t)
    seconds = time.perf_counter() - t0
    cpu_seconds = time.process_time() - c0

    json.dump({
        "model": args.model,
        "width": args.width if args.model == "convnet" else None,
        "depth": args.depth if args.model == "convnet" else None,
        "batch": args.batch,
        "steps": args.steps,
        "warmup": args.warmup,
        "threads": torch.get_num_threads(),
        "seconds": seconds,
        "msPerStep": 1000 * seconds / args.steps,
        "examplesPerSec": args.batch * args.steps / seconds,
        # CPU time of all threads: less sensitive to other load than wall time.
        "cpuSeconds": cpu_seconds,
        "examplesPerCpuSec": args.batch * args.steps / cpu_seconds,
        "lastLoss": last,
        "torch": torch.__version__,
        "blas": loaded_blas(),
    }, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
