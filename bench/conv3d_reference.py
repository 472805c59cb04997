"""PyTorch reference of `cargo bench --bench conv3d_ops`: the V-Net's 3D convolutions and batch
norm + ReLU at the LA CPU profile's shapes (batch 4, patch 64 x 64 x 48, width 8), forward and backward (input and
weight gradients) timed separately; one JSON line per layer and pass.

Usage: python bench/conv3d_reference.py [--threads 2] [--iters 5]
"""

import argparse
import json
import statistics
import time

import torch
import torch.nn as nn

LAYERS = [
    ("stage1 3x3x3 1->8", 1, 8, (64, 64, 48), "conv3"),
    ("stage1 3x3x3 8->8", 8, 8, (64, 64, 48), "conv3"),
    ("stage2 3x3x3 16->16", 16, 16, (32, 32, 24), "conv3"),
    ("stage3 3x3x3 32->32", 32, 32, (16, 16, 12), "conv3"),
    ("stage4 3x3x3 64->64", 64, 64, (8, 8, 6), "conv3"),
    ("down 2x2x2/2 8->16", 8, 16, (64, 64, 48), "down"),
    ("up T2x2x2/2 16->8", 16, 8, (32, 32, 24), "up"),
    ("stage1 batchnorm+relu 8", 8, 8, (64, 64, 48), "bnrelu"),
    ("stage2 batchnorm+relu 16", 16, 16, (32, 32, 24), "bnrelu"),
]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name, cin, cout, size, kind in LAYERS:
        if kind == "conv3":
            layer = nn.Conv3d(cin, cout, 3, padding=1)
        elif kind == "bnrelu":
            layer = nn.Sequential(nn.BatchNorm3d(cout), nn.ReLU())
        elif kind == "down":
            layer = nn.Conv3d(cin, cout, 2, stride=2)
        else:
            layer = nn.ConvTranspose3d(cin, cout, 2, stride=2)
        x = torch.randn(4, cin, *size, requires_grad=True)
        forward_times, backward_times = [], []
        for i in range(args.iters + 1):
            started = time.perf_counter()
            out = layer(x)
            forward_s = time.perf_counter() - started
            started = time.perf_counter()
            out.sum().backward()
            backward_s = time.perf_counter() - started
            x.grad = None
            layer.zero_grad()
            if i > 0:
                forward_times.append(forward_s)
                backward_times.append(backward_s)
        for pass_, times in (("forward", forward_times), ("backward", backward_times)):
            print(json.dumps({"impl": "pytorch", "layer": name, "pass": pass_,
                              "median_s": round(statistics.median(times), 5)}))


if __name__ == "__main__":
    main()
