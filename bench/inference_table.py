"""Table of bench/inference_options.sh: mean Dice per class of each variant, the paired
difference per case against the first variant (uniform weighting, no TTA) and seconds per case.

Usage: python3 bench/inference_table.py OUT
"""

import csv
import statistics
import sys
from pathlib import Path

from fold_table import paired


def per_case(metrics_dir):
    dice = {}
    with open(metrics_dir / "per_case.csv", newline="") as f:
        for row in csv.DictReader(f):
            dice[(row["case_id"], row["class"])] = float(row["dice"])
    return dice


def main(out):
    out = Path(out)
    times = [line.split("\t") for line in (out / "times.tsv").read_text().splitlines() if line]
    variants = [name for name, _ in times]
    seconds = {name: float(value) for name, value in times}
    dice = {name: per_case(out / name / "metrics") for name in variants}
    base = variants[0]
    classes = sorted({cls for _, cls in dice[base]}, key=int)
    cases = sorted({case for case, _ in dice[base]})
    print(f"{len(cases)} cases; Dice (%) mean over cases; difference paired by case against {base}\n")
    header = ["variant"] + [f"class {c}" for c in classes]
    header += [f"Δ class {c} (better/worse cases)" for c in classes] + ["s / case"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name in variants:
        row = [name]
        for c in classes:
            row.append(f"{100 * statistics.mean(dice[name][(k, c)] for k in cases):.2f}")
        for c in classes:
            percent = {v: {k: 100 * d for (k, cls), d in dice[v].items() if cls == c}
                       for v in (base, name)}
            diff = paired(percent[base], percent[name], resamples=0)
            row.append(f"{diff['mean']:+.2f} ± {diff['sd']:.2f} ({diff['better']}/{diff['worse']})")
        row.append(f"{seconds[name] / len(cases):.2f}")
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
