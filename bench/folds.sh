#!/usr/bin/env bash
# K-fold cross-validation of one or more methods, each a run profile from configs/ with its own
# overrides: every method trains fold 0 .. K-1 (`semisam train --fold k --folds K`) into
# OUT_DIR/runs/<method>-fold<k>, two runs at a time; the final models' per-case validation
# scores are collected into OUT_DIR/folds.md by bench/fold_table.py (mean ± sd over cases and
# over folds, and each method's paired per-case difference to the first).
#
#   bench/folds.sh OUT_DIR K METHOD=PROFILE [--set KEY=VALUE]... [METHOD=PROFILE [--set ...]...]
#
# e.g. on LA-dev (20 labeled cases, 4 per fold):
#   DATA_ROOT=../shared/data/LA-dev bench/folds.sh out/la-folds 5 \
#       mt=configs/la_cpu.toml semisam-mt=configs/la_cpu_semisam.toml
#
# A `--set` after METHOD=PROFILE applies to that method only; EXTRA_SETS="key=value ..." to every
# run, after them. DATA_ROOT (optional) replaces the profiles' data.root. Every run gets
# data.validation = 0 (the fold validates). Finished runs are skipped and interrupted ones
# resumed, so the command can be run again until the table is complete. FOLD_LIST (optional,
# e.g. "2 3 4") trains only those folds; PARALLEL (default 2) sets how many runs share the machine.
set -euo pipefail

usage="usage: bench/folds.sh OUT_DIR K METHOD=PROFILE [--set KEY=VALUE]... [METHOD=PROFILE ...]"
out=${1:?$usage}
folds=${2:?$usage}
shift 2
[ $# -gt 0 ] || { echo "$usage" >&2; exit 2; }
bin=$(realpath "${SEMISAM_BIN:-target/release/semisam}")
parallel=${PARALLEL:-2}
here=$(cd "$(dirname "$0")/.." && pwd)
source "$here/bench/train_queue.sh"

# The methods in order, their profiles, and each method's --set values one per line.
methods=()
profiles=()
declare -A sets
while [ $# -gt 0 ]; do
    case $1 in
        --set)
            [ ${#methods[@]} -gt 0 ] && [ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }
            sets[${methods[-1]}]+="$2"$'\n'
            shift 2 ;;
        *=*)
            name=${1%%=*} profile=${1#*=}
            [[ $name =~ ^[A-Za-z0-9_.-]+$ ]] || { echo "bad method name '$name'" >&2; exit 2; }
            [ -f "$profile" ] || { echo "$name: no profile $profile" >&2; exit 2; }
            methods+=("$name")
            profiles+=("$(realpath "$profile")")
            sets[$name]=""
            shift ;;
        *) echo "$usage" >&2; exit 2 ;;
    esac
done

# FOLD_LIST="2 3" trains only those folds (the table still reads every finished one).
fold_list=${FOLD_LIST:-$(seq 0 $((folds - 1)))}
for fold in $fold_list; do
    [[ $fold =~ ^[0-9]+$ ]] && [ "$fold" -lt "$folds" ] || { echo "FOLD_LIST: no fold '$fold' of $folds" >&2; exit 2; }
done

mkdir -p "$out/runs"
out=$(realpath "$out")

run_fold() {
    local index=$1 fold=$2
    local name=${methods[$index]}
    local args=(--config "${profiles[$index]}" --set data.validation=0)
    [ -n "${DATA_ROOT:-}" ] && args+=(--set "data.root=\"$(realpath "$DATA_ROOT")\"")
    local extra
    while IFS= read -r extra; do
        [ -n "$extra" ] && args+=(--set "$extra")
    done <<< "${sets[$name]}"
    for extra in ${EXTRA_SETS:-}; do args+=(--set "$extra"); done
    train_once "$name-fold$fold" "${args[@]}" --fold "$fold" --folds "$folds"
}

# Fold-major order: the first folds of every method finish first, so a partial table pairs.
for fold in $fold_list; do
    for index in "${!methods[@]}"; do
        wait_for_slot "$parallel"
        run_fold "$index" "$fold" &
    done
done
wait
python3 "$here/bench/fold_table.py" "$out" --folds "$folds" "${methods[@]}" > "$out/folds.md"
cat "$out/folds.md"
