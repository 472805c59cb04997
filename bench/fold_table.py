#!/usr/bin/env python3
"""Collect the fold runs of bench/folds.sh into one Markdown table (stdout).

    bench/fold_table.py OUT_DIR --folds K METHOD [METHOD ...] [--metric dice] [--bootstrap 10000]
    bench/fold_table.py --self-test

Reads OUT_DIR/runs/<METHOD>-fold<k>/metrics/per_case.csv (the final model's scores of the run's
held-out cases) and splits.json (its fold). Checks that each run scored exactly its validation
fold, that the folds of a method are disjoint and that every method saw the same folds, so that
per-case differences are paired. Reports, per method and class: the mean ± sample standard
deviation over all scored cases and over the folds' means, and each fold's mean; and for every
method after the first, its paired per-case difference to the first: mean and standard deviation,
how many cases it is better / worse / tied on, an exact two-sided sign test (ties dropped) and a
95 % paired bootstrap interval of the mean difference (resampling cases, fixed seed).
Python 3 standard library only.
"""
import argparse
import csv
import json
import math
import random
import sys
import tempfile
from pathlib import Path

# Distances are in the run's unit; overlaps are shown in %.
METRICS = {"dice": 100.0, "jaccard": 100.0, "hd95": 1.0, "asd": 1.0, "assd": 1.0}


def fail(message):
    raise SystemExit(f"fold_table: {message}")


def read_run(run, fold, folds, metric):
    """{(case, class): value} of one finished fold run, and its fold seed; None if unfinished."""
    per_case = run / "metrics" / "per_case.csv"
    if not per_case.is_file():
        return None
    splits = json.loads((run / "splits.json").read_text())
    cv = splits.get("cross_validation")
    if cv is None or (cv["fold"], cv["folds"]) != (fold, folds):
        fail(f"{run}: splits.json is not fold {fold} of {folds} ({cv})")
    with per_case.open() as f:
        rows = list(csv.DictReader(f))
    scored = {row["case_id"] for row in rows}
    if scored != set(splits["validation"]):
        fail(f"{run}: metrics/per_case.csv scores {sorted(scored)}, not the validation fold "
             f"{sorted(splits['validation'])} (a dataset with labeled test cases is scored on them)")
    values = {(row["case_id"], row["class"]): float(row[metric]) * METRICS[metric] for row in rows}
    return values, cv["seed"], splits["validation"]


def collect(out, methods, folds, metric):
    """{method: {fold: {(case, class): value}}} of the finished runs, checked for pairing."""
    results, seeds, fold_cases = {}, set(), {}
    for method in methods:
        results[method] = {}
        seen = set()
        for fold in range(folds):
            got = read_run(out / "runs" / f"{method}-fold{fold}", fold, folds, metric)
            if got is None:
                continue
            values, seed, validation = got
            seeds.add(seed)
            if seen & set(validation):
                fail(f"{method}: fold {fold} validates on cases of another fold")
            seen |= set(validation)
            if fold_cases.setdefault(fold, sorted(validation)) != sorted(validation):
                fail(f"{method}: fold {fold} validates on other cases than the first method's "
                     f"fold {fold}: different data or data.fold_seed")
            results[method][fold] = values
    if len(seeds) > 1:
        fail(f"the runs used different fold seeds {sorted(seeds)}")
    return results, (seeds.pop() if seeds else None)


def mean(xs):
    return sum(xs) / len(xs) if xs else math.nan


def sd(xs):
    """Sample standard deviation (n - 1); nan under two values."""
    if len(xs) < 2:
        return math.nan
    m = mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def sign_test(better, worse):
    """Exact two-sided binomial p of `better` against `worse` at 1/2 (ties left out)."""
    n = better + worse
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(better, worse) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def bootstrap_ci(diffs, resamples, seed=12345):
    """95 % percentile interval of the mean of `diffs` resampled with replacement."""
    if len(diffs) < 2 or resamples == 0:
        return math.nan, math.nan
    rng = random.Random(seed)
    n = len(diffs)
    means = sorted(sum(rng.choices(diffs, k=n)) / n for _ in range(resamples))
    return means[int(0.025 * (resamples - 1))], means[int(math.ceil(0.975 * (resamples - 1)))]


def paired(base, other, resamples):
    """Statistics of other − base over the (case, class) keys both have, for one class."""
    keys = sorted(set(base) & set(other))
    diffs = [other[k] - base[k] for k in keys]
    better = sum(d > 0 for d in diffs)
    worse = sum(d < 0 for d in diffs)
    low, high = bootstrap_ci(diffs, resamples)
    return {"cases": len(diffs), "mean": mean(diffs), "sd": sd(diffs), "better": better,
            "worse": worse, "tied": len(diffs) - better - worse,
            "p": sign_test(better, worse), "ci": (low, high)}


def fmt(x, digits=2):
    return "–" if math.isnan(x) else f"{x:.{digits}f}"


def table(results, methods, folds, metric, seed, resamples):
    classes = sorted({cls for runs in results.values() for values in runs.values()
                      for _, cls in values}, key=int)
    unit = " (%)" if METRICS[metric] == 100.0 else ""
    lines = [f"Cross-validation, {folds} folds (data.fold_seed {seed}); {metric}{unit} of each "
             "fold's final model on its validation fold.", ""]
    head = "| method | class | folds | cases | mean ± sd over cases | mean ± sd over folds | "
    head += " | ".join(f"fold {k}" for k in range(folds)) + " |"
    lines += [head, "|" + "---|" * (6 + folds)]
    by_class = {}
    for method in methods:
        for cls in classes:
            values = {k: v for fold in results[method].values()
                      for k, v in fold.items() if k[1] == cls}
            by_class[method, cls] = values
            fold_means = {f: mean([v for (c, k), v in vals.items() if k == cls])
                          for f, vals in results[method].items()}
            cases = list(values.values())
            per_fold = " | ".join(fmt(fold_means[k]) if k in fold_means else "–"
                                  for k in range(folds))
            lines.append(f"| {method} | {cls} | {len(fold_means)}/{folds} | {len(cases)} | "
                         f"{fmt(mean(cases))} ± {fmt(sd(cases))} | "
                         f"{fmt(mean(list(fold_means.values())))} ± "
                         f"{fmt(sd(list(fold_means.values())))} | {per_fold} |")
    if len(methods) > 1:
        base = methods[0]
        lines += ["", f"Paired per-case differences against {base} (method − {base}; the cases "
                  "both scored): sign test exact and two-sided, ties left out; 95 % CI by a "
                  f"paired bootstrap over cases ({resamples} resamples).", "",
                  "| method | class | cases | mean diff | sd diff | better / worse / tied | "
                  "sign test p | 95 % CI of mean diff |", "|---|---|---|---|---|---|---|---|"]
        for method in methods[1:]:
            for cls in classes:
                s = paired(by_class[base, cls], by_class[method, cls], resamples)
                lines.append(f"| {method} | {cls} | {s['cases']} | {fmt(s['mean'])} | "
                             f"{fmt(s['sd'])} | {s['better']} / {s['worse']} / {s['tied']} | "
                             f"{fmt(s['p'], 3)} | [{fmt(s['ci'][0])}, {fmt(s['ci'][1])}] |")
    return "\n".join(lines) + "\n"


def write_fixture(out, method, fold, folds, cases):
    """A finished fold run with `cases` = {case: dice}, as semisam writes it."""
    run = out / "runs" / f"{method}-fold{fold}"
    (run / "metrics").mkdir(parents=True)
    (run / "splits.json").write_text(json.dumps({
        "labeled": [], "unlabeled": [], "validation": list(cases), "test": [], "seed": 1,
        "cross_validation": {"fold": fold, "folds": folds, "seed": 12345}}))
    rows = ["case_id,class,dice,jaccard,hd95,asd,assd,unit,prediction_empty,reference_empty,"
            "prediction,reference"]
    rows += [f"{case},1,{dice},0,0,0,0,mm,false,false,p,r" for case, dice in cases.items()]
    (run / "metrics" / "per_case.csv").write_text("\n".join(rows) + "\n")


def expect_failure(call, message):
    try:
        call()
    except SystemExit as error:
        assert message in str(error), error
    else:
        raise AssertionError(f"no failure; expected {message!r}")


def self_test():
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        base = {0: {"a": 0.50, "b": 0.70}, 1: {"c": 0.60, "d": 0.80}, 2: {"e": 0.90}}
        gain = {"a": 0.10, "b": 0.05, "c": -0.02, "d": 0.0, "e": 0.07}
        for fold, cases in base.items():
            write_fixture(out, "mt", fold, 3, cases)
            write_fixture(out, "sam", fold, 3, {c: v + gain[c] for c, v in cases.items()})
        results, seed = collect(out, ["mt", "sam"], 3, "dice")
        assert seed == 12345
        text = table(results, ["mt", "sam"], 3, "dice", seed, 2000)
        # mt: cases 50, 70, 60, 80, 90 → 70 ± 15.81; folds 60, 70, 90 → 73.33 ± 15.28.
        assert "| mt | 1 | 3/3 | 5 | 70.00 ± 15.81 | 73.33 ± 15.28 | 60.00 | 70.00 | 90.00 |" in text, text
        # sam − mt: 10, 5, −2, 0, 7 → mean 4, sd 4.95; 3 better, 1 worse, 1 tied; p = 0.625.
        row = next(line for line in text.splitlines() if line.startswith("| sam | 1 | 5 |"))
        assert "| 4.00 | 4.95 | 3 / 1 / 1 | 0.625 |" in row, row
        low, high = (float(x) for x in row.rsplit("[", 1)[1].rstrip("] |").split(", "))
        assert -2.0 <= low < 4.0 < high <= 10.0, row
        assert sign_test(10, 0) == 2 / 1024 and sign_test(0, 0) == 1.0

        # An unfinished fold is left out and counted; pairing uses the cases both scored.
        write_fixture(out, "late", 0, 3, {"a": 0.4, "b": 0.6})
        results, _ = collect(out, ["mt", "late"], 3, "dice")
        text = table(results, ["mt", "late"], 3, "dice", 12345, 100)
        assert "| late | 1 | 1/3 | 2 | 50.00 ± 14.14 | 50.00 ± – | 50.00 | – | – |" in text, text
        assert "| late | 1 | 2 | -10.00 | 0.00 | 0 / 2 / 0 | 0.500 |" in text, text

        # Methods on different folds, and a run that scored other cases than its fold, are errors.
        write_fixture(out, "moved", 0, 3, {"a": 0.5, "c": 0.5})
        expect_failure(lambda: collect(out, ["mt", "moved"], 3, "dice"),
                       "validates on other cases than the first method's fold 0")
        (out / "runs" / "moved-fold0" / "metrics" / "per_case.csv").write_text(
            "case_id,class,dice\nz,1,0.5\n")
        expect_failure(lambda: collect(out, ["moved"], 3, "dice"), "not the validation fold")
    print("fold_table self-test passed")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path)
    parser.add_argument("methods", nargs="*", help="run-name prefixes; the first is the baseline")
    parser.add_argument("--folds", type=int)
    parser.add_argument("--metric", default="dice", choices=sorted(METRICS))
    parser.add_argument("--bootstrap", type=int, default=10000, help="resamples (0: no interval)")
    parser.add_argument("--self-test", action="store_true")
    args = parser.parse_intermixed_args()
    if args.self_test:
        return self_test()
    if args.out is None or not args.methods or not args.folds:
        parser.error("give OUT_DIR, --folds K and at least one METHOD")
    results, seed = collect(args.out, args.methods, args.folds, args.metric)
    if not any(results.values()):
        fail(f"no finished fold run under {args.out / 'runs'}")
    sys.stdout.write(table(results, args.methods, args.folds, args.metric, seed, args.bootstrap))


if __name__ == "__main__":
    main()
