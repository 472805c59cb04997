#!/usr/bin/env python3
"""Collect the runs of bench/la_experiment.sh into one Markdown table (stdout).

Per run: validation Dice / Jaccard / HD95 / ASD (mean ± std over the cases, from the run's
metrics/summary.json), wall time and peak RSS (from /usr/bin/time -v), mean seconds per
iteration and seconds spent in SAM (from log.jsonl).
"""
import json
import re
import sys
from pathlib import Path

out = Path(sys.argv[1])
names = {"sup": "supervised", "mt": "MT", "uamt": "UA-MT",
         "semisam-mt": "SemiSAM-MT", "semisam-uamt": "SemiSAM-UA-MT"}


def time_fields(path):
    text = path.read_text()
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text).group(1)
    seconds = 0.0
    for part in wall.split(":"):
        seconds = seconds * 60 + float(part)
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
    return seconds, rss / 1024 / 1024


def log_fields(path):
    rows = [json.loads(line) for line in path.open()]
    rows = [r for r in rows if r.get("kind") == "iteration"]
    iteration = [r["iteration_s"] for r in rows]
    sam = sum(r.get("sam/seconds") or 0 for r in rows)
    return sum(iteration) / max(len(iteration), 1), sam, len(rows)


print("| method | labeled | Dice | Jaccard | HD95 (mm) | ASD (mm) | iterations | s/iter | SAM s | wall | peak RSS |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for run in sorted((out / "runs").iterdir(), key=lambda p: (p.name[-2:], list(names).index(p.name.rsplit("-", 1)[0]))):
    summary = run / "metrics" / "summary.json"
    if not summary.exists():
        continue
    variant, labeled = run.name.rsplit("-", 1)
    cls = json.loads(summary.read_text())["classes"][0]
    fmt = lambda k, scale=1, d=2: f"{cls[k]['mean'] * scale:.{d}f} ± {cls[k]['std'] * scale:.{d}f}"
    per_iter, sam, steps = log_fields(run / "log.jsonl")
    timing = out / f"{run.name}.time"
    wall, rss = time_fields(timing) if timing.exists() else (float("nan"), float("nan"))
    print(f"| {names[variant]} | {labeled[:-1]} | {fmt('dice', 100, 1)} | {fmt('jaccard', 100, 1)} | "
          f"{fmt('hd95')} | {fmt('asd')} | {steps} | {per_iter:.2f} | {sam:.0f} | {wall / 60:.1f} min | {rss:.2f} GiB |")
