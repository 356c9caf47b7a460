"""The DDPM U-Net (Ho et al. 2020), mirrored parameter-for-parameter by src/model/unet.rs.

Parameter names are the contract between this file and the Rust loader: change one, change
both, and regenerate the parity fixture (train/golden.py).
"""
import json
import math
from dataclasses import dataclass, field, asdict

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class Config:
    in_channels: int = 3
    ch: int = 128
    ch_mult: list = field(default_factory=lambda: [1, 2, 2, 2])
    num_res_blocks: int = 2
    attn_resolutions: list = field(default_factory=lambda: [16])
    dropout: float = 0.1
    resolution: int = 32
    num_groups: int = 32
    # Improved DDPM (Nichol & Dhariwal 2021): the network also outputs v (in_channels more
    # output channels); the reverse variance is exp(f log beta + (1 - f) log beta_tilde),
    # f = (v + 1) / 2, per dimension.
    learn_sigma: bool = False

    def to_json(self):
        return json.dumps(asdict(self), indent=2)

    @staticmethod
    def from_dict(d):
        return Config(**d)


def widen_to_learned_sigma(sd, in_channels=3):
    """A state dict of an eps-only network made a learn_sigma one: the extra output channels of
    conv_out start at zero (v = 0, f = 1/2), the eps channels keep their weights."""
    sd = dict(sd)
    for k in ("conv_out.weight", "conv_out.bias"):
        w = sd[k]
        if w.shape[0] == in_channels:
            sd[k] = torch.cat([w, torch.zeros_like(w)], dim=0)
    return sd


def timestep_embedding(t, dim):
    """Sinusoidal embedding as in the paper's code (tensor2tensor order: sin then cos)."""
    half = dim // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / (half - 1))
    args = t.float()[:, None] * freq[None, :]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class ResBlock(nn.Module):
    def __init__(self, cin, cout, temb_ch, dropout, groups):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=1e-6)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.temb_proj = nn.Linear(temb_ch, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=1e-6)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        if self.nin_shortcut is not None:
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    def __init__(self, c, groups):
        super().__init__()
        self.norm = nn.GroupNorm(groups, c, eps=1e-6)
        self.q = nn.Conv2d(c, c, 1)
        self.k = nn.Conv2d(c, c, 1)
        self.v = nn.Conv2d(c, c, 1)
        self.proj_out = nn.Conv2d(c, c, 1)

    def forward(self, x):
        b, c, hh, ww = x.shape
        h = self.norm(x)
        q = self.q(h).reshape(b, c, hh * ww).transpose(1, 2)  # b, n, c
        k = self.k(h).reshape(b, c, hh * ww)  # b, c, n
        v = self.v(h).reshape(b, c, hh * ww).transpose(1, 2)  # b, n, c
        w = torch.softmax(torch.bmm(q, k) * (c ** -0.5), dim=-1)  # b, n, n
        o = torch.bmm(w, v).transpose(1, 2).reshape(b, c, hh, ww)
        return x + self.proj_out(o)


class Level(nn.Module):
    def __init__(self):
        super().__init__()
        self.res = nn.ModuleList()
        self.attn = nn.ModuleList()


class UNet(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        ch, g = cfg.ch, cfg.num_groups
        temb_ch = 4 * ch
        self.temb_dense0 = nn.Linear(ch, temb_ch)
        self.temb_dense1 = nn.Linear(temb_ch, temb_ch)
        self.conv_in = nn.Conv2d(cfg.in_channels, ch, 3, padding=1)
        res = cfg.resolution
        hs_ch = [ch]
        cur = ch
        self.down = nn.ModuleList()
        for i, m in enumerate(cfg.ch_mult):
            lvl = Level()
            for _ in range(cfg.num_res_blocks):
                lvl.res.append(ResBlock(cur, ch * m, temb_ch, cfg.dropout, g))
                cur = ch * m
                if res in cfg.attn_resolutions:
                    lvl.attn.append(AttnBlock(cur, g))
                hs_ch.append(cur)
            if i != len(cfg.ch_mult) - 1:
                lvl.downsample = nn.Conv2d(cur, cur, 3, stride=2, padding=1)
                res //= 2
                hs_ch.append(cur)
            self.down.append(lvl)
        self.mid_res0 = ResBlock(cur, cur, temb_ch, cfg.dropout, g)
        self.mid_attn = AttnBlock(cur, g)
        self.mid_res1 = ResBlock(cur, cur, temb_ch, cfg.dropout, g)
        self.up = nn.ModuleList()
        for i, m in reversed(list(enumerate(cfg.ch_mult))):
            lvl = Level()
            for _ in range(cfg.num_res_blocks + 1):
                lvl.res.append(ResBlock(cur + hs_ch.pop(), ch * m, temb_ch, cfg.dropout, g))
                cur = ch * m
                if res in cfg.attn_resolutions:
                    lvl.attn.append(AttnBlock(cur, g))
            if i != 0:
                lvl.upsample = nn.Conv2d(cur, cur, 3, padding=1)
                res *= 2
            self.up.insert(0, lvl)  # up[i] is level i, as in the paper's code
        assert not hs_ch
        self.norm_out = nn.GroupNorm(g, cur, eps=1e-6)
        out_ch = cfg.in_channels * (2 if cfg.learn_sigma else 1)
        self.conv_out = nn.Conv2d(cur, out_ch, 3, padding=1)

    def forward(self, x, t):
        temb = timestep_embedding(t, self.cfg.ch)
        temb = self.temb_dense1(F.silu(self.temb_dense0(temb)))
        hs = [self.conv_in(x)]
        for i, lvl in enumerate(self.down):
            for j, rb in enumerate(lvl.res):
                h = rb(hs[-1], temb)
                if len(lvl.attn) > 0:
                    h = lvl.attn[j](h)
                hs.append(h)
            if hasattr(lvl, "downsample"):
                hs.append(lvl.downsample(hs[-1]))
        h = hs[-1]
        h = self.mid_res1(self.mid_attn(self.mid_res0(h, temb)), temb)
        for i in reversed(range(len(self.up))):
            lvl = self.up[i]
            for j, rb in enumerate(lvl.res):
                h = rb(torch.cat([h, hs.pop()], dim=1), temb)
                if len(lvl.attn) > 0:
                    h = lvl.attn[j](h)
            if hasattr(lvl, "upsample"):
                h = lvl.upsample(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        assert not hs
        return self.conv_out(F.silu(self.norm_out(h)))


def num_params(model):
    return sum(p.numel() for p in model.parameters())
