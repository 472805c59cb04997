#!/usr/bin/env python3
"""Validation Dice per seed and method, one panel per labeled count, from finished run folders.

Each run folder gives its seed and labeled count (`config.toml`) and its mean Dice over the
validation cases (`metrics/per_case.csv`). The runs of one seed are joined by a thin line so
that paired differences stand out from the spread between seeds; a black bar marks each
method's mean. The numbers are also written as a TSV next to the picture.

    bench/seed_plot.py OUT.png --method NAME RUN... [--method NAME RUN...] [--target NAME POINTS]

`--target MT 10` draws a dashed line at MT's mean plus 10 points in each panel (a goal to read
the methods against).

Needs matplotlib (analysis only; the product writes its own pictures).
"""
import argparse
import csv
import os
import tomllib
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def run_result(folder):
    """(labeled, seed, mean Dice in %) of a finished run folder."""
    with open(os.path.join(folder, "config.toml"), "rb") as f:
        config = tomllib.load(f)
    with open(os.path.join(folder, "metrics", "per_case.csv")) as f:
        dice = [float(row["dice"]) for row in csv.DictReader(f)]
    if not dice:
        raise SystemExit(f"{folder}: metrics/per_case.csv has no case")
    return config["data"]["labeled"], config["training"]["seed"], 100 * sum(dice) / len(dice)


def write_atomic(path, write):
    temporary = path + ".tmp"
    write(temporary)
    os.replace(temporary, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--method", nargs="+", action="append", required=True,
                        metavar=("NAME", "RUN"), help="a method's name, then its run folders")
    parser.add_argument("--target", nargs=2, metavar=("NAME", "POINTS"),
                        help="dashed line at this method's mean plus POINTS")
    args = parser.parse_args()
    methods = [group[0] for group in args.method]
    rows = []
    for name, *folders in args.method:
        if not folders:
            raise SystemExit(f"--method {name}: no run folder")
        rows += [(name, *run_result(folder), folder) for folder in folders]

    panels = sorted({labeled for _, labeled, _, _, _ in rows})
    figure, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4.2), sharey=True,
                                squeeze=False)
    seeds = sorted({seed for _, _, seed, _, _ in rows})
    colours = {seed: plt.cm.tab10(i % 10) for i, seed in enumerate(seeds)}
    for axis, labeled in zip(axes[0], panels):
        shown = [m for m in methods if any(r[0] == m and r[1] == labeled for r in rows)]
        by_seed = defaultdict(dict)
        for name, lab, seed, dice, _ in rows:
            if lab == labeled:
                by_seed[seed][name] = dice
        for seed, values in sorted(by_seed.items()):
            points = [(shown.index(m), values[m]) for m in shown if m in values]
            axis.plot(*zip(*points), "-o", color=colours[seed], alpha=0.75, lw=0.8, ms=5,
                      label=str(seed))
        for x, name in enumerate(shown):
            values = [r[3] for r in rows if r[0] == name and r[1] == labeled]
            mean = sum(values) / len(values)
            axis.hlines(mean, x - 0.25, x + 0.25, colors="black", lw=2.5)
            axis.annotate(f"{mean:.1f} (n={len(values)})", (x, mean), xytext=(0, 6),
                          textcoords="offset points", ha="center", fontsize=8)
        if args.target:
            name, points = args.target[0], float(args.target[1])
            values = [r[3] for r in rows if r[0] == name and r[1] == labeled]
            if not values:
                raise SystemExit(f"--target {name}: no run of it at {labeled} labeled")
            level = sum(values) / len(values) + points
            axis.axhline(level, color="grey", ls="--", lw=1)
            axis.annotate(f"{name} + {points:g}", (0, level), xycoords=("axes fraction", "data"),
                          xytext=(4, -3), textcoords="offset points", ha="left", va="top",
                          fontsize=8, color="grey")
        axis.set_xticks(range(len(shown)), shown, rotation=20, ha="right", fontsize=8)
        axis.set_title(f"{labeled} labeled case{'s' if labeled > 1 else ''}")
        axis.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("validation Dice (%), mean of the cases")
    axes[0][-1].legend(title="seed", fontsize=7, title_fontsize=8, loc="lower right")
    figure.tight_layout()
    write_atomic(args.out, lambda path: figure.savefig(path, dpi=130, format="png"))

    def write_table(path):
        with open(path, "w") as f:
            f.write("method\tlabeled\tseed\tdice\trun\n")
            for name, labeled, seed, dice, folder in rows:
                f.write(f"{name}\t{labeled}\t{seed}\t{dice:.1f}\t{os.sep.join(folder.rstrip(os.sep).split(os.sep)[-3:])}\n")

    write_atomic(os.path.splitext(args.out)[0] + ".tsv", write_table)


if __name__ == "__main__":
    main()
