"""Writes tests/fixtures/sammed3d/bad_bare_checkpoint.pth: a small *bare* state dict (no
'model_state_dict' nesting, DataParallel 'module.' prefixes) derived from the tiny fixture
checkpoint, with deliberate faults for the loader's error tests:
  - every image_encoder.* tensor but patch_embed.proj.bias and every mask_decoder.transformer.*
    tensor left out (missing),
  - prompt_encoder.no_mask_embed.weight cut to shape (1, 47) (mis-shaped),
  - prompt_encoder.not_a_point_embed.weight stored as float16 (unreadable dtype),
  - an extra key 'pixel_mean' (unexpected).
Usage: python scripts/make_sammed3d_bad_checkpoint.py  (needs torch)
"""
from pathlib import Path

import torch

fixtures = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "sammed3d"
state = torch.load(fixtures / "tiny_sammed3d.pth", weights_only=True)["model_state_dict"]
bare = {}
for key, value in state.items():
    dropped_encoder = key.startswith("image_encoder.") and key != "image_encoder.patch_embed.proj.bias"
    if dropped_encoder or key.startswith("mask_decoder.transformer."):
        continue
    if key == "prompt_encoder.no_mask_embed.weight":
        value = value[:, :47]
    if key == "prompt_encoder.not_a_point_embed.weight":
        value = value.half()
    bare["module." + key] = value.clone()
bare["module.pixel_mean"] = torch.zeros(1)
torch.save(bare, fixtures / "bad_bare_checkpoint.pth")
