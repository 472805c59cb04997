#!/usr/bin/env python3
"""SAM overhead of a SemiSAM run from its log.jsonl: time in the SAM term per iteration against the
rest of the iteration (the plain framework step), over the iterations from --from on (pick a step
after the embedding cache has filled; the table also shows the whole run with the SAM term).

Usage: bench/sam_overhead.py RUN_DIR [--from STEP]
"""
import argparse
import json
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("run", type=Path)
parser.add_argument("--from", dest="start", type=int, default=None)
args = parser.parse_args()
rows = [json.loads(line) for line in (args.run / "log.jsonl").open()]
rows = [r for r in rows if r.get("kind") == "iteration" and r.get("sam/seconds") is not None]
sam_rows = [r for r in rows if r.get("sam/items_with_term", 0) + r.get("sam/items_without", 0) > 0
            and (r.get("sam/seconds") or 0) > 0]
first = min(r["step"] for r in sam_rows if r.get("sam/items_with_term", 0) > 0)
windows = [("whole run with SAM", first)]
if args.start is not None:
    windows.append((f"from step {args.start}", args.start))
print("| window | iterations | iteration (s) | SAM (s) | SAM / rest | refreshes / iteration |")
print("|---|---|---|---|---|---|")
for label, start in windows:
    chosen = [r for r in rows if r["step"] >= start]
    sam = sum(r["sam/seconds"] for r in chosen) / len(chosen)
    total = sum(r["iteration_s"] for r in chosen) / len(chosen)
    refreshes = sum(r.get("sam/refreshed", 0) for r in chosen) / len(chosen)
    print(f"| {label} | {len(chosen)} | {total:.2f} | {sam:.2f} | {100 * sam / (total - sam):.0f} % | {refreshes:.2f} |")
