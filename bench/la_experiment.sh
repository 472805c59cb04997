#!/usr/bin/env bash
# The LA-dev experiment of docs/results.md: supervised-only, Mean Teacher, UA-MT, SemiSAM-MT and
# SemiSAM-UA-MT at 1 and 2 labeled cases, same seed, same iterations, scored on the 4 validation
# cases at full resolution. Two runs at a time (one per core pair-share); peak RSS from
# /usr/bin/time. A table is collected into OUT/table.md by bench/la_table.py.
#
#   bench/la_experiment.sh OUT_DIR [ITERATIONS] [RUN ...]
#
# RUN names are <variant>-<labeled>L with variant in sup, mt, uamt, semisam-mt, semisam-uamt
# (default: all ten). ITERATIONS defaults to the profile's 600; the schedules (LR step, ramps, SAM
# start) are scaled with it so that a shorter run keeps the shape of the full one.
# EXTRA_SETS (optional): more `section.key=value` overrides, space-separated, for every run
# (ablations, e.g. EXTRA_SETS="framework.supervised_weight=1.0").
set -euo pipefail

out=${1:?usage: bench/la_experiment.sh OUT_DIR [ITERATIONS] [RUN ...]}
iterations=${2:-600}
shift $(( $# >= 2 ? 2 : $# ))
runs=("$@")
if [ ${#runs[@]} -eq 0 ]; then
    runs=(sup-2L mt-2L uamt-2L semisam-mt-2L semisam-uamt-2L sup-1L mt-1L uamt-1L semisam-mt-1L semisam-uamt-1L)
fi
root=$(realpath "${LA_ROOT:-../shared/data/LA-dev}")
bin=$(realpath "${SEMISAM_BIN:-target/release/semisam}")
parallel=${PARALLEL:-2}

here=$(cd "$(dirname "$0")/.." && pwd)
source "$here/bench/train_queue.sh"
mkdir -p "$out/configs"

# The profile without its [framework] tables, and the SAM tables of the SemiSAM profile.
awk '/^\[framework/ {skip=1; next} /^\[/ {skip=0} !skip' "$here/configs/la_cpu.toml" > "$out/configs/base.toml"
awk '/^\[sam/ {keep=1} keep' "$here/configs/la_cpu_semisam.toml" > "$out/configs/sam.toml"

# 600 iterations: LR x0.1 every 250, ramps over 40 "epochs" of 15 iterations; SAM from 100, with
# the SemiSAM profile's own ramp-down epochs and refresh interval.
scale() { python3 -c "import sys; print(max(1, round($1 * $iterations / 600)))"; }
every=$(scale 250)
per_epoch=$(scale 15)
sam_value() { awk -F= -v key="$1" '$1 ~ "^"key" *$" {gsub(/ /, "", $2); print $2}' "$out/configs/sam.toml"; }
sam_per_epoch=$(scale "$(sam_value iterations_per_epoch)")
sam_start=$(scale 100)
sam_refresh=$(scale "$(sam_value refresh_interval)")
# SemiSAM runs share their slice embeddings (the unlabeled cases overlap across runs).
embeddings=$(realpath -m "${EMBEDDINGS:-$out/embeddings}")
checkpoint=$(scale 100)
validation=$(scale 150)

framework_section() {
    case $1 in
        sup) printf '[framework]\nkind = "supervised"\n' ;;
        mt | semisam-mt)
            printf '[framework]\nkind = "mean_teacher"\n\n[framework.teacher.consistency]\nweight = 0.1\nrampup_epochs = 40.0\niterations_per_epoch = %s\n' "$per_epoch" ;;
        uamt | semisam-uamt)
            printf '[framework]\nkind = "ua_mt"\n\n[framework.teacher.consistency]\nweight = 0.1\nrampup_epochs = 40.0\niterations_per_epoch = %s\n' "$per_epoch" ;;
        *) echo "unknown variant $1" >&2; exit 2 ;;
    esac
}

run_one() {
    local name=$1 variant=${1%-*} labeled=${1##*-}
    labeled=${labeled%L}
    local config="$out/configs/$name.toml"
    { cat "$out/configs/base.toml"; echo; framework_section "$variant"
      case $variant in semisam-*) echo; cat "$out/configs/sam.toml" ;; esac; } > "$config"
    local sets=(--set "data.root=\"$root\"" --set "data.labeled=$labeled"
        --set "training.iterations=$iterations" --set "training.lr_schedule.every=$every"
        --set "training.checkpoint_every=$checkpoint" --set "validation.every=$validation")
    case $variant in semisam-*)
        sets+=(--set "sam.iterations_per_epoch=$sam_per_epoch" --set "sam.start_iteration=$sam_start"
            --set "sam.refresh_interval=$sam_refresh"
            --set "sam.embedding_dir=\"$embeddings\"") ;;
    esac
    # Last, so that an ablation can override the scaled schedules too.
    local extra
    for extra in ${EXTRA_SETS:-}; do sets+=(--set "$extra"); done
    train_once "$name" --config "$config" "${sets[@]}"
}

# A queue with `parallel` runs in flight: the next starts as soon as one ends.
for name in "${runs[@]}"; do
    wait_for_slot "$parallel"
    run_one "$name" &
done
wait
python3 "$here/bench/la_table.py" "$out" > "$out/table.md"
cat "$out/table.md"
