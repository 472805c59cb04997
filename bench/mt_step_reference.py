"""PyTorch reference for one Mean Teacher training step (V-Net), the baseline of
`semisam bench train-step` / `cargo bench --bench mt_step`.

One step = student forward on the whole batch (dropout on), teacher forward on the unlabeled
items with clamped Gaussian input noise (no grad), CE + Dice on the labeled items, softmax MSE
consistency on the unlabeled items, backward, SGD (lr 0.01, momentum 0.9, wd 1e-4), EMA update
of the teacher, and reading the loss back. Prints one JSON line with the per-step times.

Usage: python bench/mt_step_reference.py --patch 64 64 48 --batch 4 --labeled 2 --width 16 \
           --threads 2 --warmup 2 --iters 10

To time PyTorch as on a CPU without AVX-512 (the counterpart of SEMISAM_KERNELS=avx2), set
ONEDNN_MAX_CPU_ISA=AVX2 and ATEN_CPU_CAPABILITY=avx2; the printed line names the capability used.
"""

import argparse
import json
import os
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv_stage(n, cin, cout):
    layers = []
    for i in range(n):
        layers += [nn.Conv3d(cin if i == 0 else cout, cout, 3, padding=1), nn.BatchNorm3d(cout),
                   nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def down(cin, cout):
    return nn.Sequential(nn.Conv3d(cin, cout, 2, stride=2), nn.BatchNorm3d(cout), nn.ReLU(inplace=True))


def up(cin, cout):
    return nn.Sequential(nn.ConvTranspose3d(cin, cout, 2, stride=2), nn.BatchNorm3d(cout),
                         nn.ReLU(inplace=True))


class VNet(nn.Module):
    """The UA-MT V-Net layout (docs/method.md §3), written from the description; modules are registered
    in the same order as the Rust port's fields, so the state dicts line up."""

    def __init__(self, width=16, classes=2, in_channels=1):
        super().__init__()
        f = width
        self.block_one = conv_stage(1, in_channels, f)
        self.block_one_dw = down(f, 2 * f)
        self.block_two = conv_stage(2, 2 * f, 2 * f)
        self.block_two_dw = down(2 * f, 4 * f)
        self.block_three = conv_stage(3, 4 * f, 4 * f)
        self.block_three_dw = down(4 * f, 8 * f)
        self.block_four = conv_stage(3, 8 * f, 8 * f)
        self.block_four_dw = down(8 * f, 16 * f)
        self.block_five = conv_stage(3, 16 * f, 16 * f)
        self.block_five_up = up(16 * f, 8 * f)
        self.block_six = conv_stage(3, 8 * f, 8 * f)
        self.block_six_up = up(8 * f, 4 * f)
        self.block_seven = conv_stage(3, 4 * f, 4 * f)
        self.block_seven_up = up(4 * f, 2 * f)
        self.block_eight = conv_stage(2, 2 * f, 2 * f)
        self.block_eight_up = up(2 * f, f)
        self.block_nine = conv_stage(1, f, f)
        self.out_conv = nn.Conv3d(f, classes, 1)
        self.dropout = nn.Dropout3d(0.5)

    def forward(self, x):
        x1 = self.block_one(x)
        x2 = self.block_two(self.block_one_dw(x1))
        x3 = self.block_three(self.block_two_dw(x2))
        x4 = self.block_four(self.block_three_dw(x3))
        x5 = self.dropout(self.block_five(self.block_four_dw(x4)))
        x6 = self.block_six(self.block_five_up(x5) + x4)
        x7 = self.block_seven(self.block_six_up(x6) + x3)
        x8 = self.block_eight(self.block_seven_up(x7) + x2)
        x9 = self.dropout(self.block_nine(self.block_eight_up(x8) + x1))
        return self.out_conv(x9)


def dice_loss(p, g):
    return 1 - (2 * (p * g).sum() + 1e-5) / ((p * p).sum() + (g * g).sum() + 1e-5)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--patch", type=int, nargs=3, default=[64, 64, 48])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--labeled", type=int, default=2)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1337)

    student, teacher = VNet(args.width), VNet(args.width)
    teacher.load_state_dict(student.state_dict())
    for p in teacher.parameters():
        p.detach_()
    student.train()
    teacher.train()
    opt = torch.optim.SGD(student.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(args.batch, 1, *args.patch)
    y = (torch.rand(args.labeled, *args.patch) > 0.7).long()
    lb = args.labeled

    times = []
    for it in range(args.warmup + args.iters):
        t0 = time.perf_counter()
        out = student(x)
        prob = F.softmax(out, dim=1)
        with torch.no_grad():
            noise = torch.clamp(torch.randn_like(x[lb:]) * 0.1, -0.2, 0.2)
            t_prob = F.softmax(teacher(x[lb:] + noise), dim=1)
        sup = F.cross_entropy(out[:lb], y) + dice_loss(prob[:lb, 1], (y == 1).float())
        cons = ((prob[lb:] - t_prob) ** 2).mean()
        loss = sup + 0.1 * cons
        opt.zero_grad()
        loss.backward()
        opt.step()
        alpha = min(1 - 1 / (it + 1), 0.99)
        with torch.no_grad():
            for tp, sp in zip(teacher.parameters(), student.parameters()):
                tp.mul_(alpha).add_(sp, alpha=1 - alpha)
        loss_value = loss.item()
        elapsed = time.perf_counter() - t0
        if it >= args.warmup:
            times.append(elapsed)
    print(json.dumps({"impl": "pytorch", "torch": torch.__version__,
                      "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                      "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "default"),
                      "threads": args.threads,
                      "patch": args.patch, "batch": args.batch, "labeled": lb, "width": args.width,
                      "median_s": statistics.median(times), "min_s": min(times),
                      "times_s": [round(t, 4) for t in times], "last_loss": loss_value}))


if __name__ == "__main__":
    main()
