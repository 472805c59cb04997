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
# Checkpoints are compared by content: tensors and scalars by parameter name (burn's parameter ids
# are random per process, so the files' bytes differ).
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

# The binary itself, not a shell function around it: `kill -9 $!` must reach the trainer.
train=("$bin" train --config "$config" --runs-dir "$runs" --no-progress)

echo "soak: $kills kills, seed $seed, output $out"
start=$(date +%s.%N)
"${train[@]}" --name straight > "$out/straight.log" 2>&1
straight_s=$(echo "$(date +%s.%N) - $start" | bc)
echo "uninterrupted run: ${straight_s} s"

steps() { cat "$runs/soak/log.jsonl" 2>/dev/null | grep -c '"kind":"iteration"' || true; }

mode=(--name soak)
for kill in $(seq 1 "$kills"); do
    # Anywhere from process start (data loading) to a third of a full run, so that most kills
    # land while training.
    fraction=$((RANDOM % 1000))
    delay=$(echo "scale=2; $straight_s * 0.3 * $fraction / 1000" | bc)
    "${train[@]}" "${mode[@]}" >> "$out/soak.log" 2>&1 &
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
"${train[@]}" "${mode[@]}" >> "$out/soak.log" 2>&1

python3 - "$runs/straight" "$runs/soak" <<'PY'
import json, struct, sys, csv, io
from pathlib import Path

straight, soak = map(Path, sys.argv[1:])
failures = []

def cbor(data, i=0):
    """Minimal CBOR decoder (what burnpack metadata uses): (value, next index)."""
    head = data[i]
    major, info, i = head >> 5, head & 31, i + 1
    if info < 24:
        arg = info
    else:
        size = {24: 1, 25: 2, 26: 4, 27: 8}[info]
        arg, i = int.from_bytes(data[i:i + size], "big"), i + size
    if major == 0:
        return arg, i
    if major == 1:
        return -1 - arg, i
    if major == 2:
        return bytes(data[i:i + arg]), i + arg
    if major == 3:
        return data[i:i + arg].decode(), i + arg
    if major == 4:
        items = []
        for _ in range(arg):
            value, i = cbor(data, i)
            items.append(value)
        return items, i
    if major == 5:
        items = {}
        for _ in range(arg):
            key, i = cbor(data, i)
            items[key], i = cbor(data, i)
        return items, i
    if major == 7:
        return {20: False, 21: True, 22: None}[info], i
    raise ValueError(f"unexpected CBOR major type {major}")

def by_name(section):
    """A burnpack section as {parameter name: (dtype, shape, bytes)} plus its scalars. burn gives
    every parameter a random id per process, and the optimizer keys its state by those ids: both
    are translated to parameter names, which is what a resumed run must reproduce."""
    assert section[:4] == b"NRUB"
    meta, _ = cbor(section, 10)
    tensors = meta["tensors"]
    start = len(section) - max(t["data_offsets"][1] for t in tensors.values())
    names = meta.get("metadata", {})
    def name(key):
        head, _, tail = key.partition(".")
        return f"{names[head]}.{tail}" if head in names else key
    values = {name(k): (t["dtype"], t["shape"], section[start + t["data_offsets"][0]:start + t["data_offsets"][1]])
              for k, t in tensors.items()}
    scalars = {name(k): v for k, v in meta.get("scalars", {}).items()}
    return values, scalars

def checkpoint(path):
    data = path.read_bytes()
    assert data[:12] == b"SEMISAM-CKPT", path
    (length,) = struct.unpack("<Q", data[16:24])
    header = json.loads(data[24:24 + length])
    offset, sections = 24 + length, {}
    for name, size in header.pop("sections"):
        sections[name] = by_name(data[offset:offset + size])
        offset += size
    return header, sections

for name in ["final", "last", "best"]:
    a, b = (checkpoint(run / "checkpoints" / f"{name}.ckpt") for run in (straight, soak))
    for section in sorted(set(a[1]) | set(b[1])):
        same = a[1].get(section) == b[1].get(section)
        size = sum(len(v[2]) for v in a[1].get(section, ({}, {}))[0].values())
        print(f"{name}.ckpt {section:<10} {size:>9} bytes of tensors  {'identical' if same else 'DIFFERENT'}")
        if not same:
            failures.append(f"{name}.ckpt section {section}")
    same = a[0] == b[0]
    print(f"{name}.ckpt header (step {a[0]['step']}, sampler, RNG, best) {'identical' if same else 'DIFFERENT'}")
    if not same:
        failures.append(f"{name}.ckpt header")

WALL_CLOCK = {"elapsed_s", "iteration_s", "seconds", "validation_s"}

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
