#!/usr/bin/env bash
# Measures what the inference options change: window weighting (uniform, gaussian) x mirror
# test-time augmentation (off, on), one trained checkpoint, the same inputs, Dice and wall time.
#
# Usage: bench/inference_options.sh CHECKPOINT INPUT REF OUT [evaluate options...]
#   INPUT  a folder `semisam predict --input` accepts; REF the reference label maps for
#   `semisam evaluate --ref` (for UA-MT h5 case folders both may be the same folder); extra
#   arguments go to `semisam evaluate` (e.g. --voxels for LA).
# TTA=0 leaves out the TTA variants (a model trained without flips has no axis to mirror).
# Writes OUT/<variant>/{predictions,metrics}, OUT/times.tsv and OUT/table.md (mean Dice per class,
# the paired difference per case against uniform without TTA, and seconds per case).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 4 ] || { sed -n 2,11p "$0" >&2; exit 2; }
checkpoint=$1 input=$2 ref=$3 out=$4
shift 4
bin=${SEMISAM_BIN:-target/release/semisam}
mkdir -p "$out"
: > "$out/times.tsv"
for weighting in uniform gaussian; do
  for tta in no-tta $([ "${TTA:-1}" = 0 ] || echo tta); do
    variant=$weighting-$tta
    rm -rf "$out/$variant"
    start=$(date +%s.%N)
    "$bin" predict --checkpoint "$checkpoint" --input "$input" --output "$out/$variant/predictions" \
      --weighting "$weighting" --"$tta" --no-progress
    end=$(date +%s.%N)
    "$bin" evaluate --pred "$out/$variant/predictions" --ref "$ref" --out "$out/$variant/metrics" "$@" > /dev/null
    printf '%s\t%s\n' "$variant" "$(echo "$end - $start" | bc)" >> "$out/times.tsv"
  done
done
python3 bench/inference_table.py "$out" > "$out/table.md"
cat "$out/table.md"
