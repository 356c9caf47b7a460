//! The DDPM U-Net (Ho et al. 2020) in candle, parameter-for-parameter equal to
//! `train/model.py` (names mirror the PyTorch state dict through `vb.pp`).

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{conv2d, group_norm, linear, Conv2d, Conv2dConfig, GroupNorm, Linear, VarBuilder};

use super::Config;
use crate::error::Result;

fn conv3(cin: usize, cout: usize, stride: usize, vb: VarBuilder) -> candle_core::Result<Conv2d> {
    let cfg = Conv2dConfig { padding: 1, stride, ..Default::default() };
    conv2d(cin, cout, 3, cfg, vb)
}

fn conv1(cin: usize, cout: usize, vb: VarBuilder) -> candle_core::Result<Conv2d> {
    conv2d(cin, cout, 1, Default::default(), vb)
}

/// Residual block with the time embedding added after the first convolution.
#[derive(Debug)]
struct ResBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    temb_proj: Linear,
    norm2: GroupNorm,
    conv2: Conv2d,
    nin_shortcut: Option<Conv2d>,
}

impl ResBlock {
    fn new(cin: usize, cout: usize, temb_ch: usize, groups: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            norm1: group_norm(groups, cin, 1e-6, vb.pp("norm1"))?,
            conv1: conv3(cin, cout, 1, vb.pp("conv1"))?,
            temb_proj: linear(temb_ch, cout, vb.pp("temb_proj"))?,
            norm2: group_norm(groups, cout, 1e-6, vb.pp("norm2"))?,
            conv2: conv3(cout, cout, 1, vb.pp("conv2"))?,
            nin_shortcut: if cin != cout { Some(conv1(cin, cout, vb.pp("nin_shortcut"))?) } else { None },
        })
    }

    /// `temb_act` is SiLU(temb), shared by all blocks.
    fn forward(&self, x: &Tensor, temb_act: &Tensor) -> candle_core::Result<Tensor> {
        let h = self.conv1.forward(&self.norm1.forward(x)?.silu()?)?;
        let t = self.temb_proj.forward(temb_act)?.unsqueeze(2)?.unsqueeze(3)?;
        let h = h.broadcast_add(&t)?;
        let h = self.conv2.forward(&self.norm2.forward(&h)?.silu()?)?;
        let x = match &self.nin_shortcut {
            Some(c) => c.forward(x)?,
            None => x.clone(),
        };
        x + h
    }
}

/// Single-head self-attention over all positions.
#[derive(Debug)]
struct AttnBlock {
    norm: GroupNorm,
    q: Conv2d,
    k: Conv2d,
    v: Conv2d,
    proj_out: Conv2d,
}

impl AttnBlock {
    fn new(c: usize, groups: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            norm: group_norm(groups, c, 1e-6, vb.pp("norm"))?,
            q: conv1(c, c, vb.pp("q"))?,
            k: conv1(c, c, vb.pp("k"))?,
            v: conv1(c, c, vb.pp("v"))?,
            proj_out: conv1(c, c, vb.pp("proj_out"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, c, hh, ww) = x.dims4()?;
        let h = self.norm.forward(x)?;
        let q = self.q.forward(&h)?.reshape((b, c, hh * ww))?.transpose(1, 2)?.contiguous()?;
        let k = self.k.forward(&h)?.reshape((b, c, hh * ww))?.contiguous()?;
        let v = self.v.forward(&h)?.reshape((b, c, hh * ww))?.transpose(1, 2)?.contiguous()?;
        let w = (q.matmul(&k)? * (c as f64).powf(-0.5))?;
        let w = candle_nn::ops::softmax_last_dim(&w)?;
        let o = w.matmul(&v)?.transpose(1, 2)?.reshape((b, c, hh, ww))?;
        x + self.proj_out.forward(&o)?
    }
}

#[derive(Debug)]
struct Level {
    res: Vec<ResBlock>,
    attn: Vec<AttnBlock>,
    resample: Option<Conv2d>,
}

/// The U-Net ε_θ(x_t, t).
#[derive(Debug)]
pub struct UNet {
    cfg: Config,
    temb_dense0: Linear,
    temb_dense1: Linear,
    conv_in: Conv2d,
    down: Vec<Level>,
    mid_res0: ResBlock,
    mid_attn: AttnBlock,
    mid_res1: ResBlock,
    up: Vec<Level>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
    device: Device,
}

impl UNet {
    /// Builds the network; weights come from `vb` (names as in `train/model.py`).
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let ch = cfg.ch;
        let g = cfg.num_groups;
        let temb_ch = 4 * ch;
        let temb_dense0 = linear(ch, temb_ch, vb.pp("temb_dense0"))?;
        let temb_dense1 = linear(temb_ch, temb_ch, vb.pp("temb_dense1"))?;
        let conv_in = conv3(cfg.in_channels, ch, 1, vb.pp("conv_in"))?;
        let mut res = cfg.resolution;
        let mut hs_ch = vec![ch];
        let mut cur = ch;
        let mut down = Vec::new();
        let nl = cfg.ch_mult.len();
        for (i, &m) in cfg.ch_mult.iter().enumerate() {
            let vbl = vb.pp("down").pp(i);
            let mut lvl = Level { res: vec![], attn: vec![], resample: None };
            for j in 0..cfg.num_res_blocks {
                lvl.res.push(ResBlock::new(cur, ch * m, temb_ch, g, vbl.pp("res").pp(j))?);
                cur = ch * m;
                if cfg.attn_resolutions.contains(&res) {
                    lvl.attn.push(AttnBlock::new(cur, g, vbl.pp("attn").pp(j))?);
                }
                hs_ch.push(cur);
            }
            if i != nl - 1 {
                lvl.resample = Some(conv3(cur, cur, 2, vbl.pp("downsample"))?);
                res /= 2;
                hs_ch.push(cur);
            }
            down.push(lvl);
        }
        let mid_res0 = ResBlock::new(cur, cur, temb_ch, g, vb.pp("mid_res0"))?;
        let mid_attn = AttnBlock::new(cur, g, vb.pp("mid_attn"))?;
        let mid_res1 = ResBlock::new(cur, cur, temb_ch, g, vb.pp("mid_res1"))?;
        let mut up: Vec<Option<Level>> = (0..nl).map(|_| None).collect();
        for (i, &m) in cfg.ch_mult.iter().enumerate().rev() {
            let vbl = vb.pp("up").pp(i);
            let mut lvl = Level { res: vec![], attn: vec![], resample: None };
            for j in 0..=cfg.num_res_blocks {
                let skip = hs_ch.pop().expect("skip channels");
                lvl.res.push(ResBlock::new(cur + skip, ch * m, temb_ch, g, vbl.pp("res").pp(j))?);
                cur = ch * m;
                if cfg.attn_resolutions.contains(&res) {
                    lvl.attn.push(AttnBlock::new(cur, g, vbl.pp("attn").pp(j))?);
                }
            }
            if i != 0 {
                lvl.resample = Some(conv3(cur, cur, 1, vbl.pp("upsample"))?);
                res *= 2;
            }
            up[i] = Some(lvl);
        }
        let up = up.into_iter().map(|l| l.expect("level")).collect();
        let norm_out = group_norm(g, cur, 1e-6, vb.pp("norm_out"))?;
        let conv_out = conv3(cur, cfg.out_channels(), 1, vb.pp("conv_out"))?;
        Ok(Self {
            cfg: cfg.clone(),
            temb_dense0,
            temb_dense1,
            conv_in,
            down,
            mid_res0,
            mid_attn,
            mid_res1,
            up,
            norm_out,
            conv_out,
            device: vb.device().clone(),
        })
    }

    /// The configuration this network was built from.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Sinusoidal embedding of `t` (one value per batch element), sin half then cos half.
    fn timestep_embedding(&self, t: &[f32]) -> candle_core::Result<Tensor> {
        let dim = self.cfg.ch;
        let half = dim / 2;
        let mut out = Vec::with_capacity(t.len() * dim);
        let scale = -(10000f32.ln()) / (half as f32 - 1.0);
        let freqs: Vec<f32> = (0..half).map(|i| (scale * i as f32).exp()).collect();
        for &tv in t {
            out.extend(freqs.iter().map(|f| (tv * f).sin()));
            out.extend(freqs.iter().map(|f| (tv * f).cos()));
        }
        Tensor::from_vec(out, (t.len(), dim), &self.device)
    }

    /// ε_θ for a batch `x` [n, c, h, w] at times `t` (one per image).
    pub fn forward(&self, x: &Tensor, t: &[f32]) -> Result<Tensor> {
        let temb = self.timestep_embedding(t)?;
        let temb = self.temb_dense1.forward(&self.temb_dense0.forward(&temb)?.silu()?)?;
        let temb_act = temb.silu()?;
        let mut hs = vec![self.conv_in.forward(x)?];
        for lvl in &self.down {
            for (j, rb) in lvl.res.iter().enumerate() {
                let mut h = rb.forward(hs.last().expect("hs"), &temb_act)?;
                if let Some(a) = lvl.attn.get(j) {
                    h = a.forward(&h)?;
                }
                hs.push(h);
            }
            if let Some(ds) = &lvl.resample {
                let h = ds.forward(hs.last().expect("hs"))?;
                hs.push(h);
            }
        }
        let mut h = hs.last().expect("hs").clone();
        h = self.mid_res0.forward(&h, &temb_act)?;
        h = self.mid_attn.forward(&h)?;
        h = self.mid_res1.forward(&h, &temb_act)?;
        for lvl in self.up.iter().rev() {
            for (j, rb) in lvl.res.iter().enumerate() {
                let skip = hs.pop().expect("skip");
                h = rb.forward(&Tensor::cat(&[&h, &skip], 1)?, &temb_act)?;
                if let Some(a) = lvl.attn.get(j) {
                    h = a.forward(&h)?;
                }
            }
            if let Some(us) = &lvl.resample {
                let (_, _, hh, ww) = h.dims4()?;
                h = us.forward(&h.upsample_nearest2d(hh * 2, ww * 2)?)?;
            }
        }
        let out = self.conv_out.forward(&self.norm_out.forward(&h)?.silu()?)?;
        debug_assert_eq!(out.dtype(), DType::F32);
        let _ = D::Minus1;
        Ok(out)
    }
}
