"""Writes tests/fixtures/nets/: a narrow V-Net and SSL4MIS-style 3D U-Net in PyTorch, their
parameters and buffers flattened in state-dict order (without num_batches_tracked), an input
and the outputs the Rust ports must reproduce.

Run with the scratch venv: python scripts/make_nets_fixtures.py tests/fixtures/nets
"""

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from mt_step_reference import VNet  # noqa: E402


def unet_conv(cin, cout):
    layers = []
    for c in (cin, cout):
        layers += [nn.Conv3d(c, cout, 3, padding=1), nn.InstanceNorm3d(cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class UNet3D(nn.Module):
    """SSL4MIS unet_3D layout, written from its description (notes §3.2)."""

    def __init__(self, width, classes, in_channels=1):
        super().__init__()
        f = [width * k for k in (1, 2, 4, 8, 16)]
        self.conv1, self.conv2 = unet_conv(in_channels, f[0]), unet_conv(f[0], f[1])
        self.conv3, self.conv4 = unet_conv(f[1], f[2]), unet_conv(f[2], f[3])
        self.center = unet_conv(f[3], f[4])
        self.up_concat4, self.up_concat3 = unet_conv(f[4] + f[3], f[3]), unet_conv(f[3] + f[2], f[2])
        self.up_concat2, self.up_concat1 = unet_conv(f[2] + f[1], f[1]), unet_conv(f[1] + f[0], f[0])
        self.final = nn.Conv3d(f[0], classes, 1)

    def forward(self, x):
        c1 = self.conv1(x)
        c2 = self.conv2(F.max_pool3d(c1, 2))
        c3 = self.conv3(F.max_pool3d(c2, 2))
        c4 = self.conv4(F.max_pool3d(c3, 2))
        center = self.center(F.max_pool3d(c4, 2))
        up = lambda t: F.interpolate(t, scale_factor=2, mode="trilinear")  # noqa: E731
        u4 = self.up_concat4(torch.cat([c4, up(center)], 1))
        u3 = self.up_concat3(torch.cat([c3, up(u4)], 1))
        u2 = self.up_concat2(torch.cat([c2, up(u3)], 1))
        u1 = self.up_concat1(torch.cat([c1, up(u2)], 1))
        return self.final(u1)


def flat_state(model):
    return np.concatenate([v.detach().reshape(-1).numpy().astype(np.float32)
                           for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")])


def main(out):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    x = torch.randn(2, 1, 32, 16, 16)
    np.save(out / "input_2x1x32x16x16.npy", x.numpy())

    vnet = VNet(width=2, classes=2)
    vnet.dropout.p = 0.0
    vnet.train()
    with torch.no_grad():
        for _ in range(3):  # move the running statistics away from (0, 1)
            vnet(torch.randn(2, 1, 32, 16, 16) * 2 + 0.5)
        np.save(out / "vnet_w2_state.npy", flat_state(vnet))
        # eval first: a train-mode forward would move the running statistics again.
        vnet.eval()
        np.save(out / "vnet_w2_eval_out.npy", vnet(x).numpy())
        vnet.train()
        np.save(out / "vnet_w2_train_out.npy", vnet(x).numpy())

    unet = UNet3D(width=2, classes=3)
    with torch.no_grad():
        np.save(out / "unet3d_w2_state.npy", flat_state(unet))
        np.save(out / "unet3d_w2_out.npy", unet(x).numpy())


if __name__ == "__main__":
    main(sys.argv[1])
