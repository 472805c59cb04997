#!/usr/bin/env python3
"""Reference values for semisam's segmentation metrics.

Builds a set of small labelled mask pairs (anisotropic spacing, objects touching the volume
border, one-voxel objects, empty masks, several classes), computes Dice, Jaccard, HD95, ASD and
ASSD with medpy and the MONAI-convention HD95 with MONAI, and writes masks and values to
tests/fixtures/metrics/reference_cases.json (read by tests/metrics_reference.rs).

Cases with an empty mask have no medpy/MONAI value (both libraries refuse or return inf/nan);
their expected values are semisam's documented empty-mask policy (docs/method.md §7) and are marked
"source": "policy".

Usage: python scripts/metrics_reference.py   (needs numpy, scipy, medpy, torch, monai)
"""

import json
import math
from pathlib import Path

import medpy
import monai
import numpy as np
import scipy
import scipy.ndimage as ndi
import torch
from medpy.metric import binary as medpy_binary
from monai.metrics import compute_hausdorff_distance

OUTPUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "metrics" / "reference_cases.json"


def ellipsoid(shape, centre, radii):
    grid = np.indices(shape, dtype=np.float64)
    value = sum(((grid[d] - centre[d]) / radii[d]) ** 2 for d in range(3))
    return value <= 1.0


def smooth_blobs(rng, shape, sigma, threshold):
    noise = ndi.gaussian_filter(rng.standard_normal(shape), sigma)
    return noise > threshold * noise.std()


def medpy_values(prediction, reference, spacing):
    return {
        "dice": float(medpy_binary.dc(prediction, reference)),
        "jaccard": float(medpy_binary.jc(prediction, reference)),
        "hd95_medpy": float(medpy_binary.hd95(prediction, reference, voxelspacing=spacing)),
        "asd": float(medpy_binary.asd(prediction, reference, voxelspacing=spacing)),
        "assd": float(medpy_binary.assd(prediction, reference, voxelspacing=spacing)),
    }


def monai_hd95(prediction, reference, spacing):
    as_batch = lambda mask: torch.from_numpy(mask[None, None].astype(np.float32))
    value = compute_hausdorff_distance(
        as_batch(prediction),
        as_batch(reference),
        include_background=True,
        percentile=95,
        spacing=None if spacing is None else list(spacing),
    )
    return float(value.item())


def policy_values(prediction, reference, spacing):
    """semisam's empty-mask policy (docs/method.md §7); no library defines these cases."""
    if not prediction.any() and not reference.any():
        dice, distance = 1.0, 0.0
    else:
        steps = spacing if spacing is not None else (1.0, 1.0, 1.0)
        dice = 0.0
        distance = math.sqrt(sum((n * s) ** 2 for n, s in zip(prediction.shape, steps)))
    return {"dice": dice, "jaccard": dice, "hd95_medpy": distance, "hd95_monai": distance, "asd": distance, "assd": distance}


def expected(prediction, reference, spacing):
    if prediction.any() and reference.any():
        values = medpy_values(prediction, reference, spacing)
        values["hd95_monai"] = monai_hd95(prediction, reference, spacing)
        values["source"] = "medpy+monai"
    else:
        values = policy_values(prediction, reference, spacing)
        values["source"] = "policy"
    return values


def encode(labels):
    assert labels.max() < 10
    return "".join(str(int(v)) for v in labels.ravel(order="C"))


def case(name, prediction, reference, spacing, classes=(1,), flat_spacing=None):
    """One fixture case. A 2-D pair is scored as the 2-D arrays it is (medpy and MONAI outline it in
    its plane) and stored as a one-slice volume, the way semisam holds a 2-D image, with
    `flat_spacing` along the missing axis, which must not change any value."""
    prediction = np.asarray(prediction, dtype=np.uint8)
    reference = np.asarray(reference, dtype=np.uint8)
    assert prediction.shape == reference.shape
    classes = [{"class": int(c), **expected(prediction == c, reference == c, spacing)} for c in classes]
    stored_spacing = spacing
    if prediction.ndim == 2:
        prediction, reference = prediction[:, :, None], reference[:, :, None]
        stored_spacing = None if spacing is None else (*spacing, flat_spacing)
    return {
        "name": name,
        "shape": list(prediction.shape),
        "spacing": None if stored_spacing is None else list(stored_spacing),
        "prediction": encode(prediction),
        "reference": encode(reference),
        "classes": classes,
    }


def build_cases():
    rng = np.random.default_rng(20261127)
    cases = []

    shape = (24, 20, 14)
    reference = ellipsoid(shape, (11.5, 9.0, 6.5), (8.0, 6.5, 4.0))
    prediction = ellipsoid(shape, (13.0, 8.0, 7.0), (7.0, 7.5, 3.5)) ^ (rng.random(shape) < 0.02)
    cases.append(case("ellipsoids_anisotropic", prediction, reference, (0.7, 0.9, 2.5)))

    shape = (16, 18, 12)
    reference = np.zeros(shape, bool)
    reference[:9, 5:, :7] = True
    prediction = ellipsoid(shape, (0.0, 17.0, 2.0), (10.0, 9.0, 6.0))
    cases.append(case("touching_border", prediction, reference, (1.0, 1.0, 1.5)))

    shape = (9, 11, 7)
    reference = np.zeros(shape, bool)
    reference[4, 5, 3] = True
    prediction = np.zeros(shape, bool)
    prediction[1, 9, 6] = True
    cases.append(case("one_voxel_objects", prediction, reference, (0.5, 2.0, 1.0)))

    prediction = ellipsoid(shape, (4.0, 5.0, 3.0), (2.5, 3.5, 2.0))
    cases.append(case("one_voxel_reference_inside_blob", prediction, reference, (0.5, 2.0, 1.0)))

    shape = (20, 22, 16)
    reference = smooth_blobs(rng, shape, 2.0, 0.6)
    prediction = smooth_blobs(rng, shape, 2.0, 0.6) | ndi.binary_dilation(reference)
    prediction[:, :, :5] = reference[:, :, :5]
    cases.append(case("random_blobs_voxel_units", prediction, reference, None))

    shape = (12, 10, 8)
    full = np.ones(shape, bool)
    partial = np.zeros(shape, bool)
    partial[2:9, 1:10, 3:8] = True
    cases.append(case("whole_volume_reference", partial, full, (1.2, 0.8, 3.0)))

    plane = np.zeros(shape, bool)
    plane[5, :, :] = True
    tilted = np.zeros(shape, bool)
    for j in range(shape[1]):
        tilted[3 + j // 4, j, :] = True
    cases.append(case("thin_planes", tilted, plane, (0.6, 0.6, 2.0)))

    blob = ellipsoid(shape, (6.0, 5.0, 4.0), (3.0, 3.0, 2.5))
    cases.append(case("identical_masks", blob, blob, (1.0, 1.5, 2.0)))

    empty = np.zeros(shape, bool)
    cases.append(case("empty_prediction", empty, blob, (1.0, 1.5, 2.0)))
    cases.append(case("empty_reference", blob, empty, (1.0, 1.5, 2.0)))
    cases.append(case("both_empty", empty, empty, (1.0, 1.5, 2.0)))
    cases.append(case("empty_prediction_voxel_units", empty, blob, None))

    shape = (18, 16, 10)
    reference = np.zeros(shape, np.uint8)
    reference[ellipsoid(shape, (8.0, 8.0, 5.0), (6.0, 5.0, 3.5))] = 1
    reference[ellipsoid(shape, (8.0, 8.0, 5.0), (3.0, 2.5, 2.0))] = 2
    prediction = np.zeros(shape, np.uint8)
    prediction[ellipsoid(shape, (9.0, 7.0, 5.0), (6.5, 5.0, 3.0))] = 1
    prediction[ellipsoid(shape, (10.0, 7.0, 4.0), (2.5, 2.5, 2.5))] = 2
    prediction[0:2, 0:3, 0:2] = 2
    cases.append(case("multi_class", prediction, reference, (1.25, 0.8, 3.0), classes=(1, 2, 3)))

    # 2-D images (a PNG, a 2-D NIfTI), held by semisam as one-slice volumes.
    grid = np.indices((26, 21), dtype=np.float64)
    disc = lambda centre, radii: sum(((grid[d] - centre[d]) / radii[d]) ** 2 for d in range(2)) <= 1.0
    reference = disc((12.0, 10.0), (8.0, 6.0))
    prediction = disc((14.0, 9.0), (7.0, 7.0)) ^ (rng.random((26, 21)) < 0.03)
    cases.append(case("plane_2d", prediction, reference, (0.7, 1.1), flat_spacing=8.0))
    cases.append(case("plane_2d_empty_prediction", np.zeros_like(reference), reference, (0.7, 1.1), flat_spacing=8.0))
    return cases


def main():
    document = {
        "generator": "scripts/metrics_reference.py",
        "versions": {
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "medpy": getattr(medpy, "__version__", "unknown"),
            "monai": monai.__version__,
            "torch": torch.__version__,
        },
        "mask_encoding": "one decimal digit per voxel (label value), C order over shape",
        "cases": build_cases(),
    }
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(json.dumps(document, indent=1) + "\n")
    print(f"wrote {len(document['cases'])} cases to {OUTPUT}")


if __name__ == "__main__":
    main()
