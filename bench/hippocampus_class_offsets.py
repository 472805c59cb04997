#!/usr/bin/env python3
"""Where the posterior hippocampus lies relative to the anterior one, per case and array axis.

Usage: bench/hippocampus_class_offsets.py LABELS_DIR [MAX_CASES]

Prints, for each label map (MSD Task04 NIfTI, uint8 or float32 labels), the offset of the
posterior class's centroid from the anterior class's centroid in voxels along the array axes
(i, j, k), then the mean, minimum and maximum per axis. A sign that never changes along one axis
means the two classes differ by their position along it, which rot90 / flip augmentation in the
plane of that axis reverses. Pure Python (gzip + struct), no NumPy needed.
"""
import glob
import gzip
import struct
import sys

TYPES = {2: "B", 4: "h", 8: "i", 16: "f", 64: "d"}


def read_nifti(path):
    raw = gzip.open(path).read() if path.endswith(".gz") else open(path, "rb").read()
    dim = struct.unpack("<8h", raw[40:56])
    datatype = struct.unpack("<h", raw[70:72])[0]
    offset = int(struct.unpack("<f", raw[108:112])[0])
    shape = dim[1:4]
    count = shape[0] * shape[1] * shape[2]
    code = TYPES[datatype]
    size = struct.calcsize(code)
    values = struct.unpack(f"<{count}{code}", raw[offset:offset + count * size])
    return shape, values


def centroid_offset(path):
    (nx, ny, _), values = read_nifti(path)
    sums = {1: [0.0, 0.0, 0.0, 0], 2: [0.0, 0.0, 0.0, 0]}
    for index, value in enumerate(values):
        cls = int(round(value))
        if cls in sums:
            # NIfTI stores the first axis fastest.
            s = sums[cls]
            s[0] += index % nx
            s[1] += (index // nx) % ny
            s[2] += index // (nx * ny)
            s[3] += 1
    if sums[1][3] == 0 or sums[2][3] == 0:
        return None
    return [sums[2][d] / sums[2][3] - sums[1][d] / sums[1][3] for d in range(3)]


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    limit = int(sys.argv[2]) if len(sys.argv) > 2 else None
    paths = sorted(glob.glob(f"{sys.argv[1]}/*.nii*"))[:limit]
    offsets = []
    for path in paths:
        offset = centroid_offset(path)
        if offset is None:
            print(f"{path}: a class is missing")
            continue
        offsets.append(offset)
        print(f"{path}: " + " ".join(f"{v:+.1f}" for v in offset))
    for axis, name in enumerate("ijk"):
        column = [o[axis] for o in offsets]
        print(f"axis {name}: mean {sum(column) / len(column):+.2f}, min {min(column):+.1f}, max {max(column):+.1f} ({len(column)} cases)")


if __name__ == "__main__":
    main()
