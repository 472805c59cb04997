#!/usr/bin/env python3
"""Scatter of pseudo-label Dice against the prompting model's own Dice, per (run, case).

Input: files of `semisam sam-oracle --checkpoint` tables, each table preceded by a line
`== <run folder>`; the run folder's name (`mt-2L`, `semisam-mt-1L`, ...) gives the method and
the label count. `--ceiling FILE` adds the ground-truth-prompted Dice of each case (a plain
`sam-oracle` table) as a horizontal tick at each of that case's points. Tables with a `view`
column (one row per slicing axis and fusion) contribute the rows of `--view` only.

    bench/oracle_scatter.py OUT.png TABLE... [--ceiling GT_TABLE] [--view "axis 2"]

Needs matplotlib (analysis only; the product writes its own pictures).
"""
import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def tables(path, view):
    """Yields (run folder, case id, pseudo-label Dice, model Dice or None) of `view`."""
    run = None
    with open(path) as lines:
        for line in lines:
            if line.startswith("=="):
                run = line[2:].strip()
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) not in (9, 10) or fields[0] == "case":
                continue
            if len(fields) == 10 and fields[9] != view:
                continue
            model = None if fields[5] == "-" else float(fields[5])
            yield run, fields[0], float(fields[2]), model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("tables", nargs="+")
    parser.add_argument("--ceiling")
    parser.add_argument("--view", default="axis 2")
    args = parser.parse_args()

    ceiling = {}
    if args.ceiling:
        ceiling = {case: dice for _, case, dice, _ in tables(args.ceiling, args.view)}

    styles = {
        ("mt", "1L"): dict(marker="o", color="tab:blue", label="MT, 1 labeled"),
        ("semisam-mt", "1L"): dict(marker="o", color="tab:red", label="SemiSAM-MT, 1 labeled"),
        ("mt", "2L"): dict(marker="s", color="tab:cyan", label="MT, 2 labeled"),
        ("semisam-mt", "2L"): dict(marker="s", color="tab:orange", label="SemiSAM-MT, 2 labeled"),
    }
    points = {key: ([], []) for key in styles}
    ticks = []
    for path in args.tables:
        for run, case, pseudo, model in tables(path, args.view):
            name = os.path.basename(run.rstrip("/"))
            method, labeled = name.rsplit("-", 1)
            if model is None or (method, labeled) not in styles:
                continue
            xs, ys = points[(method, labeled)]
            xs.append(model)
            ys.append(pseudo)
            if case in ceiling:
                ticks.append((model, ceiling[case]))

    fig, ax = plt.subplots(figsize=(6, 6))
    ax.plot([0, 1], [0, 1], color="grey", linewidth=1, linestyle="--", label="pseudo-label = model")
    if ticks:
        ax.scatter(*zip(*ticks), marker="_", color="green", s=60, linewidths=1,
                   label="same case, ground-truth boxes")
    for key, style in styles.items():
        xs, ys = points[key]
        if xs:
            ax.scatter(xs, ys, s=28, alpha=0.8, edgecolors="none", **style)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("Dice of the model that prompts (unlabeled training case)")
    ax.set_ylabel("Dice of its LiteMedSAM pseudo-label")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    tmp = args.out + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
