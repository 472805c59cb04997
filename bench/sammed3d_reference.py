"""PyTorch reference timing of the SAM-Med3D image encoder (vit_b_ori, random weights) on
one 128^3 volume, for comparison with `cargo bench --bench sammed3d_encoder`.

The encoder is written out here from the forward-pass notes of the reference (patch
embedding, absolute position, blocks with the zero-padded 14^3 window and the reference's
decomposed relative-position broadcast, neck). `--check-fixtures DIR` first loads the tiny
fixture checkpoint and compares the embedding with DIR/input1_ellipsoid/image_embedding.npy,
so the timed computation is known to be the reference's.

Usage: python bench/sammed3d_reference.py [--runs N] [--threads T] [--check-fixtures DIR]
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def layer_norm(x, w, b, eps):
    return F.layer_norm(x, (x.shape[-1],), w, b, eps)


def layer_norm_channels_first(x, w, b, eps=1e-6):
    u = x.mean(1, keepdim=True)
    s = (x - u).pow(2).mean(1, keepdim=True)
    x = (x - u) / torch.sqrt(s + eps)
    return w[:, None, None, None] * x + b[:, None, None, None]


def expanded_table(table, size):
    idx = torch.arange(size)[:, None] - torch.arange(size)[None, :] + size - 1
    return table[idx]  # (S, S, hd)


def attention(x, p, prefix, heads):
    b, s, _, _, c = x.shape
    n = s ** 3
    hd = c // heads
    qkv = F.linear(x.reshape(b, n, c), p[prefix + "qkv.weight"], p.get(prefix + "qkv.bias"))
    qkv = qkv.reshape(b, n, 3, heads, hd).permute(2, 0, 3, 1, 4).reshape(3, b * heads, n, hd)
    q, k, v = qkv.unbind(0)
    attn = (q * hd ** -0.5) @ k.transpose(-2, -1)
    if prefix + "rel_pos_d" in p:
        rd = expanded_table(p[prefix + "rel_pos_d"], s)
        rh = expanded_table(p[prefix + "rel_pos_h"], s)
        rw = expanded_table(p[prefix + "rel_pos_w"], s)
        r_q = q.reshape(b * heads, s, s, s, hd)
        rel_d = torch.einsum("bdhwc,dkc->bdhwk", r_q, rd)
        rel_h = torch.einsum("bdhwc,hkc->bdhwk", r_q, rh)
        rel_w = torch.einsum("bdhwc,wkc->bdhwk", r_q, rw)
        # The reference's broadcast, kept as trained (not the MViTv2 placement).
        attn = (
            attn.view(b * heads, s, s, s, s, s, s)
            + rel_d[:, :, :, :, None, None]
            + rel_h[:, :, :, None, :, None]
            + rel_w[:, :, :, None, None, :]
        ).view(b * heads, n, n)
    out = (attn.softmax(dim=-1) @ v).view(b, heads, s, s, s, hd)
    out = out.permute(0, 2, 3, 4, 1, 5).reshape(b, s, s, s, c)
    return F.linear(out, p[prefix + "proj.weight"], p[prefix + "proj.bias"])


def block(x, p, prefix, cfg, is_global):
    shortcut = x
    x = layer_norm(x, p[prefix + "norm1.weight"], p[prefix + "norm1.bias"], cfg["encoder_layernorm_eps"])
    b, d, h, w, c = x.shape
    if is_global:
        x = attention(x, p, prefix + "attn.", cfg["encoder_num_heads"])
    else:
        ws = cfg["window_size"]
        pad = [(ws - n % ws) % ws for n in (d, h, w)]
        x = F.pad(x, (0, 0, 0, pad[2], 0, pad[1], 0, pad[0]))
        dp, hp, wp = d + pad[0], h + pad[1], w + pad[2]
        x = x.view(b, dp // ws, ws, hp // ws, ws, wp // ws, ws, c)
        x = x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, ws, ws, ws, c)
        x = attention(x, p, prefix + "attn.", cfg["encoder_num_heads"])
        x = x.view(b, dp // ws, hp // ws, wp // ws, ws, ws, ws, c)
        x = x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, dp, hp, wp, c)[:, :d, :h, :w]
    x = shortcut + x
    y = layer_norm(x, p[prefix + "norm2.weight"], p[prefix + "norm2.bias"], cfg["encoder_layernorm_eps"])
    y = F.linear(F.gelu(F.linear(y, p[prefix + "mlp.lin1.weight"], p[prefix + "mlp.lin1.bias"])),
                 p[prefix + "mlp.lin2.weight"], p[prefix + "mlp.lin2.bias"])
    return x + y


def encoder(volume, p, cfg):
    e = "image_encoder."
    x = F.conv3d(volume, p[e + "patch_embed.proj.weight"], p[e + "patch_embed.proj.bias"],
                 stride=cfg["patch_size"]).permute(0, 2, 3, 4, 1)
    if cfg["use_abs_pos"]:
        x = x + p[e + "pos_embed"]
    for i in range(cfg["encoder_depth"]):
        x = block(x, p, f"{e}blocks.{i}.", cfg, i in cfg["encoder_global_attn_indexes"])
    x = F.conv3d(x.permute(0, 4, 1, 2, 3), p[e + "neck.0.weight"])
    x = layer_norm_channels_first(x, p[e + "neck.1.weight"], p[e + "neck.1.bias"])
    x = F.conv3d(x, p[e + "neck.2.weight"], padding=1)
    return layer_norm_channels_first(x, p[e + "neck.3.weight"], p[e + "neck.3.bias"])


def random_encoder_params(cfg, keys):
    g = torch.Generator().manual_seed(0)
    return {k: torch.randn(s, generator=g) * 0.02 for k, s in keys if k.startswith("image_encoder.")}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--check-fixtures", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    fixtures = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "sammed3d"

    with torch.no_grad():
        if args.check_fixtures:
            cfg = json.loads((fixtures / "model_config_tiny.json").read_text())
            p = torch.load(fixtures / "tiny_sammed3d.pth", weights_only=True)["model_state_dict"]
            d = args.check_fixtures / "input1_ellipsoid"
            vol = torch.from_numpy(np.load(d / "volume.npy"))
            diff = (encoder(vol, p, cfg) - torch.from_numpy(np.load(d / "image_embedding.npy"))).abs().max()
            print(f"tiny fixture embedding max abs diff {diff.item():.2e} (atol 5e-5)")
            assert diff.item() <= 5e-5

        cfg = json.loads((fixtures / "model_config_vit_b_ori.json").read_text())
        keys = json.loads((fixtures / "state_dict_keys_vit_b_ori.json").read_text())["keys"]
        p = random_encoder_params(cfg, keys)
        s = cfg["img_size"]
        vol = torch.randn(1, 1, s, s, s)
        start = time.perf_counter()
        encoder(vol, p, cfg)
        print(f"warm-up {time.perf_counter() - start:.2f} s", flush=True)
        for run in range(args.runs):
            start, cpu_start = time.perf_counter(), time.process_time()
            encoder(vol, p, cfg)
            print(f"torch encoder vit_b_ori {s}^3 run {run}: {time.perf_counter() - start:.3f} s wall, "
                  f"{time.process_time() - cpu_start:.2f} s CPU ({torch.get_num_threads()} threads)",
                  flush=True)


if __name__ == "__main__":
    main()
