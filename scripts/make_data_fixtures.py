#!/usr/bin/env python3
"""Regenerate the data-layer test fixtures under tests/fixtures/data/ (run from the repo root).

Needs numpy, h5py and nibabel. Writes:
- uamt/: a two-case UA-MT style dataset (train.list, test.list, case folders in a sub-folder
  with a space in its name, like LA's "2018LA_Seg_Training Set"), each case a gzip-chunked
  mri_norm2.h5 with datasets `image` (float32) and `label` (uint8) in axis order (x, y, z);
  the values follow closed formulas that the Rust tests recompute;
- nifti/: small NIfTI-1 files written by nibabel (anisotropic, oblique, qform/sform codes,
  int16 / float64 / uint8 with scaling / float32 labels) and nibabel.json with what nibabel
  reports for each (shape, dtype, codes, affines, zooms, data in C order of the (i, j, k) array);
- msd/: a two-case MSD dataset copied from demo/hippocampus (a uint8 image with uint8 label
  and a float32 image with a float32 label), reported in nifti/nibabel.json too;
- npy/: numpy arrays in Fortran order and non-default dtypes.
"""
import gzip
import json
import shutil
import struct
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np

OUT = Path("tests/fixtures/data")


def uamt_image(shape):
    x, y, z = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    return (100.0 * x + 10.0 * y + z + 0.5).astype(np.float32)


def uamt_label(shape, modulus):
    x, y, z = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    return ((x + y + z) % modulus == 0).astype(np.uint8)


def make_uamt():
    root = OUT / "uamt"
    if root.exists():
        shutil.rmtree(root)
    cases = {"CASE_B": ((7, 6, 5), 3), "CASE_A": ((6, 5, 4), 1000), "CASE_T": ((5, 4, 3), 2)}
    for case_id, (shape, modulus) in cases.items():
        folder = root / "Training Set" / case_id
        folder.mkdir(parents=True)
        with h5py.File(folder / "mri_norm2.h5", "w") as f:
            f.create_dataset("image", data=uamt_image(shape), compression="gzip", chunks=(4, 3, 2))
            f.create_dataset("label", data=uamt_label(shape, modulus), compression="gzip", chunks=(4, 3, 2))
    # Order matters (paper protocol): CASE_B is listed first.
    (root / "train.list").write_text("CASE_B\nCASE_A\n")
    (root / "test.list").write_text("CASE_T\n")


def rotation_z(degrees):
    t = np.deg2rad(degrees)
    return np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])


def affine(rotation, zooms, offset):
    a = np.eye(4)
    a[:3, :3] = rotation @ np.diag(zooms)
    a[:3, 3] = offset
    return a


def report(path):
    img = nib.load(str(path))
    hdr = img.header
    data = np.asanyarray(img.dataobj).astype(np.float64)
    entry = {
        "shape": list(img.shape),
        "dtype": str(hdr.get_data_dtype()),
        "qform_code": int(hdr["qform_code"]),
        "sform_code": int(hdr["sform_code"]),
        "affine": img.affine.tolist(),
        "qform": hdr.get_qform().tolist(),
        "sform": hdr.get_sform().tolist(),
        "zooms": [float(z) for z in hdr.get_zooms()[:3]],
        "sum": float(data.sum()),
        "min": float(data.min()),
        "max": float(data.max()),
    }
    if data.size <= 1000:
        entry["data_c_order"] = data.ravel(order="C").tolist()
    else:
        idx = [(0, 0, 0), tuple(s - 1 for s in data.shape), tuple(s // 2 for s in data.shape), (3, 7, 11)]
        entry["samples"] = [[*map(int, i), float(data[i])] for i in idx]
    return entry


def patch_scaling(path, slope, inter):
    """Rewrite scl_slope / scl_inter (bytes 112..120) in a gzip NIfTI file."""
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[112:120] = struct.pack("<ff", slope, inter)
    path.write_bytes(gzip.compress(bytes(raw)))


def make_nifti():
    root = OUT / "nifti"
    root.mkdir(parents=True, exist_ok=True)
    i, j, k = np.meshgrid(np.arange(6), np.arange(5), np.arange(4), indexing="ij")

    # Oblique, anisotropic; sform (code 2) and qform (code 1) differ so the reader must pick sform.
    aff_s = affine(rotation_z(30), (0.7, 0.9, 2.5), (-10.5, 20.25, 3.0))
    aff_q = affine(rotation_z(30), (0.7, 0.9, 2.5), (-11.0, 20.0, 3.5))
    img = nib.Nifti1Image((i - 2 * j + 7 * k - 3).astype(np.int16), aff_s)
    img.header.set_qform(aff_q, code=1)
    img.header.set_sform(aff_s, code=2)
    img.header.set_xyzt_units("mm")
    nib.save(img, str(root / "aniso_int16.nii.gz"))

    lab = nib.Nifti1Image(((i + j + k) % 3).astype(np.float32), aff_s)
    lab.header.set_qform(aff_q, code=1)
    lab.header.set_sform(aff_s, code=2)
    nib.save(lab, str(root / "label_float32.nii.gz"))

    # qform only, with a left-right flip (qfac = -1 is not needed; the flip is in the rotation).
    flip = np.diag([-1.0, 1.0, 1.0]) @ rotation_z(-15)
    aff = affine(flip, (1.2, 0.6, 3.0), (5.0, -2.0, 40.0))
    i2, j2, k2 = np.meshgrid(np.arange(5), np.arange(4), np.arange(3), indexing="ij")
    img = nib.Nifti1Image((0.25 * i2 * j2 - k2 + 1e-3).astype(np.float64), None)
    img.header.set_qform(aff, code=1)
    img.header.set_sform(None, code=0)
    nib.save(img, str(root / "qform_only_float64.nii"))

    img = nib.Nifti1Image((i + j + k).astype(np.uint8), aff_s)
    nib.save(img, str(root / "scaled_uint8.nii.gz"))
    patch_scaling(root / "scaled_uint8.nii.gz", 2.0, -1.0)

    return {p.name: report(p) for p in sorted(root.glob("*.nii*"))}


def make_msd():
    root = OUT / "msd"
    if root.exists():
        shutil.rmtree(root)
    demo = Path("demo/hippocampus")
    cases = ["hippocampus_001", "hippocampus_003"]
    for folder in ("imagesTr", "labelsTr"):
        (root / folder).mkdir(parents=True)
        for case in cases:
            shutil.copy(demo / folder / f"{case}.nii.gz", root / folder / f"{case}.nii.gz")
    meta = json.loads((demo / "dataset.json").read_text())
    meta["description"] = "two cases of the semisam Hippocampus demo subset (MSD Task04), test fixture"
    meta["numTraining"] = len(cases)
    meta["training"] = [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in cases]
    (root / "dataset.json").write_text(json.dumps(meta, indent=1) + "\n")
    shutil.copy(demo / "LICENSE.md", root / "LICENSE.md")
    reports = {}
    for folder in ("imagesTr", "labelsTr"):
        for case in cases:
            reports[f"msd/{folder}/{case}.nii.gz"] = report(root / folder / f"{case}.nii.gz")
    return reports


def make_npy():
    root = OUT / "npy"
    root.mkdir(parents=True, exist_ok=True)
    x, y, z = np.meshgrid(np.arange(3), np.arange(4), np.arange(2), indexing="ij")
    np.save(root / "image_f64_fortran.npy", np.asfortranarray((x - 0.5 * y + 10.0 * z).astype(np.float64)))
    np.save(root / "label_i64.npy", ((x * y + z) % 3).astype(np.int64))


if __name__ == "__main__":
    make_uamt()
    reports = make_nifti()
    reports.update(make_msd())
    make_npy()
    (OUT / "nifti" / "nibabel.json").write_text(json.dumps(reports, indent=1) + "\n")
    print(f"nibabel {nib.__version__}, h5py {h5py.__version__}, numpy {np.__version__}")
