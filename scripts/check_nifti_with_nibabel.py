#!/usr/bin/env python3
"""Check with nibabel that NIfTI files written by semisam carry the right geometry and data.

Usage (from the repo root, in an environment with nibabel and numpy):

    SEMISAM_NIFTI_CHECK_DIR=/tmp/nifti-check cargo test --test data_nifti_nibabel
    python scripts/check_nifti_with_nibabel.py /tmp/nifti-check

The test writes every fixture of tests/fixtures/data/nifti/nibabel.json back through
semisam's writer (images as float32, labels as uint8) plus a synthetic anisotropic volume, and a
manifest.json naming each written file and its source fixture (or its expected geometry). This
script loads each written file with nibabel and compares it with nibabel's reading of the source:
best affine, qform and sform matrices and codes, zooms, and voxel data (labels exactly, images to
1e-6 relative). Exit status 1 on any mismatch.
"""
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "data"


def source_path(key):
    return FIXTURES / key if "/" in key else FIXTURES / "nifti" / key


def expected_from_source(key):
    img = nib.load(str(source_path(key)))
    hdr = img.header
    return {
        "affine": img.affine,
        "qform": hdr.get_qform(),
        "sform": hdr.get_sform(),
        "qform_code": int(hdr["qform_code"]),
        "sform_code": int(hdr["sform_code"]),
        "zooms": np.array(hdr.get_zooms()[:3]),
        "data": np.asanyarray(img.dataobj).astype(np.float64),
    }


def check(folder, item):
    img = nib.load(str(folder / item["written"]))
    hdr = img.header
    data = np.asanyarray(img.dataobj).astype(np.float64)
    problems = []
    if "source" in item:
        exp = expected_from_source(item["source"])
        if item["kind"] == "label":
            exp["data"] = np.rint(exp["data"])
    else:
        e = item["expected"]
        exp = {k: np.array(v) for k, v in e.items() if k != "data_c_order"}
        exp["data"] = np.array(e["data_c_order"]).reshape(img.shape)
        exp["qform_code"], exp["sform_code"] = e["qform_code"], e["sform_code"]
    want_dtype = np.uint8 if item["kind"] == "label" else np.float32
    if hdr.get_data_dtype() != want_dtype:
        problems.append(f"dtype {hdr.get_data_dtype()} != {np.dtype(want_dtype)}")
    for code in ("qform_code", "sform_code"):
        if int(hdr[code]) != exp[code]:
            problems.append(f"{code} {int(hdr[code])} != {exp[code]}")
    if not np.allclose(img.affine, exp["affine"], atol=1e-5):
        problems.append(f"affine\n{img.affine}\n!= expected\n{exp['affine']}")
    for name, getter in (("qform", hdr.get_qform), ("sform", hdr.get_sform)):
        if name in exp and not np.allclose(getter(), exp[name], atol=1e-5):
            problems.append(f"{name} differs")
    if not np.allclose(hdr.get_zooms()[:3], exp["zooms"], rtol=1e-6):
        problems.append(f"zooms {hdr.get_zooms()[:3]} != {exp['zooms']}")
    if data.shape != exp["data"].shape:
        problems.append(f"shape {data.shape} != {exp['data'].shape}")
    elif item["kind"] == "label" and not np.array_equal(data, exp["data"]):
        problems.append(f"{int((data != exp['data']).sum())} label voxels differ")
    elif not np.allclose(data, exp["data"], rtol=1e-6, atol=1e-6):
        problems.append(f"max data difference {np.abs(data - exp['data']).max()}")
    return problems


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    folder = Path(sys.argv[1])
    manifest = json.loads((folder / "manifest.json").read_text())
    failures = 0
    for item in manifest["files"]:
        problems = check(folder, item)
        failures += bool(problems)
        status = "ok" if not problems else "MISMATCH: " + "; ".join(problems)
        print(f"{item['written']:55s} {item['kind']:5s} {status}")
    print(f"nibabel {nib.__version__}: {len(manifest['files'])} files, {failures} mismatched")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
