#!/usr/bin/env bash
# Kill-and-resume soak: a small Mean Teacher training on the embedded Hippocampus demo is killed
# with SIGKILL at KILLS random moments, each time resumed (or, when the kill came before the first
# checkpoint, restarted with --overwrite as the error says); the final checkpoints (student,
# teacher, optimizer, sampler and RNG states), the logs (wall-clock fields aside) and the final
# metrics must equal those of an uninterrupted run of the same configuration.
#
#   bench/soak_resume.sh [KILLS] [OUT_DIR]
#
# SEMISAM_BIN: the binary (default: target/debug/semisam, built if missing). SOAK_SEED: the seed of
# the kill times (default: the current time, printed). Exit status 0 only when everything matches.
set -euo pipefail

kills=${1:-5}
out=${2:-$(mktemp -d)}
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${SEMISAM_BIN:-$here/target/debug/semisam}
if [ ! -x "$bin" ]; then
    (cd "$here" && cargo build --quiet --bin semisam)
fi
bin=$(realpath "$bin")
seed=${SOAK_SEED:-$(date +%s)}
RANDOM=$seed
mkdir -p "$out"
out=$(realpath "$out")
runs="$out/runs"
config="$out/soak.toml"

# Teacher, dropout and teacher noise make every piece of saved state matter; checkpoints every
# 4 iterations so that most kills lose some iterations that the resumed run must redo identically.
cat > "$config" <<TOML
[data]
root = "$here/demo/hippocampus"
labeled = 2
validation = 2
unlabeled = 3

[network]
architecture = "v_net"
in_channels = 1
num_classes = 3
base_filters = 4
dropout = true

[framework]
kind = "mean_teacher"

[framework.teacher.consistency]
weight = 0.1
rampup_epochs = 5.0
iterations_per_epoch = 4

[training]
iterations = 40
batch_size = 4
labeled_bs = 2
patch = [32, 32, 32]
lr = 0.01
seed = 7
checkpoint_every = 4
augment = { rot90 = true, flip = true }

[validation]
every = 10
stride = [16, 16, 16]

[inference]
stride = [16, 16, 16]
TOML

train() {
    "$bin" train --config "$config" --runs-dir "$runs" --no-progress "$@"
}

echo "soak: $kills kills, seed $seed, output $out"
start=$(date +%s.%N)
train --name straight > "$out/straight.log" 2>&1
straight_s=$(echo "$(date +%s.%N) - $start" | bc)
echo "uninterrupted run: ${straight_s} s"

steps() { [ -f "$runs/soak/log.jsonl" ] && grep -c '"kind":"iteration"' "$runs/soak/log.jsonl" || echo 0; }

mode=(--name soak)
for kill in $(seq 1 "$kills"); do
    # Anywhere from process start (data loading) to most of a full run.
    delay=$(echo "scale=2; $straight_s * ($RANDOM % 1000) / 1000 * 0.8" | bc)
    train "${mode[@]}" >> "$out/soak.log" 2>&1 &
    pid=$!
    sleep "$delay"
    if kill -9 "$pid" 2>/dev/null; then
        wait "$pid" 2>/dev/null || true
        echo "kill $kill: after ${delay} s, $(steps) iterations logged"
    else
        wait "$pid" || true
        echo "kill $kill: the process had already ended after ${delay} s"
    fi
    if [ -f "$runs/soak/checkpoints/last.ckpt" ]; then
        mode=(--name soak --resume)
    else
        mode=(--name soak --overwrite)
    fi
done
echo "final ${mode[*]}"
train "${mode[@]}" >> "$out/soak.log" 2>&1
ls -a "$runs/soak/checkpoints"

python3 - "$runs/straight" "$runs/soak" <<'PY'
import json, struct, sys, csv, io
from pathlib import Path

straight, soak = map(Path, sys.argv[1:])
failures = []

def checkpoint(path):
    data = path.read_bytes()
    assert data[:12] == b"SEMISAM-CKPT", path
    (length,) = struct.unpack("<Q", data[16:24])
    header = json.loads(data[24:24 + length])
    offset, sections = 24 + length, {}
    for name, size in header.pop("sections"):
        sections[name] = data[offset:offset + size]
        offset += size
    return header, sections

for name in ["final", "last", "best"]:
    a, b = (checkpoint(run / "checkpoints" / f"{name}.ckpt") for run in (straight, soak))
    for key in sorted(set(a[0]) | set(b[0])):
        same = a[0].get(key) == b[0].get(key)
        if not same:
            failures.append(f"{name}.ckpt header field {key}")
    for section in sorted(set(a[1]) | set(b[1])):
        same = a[1].get(section) == b[1].get(section)
        print(f"{name}.ckpt {section:<10} {len(a[1].get(section, b'')):>9} bytes  {'identical' if same else 'DIFFERENT'}")
        if not same:
            failures.append(f"{name}.ckpt section {section}")
    print(f"{name}.ckpt header (step {a[0]['step']}, sampler, RNG, best) {'identical' if a[0] == b[0] else 'DIFFERENT'}")

WALL_CLOCK = {"elapsed_s", "iteration_s", "seconds"}

def jsonl(run):
    return [{k: v for k, v in json.loads(line).items() if k not in WALL_CLOCK}
            for line in (run / "log.jsonl").read_text().splitlines()]

def table(run):
    rows = list(csv.DictReader(io.StringIO((run / "log.csv").read_text())))
    return [{k: v for k, v in row.items() if k not in WALL_CLOCK} for row in rows]

for what, read in [("log.jsonl", jsonl), ("log.csv", table)]:
    a, b = read(straight), read(soak)
    same = a == b
    print(f"{what}: {len(a)} vs {len(b)} records, {'identical' if same else 'DIFFERENT'} (wall-clock fields aside)")
    if not same:
        failures.append(what)

a, b = ((run / "metrics" / "summary.json").read_text() for run in (straight, soak))
print(f"metrics/summary.json {'identical' if a == b else 'DIFFERENT'}")
if a != b:
    failures.append("metrics/summary.json")
leftovers = [p.name for p in (soak / "checkpoints").iterdir() if p.name.endswith(".tmp")]
if leftovers:
    failures.append(f"temporary files left: {leftovers}")
if failures:
    print("SOAK FAILED:", ", ".join(failures))
    sys.exit(1)
print("SOAK PASSED")
PY
