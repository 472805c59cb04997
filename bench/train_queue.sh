# Sourced by the bench scripts that train many runs (bench/la_experiment.sh, bench/folds.sh):
# one resumable, timed run, and a queue that keeps a few of them in flight. Set `bin` (the
# semisam binary) and `out` (the experiment folder; runs go to $out/runs) before calling them.

# train_once NAME ARG...: `semisam train ARG... --name NAME --runs-dir $out/runs --no-progress`.
# A run with its final metrics is skipped, one with a checkpoint is resumed; the output goes to
# $out/NAME.log, wall time and peak RSS to $out/NAME.time (/usr/bin/time -v).
train_once() {
    local name=$1
    shift
    local run="$out/runs/$name"
    if [ -f "$run/metrics/per_case.csv" ]; then echo "$name already done"; return; fi
    local resume=()
    [ -f "$run/checkpoints/last.ckpt" ] && resume=(--resume)
    /usr/bin/time -v -o "$out/$name.time" "$bin" train "$@" \
        --name "$name" --runs-dir "$out/runs" --no-progress "${resume[@]}" > "$out/$name.log" 2>&1 \
        && echo "$name done" || echo "$name FAILED (see $out/$name.log)"
}

# wait_for_slot N: return once fewer than N background jobs are running.
wait_for_slot() {
    while [ "$(jobs -rp | wc -l)" -ge "$1" ]; do wait -n || true; done
}
