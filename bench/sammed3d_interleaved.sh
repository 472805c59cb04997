#!/usr/bin/env bash
# Interleaved encoder timings, burn (default backend) vs PyTorch, 2 threads each, on one
# 128^3 volume with vit_b_ori-sized random weights. The machine may be shared: the load
# average is printed before every measurement.
# Usage: bench/sammed3d_interleaved.sh PYTHON [PAIRS] [CARGO_PROFILE]
set -euo pipefail
python=${1:?path to a python with torch}
pairs=${2:-3}
profile=${3:-bench}
cd "$(dirname "$0")/.."
export RAYON_NUM_THREADS=2 OMP_NUM_THREADS=2
cargo bench --profile "$profile" --bench sammed3d_encoder --no-run
for pair in $(seq 1 "$pairs"); do
    echo "pair $pair, load: $(cut -d' ' -f1-3 /proc/loadavg)"
    cargo bench --profile "$profile" --bench sammed3d_encoder -- 1 2>/dev/null | grep run
    echo "pair $pair, load: $(cut -d' ' -f1-3 /proc/loadavg)"
    "$python" bench/sammed3d_reference.py --runs 1 --threads 2 | grep run
done
