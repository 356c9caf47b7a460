//! Fast, deterministic CPU inference of the U-Net ([`super::unet::UNet`], `train/model.py`).
//!
//! Same weights and the same function as the candle network (outputs agree to ~1e-5),
//! computed with the kernels of [`crate::kernels`]: channels-last maps, convolutions as GEMMs
//! over zero-padded inputs with pre-packed weights (nearest-×2 upsampling + 3×3 convolution
//! as four 2×2 convolutions; the residual blocks' 3×3 convolutions by Winograd F(2×2, 3×3),
//! [`crate::kernels::winograd`], since format version 10), fused GroupNorm+SiLU, buffers reused across calls, and groups
//! of [`GROUP`] images run layer by layer so each weight panel serves several images.
//!
//! Determinism: an image's ε is a fixed sequence of IEEE operations, bit-identical whatever
//! the batch around it, the thread count, and whether the AVX-512 or the portable kernels
//! run (no libm either: see [`crate::kernels`]). Batches are parallelised across groups of
//! images (rayon); a single image splits the rows of each GEMM between threads, which does
//! not change any output's arithmetic.
//!
//! Construction: [`super::Model::from_bytes`] builds one from the weight map it loads
//! (`FastUNet::from_tensors(&tensors, &cfg)`), and [`super::Model::eps`] runs it.

use std::collections::HashMap;
use std::sync::Mutex;

use candle_core::{DType, Tensor};
use rayon::prelude::*;

use super::Config;
use crate::error::{Error, Result};
use crate::kernels::{gemm, ops, winograd, AVec, Backend, Init, Rows};

const GN_EPS: f32 = 1e-6;

/// Images a thread computes together, layer by layer (weights reused across them; no effect
/// on the results).
pub const GROUP: usize = 4;

#[derive(Debug)]
struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

/// A convolution (3×3, padding 1, or 1×1) with weights packed as `[k*k*cin, cout]`.
#[derive(Debug)]
struct Conv {
    cin: usize,
    cout: usize,
    w: AVec,
    b: Vec<f32>,
    /// Winograd F(2×2, 3×3) weights `[16][cin][cout]` ([`winograd::transform_weights`]) of a
    /// 3×3 convolution that runs at stride 1 (the residual blocks' convolutions)
    wino: Option<AVec>,
}

/// Nearest ×2 upsampling followed by a 3×3 convolution, computed as four 2×2 convolutions
/// of the low-resolution map, one per output phase `(y % 2, x % 2)`, whose weights are the
/// 3×3 weights summed over the taps that read the same source pixel (4/9 of the work).
#[derive(Debug)]
struct UpConv {
    cin: usize,
    cout: usize,
    /// per phase `py * 2 + px`: `[(a * 2 + b) * cin + ci, cout]`
    w: [AVec; 4],
    b: Vec<f32>,
}

impl UpConv {
    fn new(c: Conv) -> Self {
        // source row offset a ∈ {0, 1} of phase p gathers kernel rows S[p][a]
        const S: [[&[usize]; 2]; 2] = [[&[0], &[1, 2]], [&[0, 1], &[2]]];
        let (cin, cout) = (c.cin, c.cout);
        let w = std::array::from_fn(|ph| {
            let (py, px) = (ph / 2, ph % 2);
            let mut w = vec![0f32; 4 * cin * cout];
            for a in 0..2 {
                for b in 0..2 {
                    for ci in 0..cin {
                        for co in 0..cout {
                            let mut s = 0f32;
                            for &ky in S[py][a] {
                                for &kx in S[px][b] {
                                    s += c.w[((ky * 3 + kx) * cin + ci) * cout + co];
                                }
                            }
                            w[((a * 2 + b) * cin + ci) * cout + co] = s;
                        }
                    }
                }
            }
            AVec::from_slice(&w)
        });
        Self { cin, cout, w, b: c.b }
    }
}

#[derive(Debug)]
struct Res {
    cin: usize,
    cout: usize,
    norm1: Norm,
    conv1: Conv,
    /// `[temb_ch, cout]`
    temb_w: Vec<f32>,
    temb_b: Vec<f32>,
    norm2: Norm,
    conv2: Conv,
    nin: Option<Conv>,
    /// index into the per-call table of conv1 biases (conv1.b + temb_proj(temb))
    tidx: usize,
}

#[derive(Debug)]
struct Attn {
    c: usize,
    norm: Norm,
    /// `[c, 3c]`: q (pre-scaled by c^-1/2), k, v
    wqkv: AVec,
    bqkv: Vec<f32>,
    proj: Conv,
}

#[derive(Debug)]
struct Level {
    res: Vec<Res>,
    attn: Vec<Attn>,
    resample: Option<Conv>,
    upsample: Option<UpConv>,
}

/// Per-thread scratch buffers, reused across images and calls.
struct Ws {
    /// images these buffers hold
    cap: usize,
    hs: Vec<AVec>,
    pad: AVec,
    a: AVec,
    b: AVec,
    t: AVec,
    cat: AVec,
    qkv: AVec,
    kt: AVec,
    s: AVec,
    o: AVec,
    scale: Vec<f32>,
    shift: Vec<f32>,
    gtmp: Vec<f32>,
}

/// The U-Net for inference on the fast kernels.
pub struct FastUNet {
    cfg: Config,
    be: Backend,
    temb0: Conv,
    temb1: Conv,
    conv_in: Conv,
    down: Vec<Level>,
    mid_res0: Res,
    mid_attn: Attn,
    mid_res1: Res,
    up: Vec<Level>,
    norm_out: Norm,
    conv_out: Conv,
    /// conv_out's weights as `[cout][9][cin]` (for [`ops::conv3_few_out`])
    conv_out_w: AVec,
    nres: usize,
    /// channels of the skip maps, in push order
    hs_ch: Vec<(usize, usize)>,
    max_map: usize,
    max_pad: usize,
    max_attn: (usize, usize),
    pool: Mutex<Vec<Ws>>,
}

impl std::fmt::Debug for FastUNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastUNet").field("cfg", &self.cfg).field("backend", &self.be).finish_non_exhaustive()
    }
}

struct Loader<'a> {
    t: &'a HashMap<String, Tensor>,
}

impl Loader<'_> {
    fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let t = self.t.get(name).ok_or_else(|| Error::Model(format!("missing weight {name}")))?;
        if t.dims() != shape {
            return Err(Error::Model(format!("weight {name}: shape {:?}, expected {shape:?}", t.dims())));
        }
        Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
    }

    fn norm(&self, p: &str, c: usize) -> Result<Norm> {
        Ok(Norm { gamma: self.get(&format!("{p}.weight"), &[c])?, beta: self.get(&format!("{p}.bias"), &[c])? })
    }

    /// Conv2d `[cout, cin, k, k]` → `[(ky*k+kx)*cin + ci, cout]`.
    fn conv(&self, p: &str, cin: usize, cout: usize, k: usize) -> Result<Conv> {
        let w = self.get(&format!("{p}.weight"), &[cout, cin, k, k])?;
        let b = self.get(&format!("{p}.bias"), &[cout])?;
        let mut pw = vec![0f32; k * k * cin * cout];
        for co in 0..cout {
            for ci in 0..cin {
                for t in 0..k * k {
                    pw[(t * cin + ci) * cout + co] = w[(co * cin + ci) * k * k + t];
                }
            }
        }
        Ok(Conv { cin, cout, w: AVec::from_slice(&pw), b, wino: None })
    }

    /// A 3×3 convolution run at stride 1: with its Winograd weights.
    fn conv_wino(&self, p: &str, cin: usize, cout: usize) -> Result<Conv> {
        let mut c = self.conv(p, cin, cout, 3)?;
        c.wino = Some(AVec::from_slice(&winograd::transform_weights(&c.w, cin, cout)));
        Ok(c)
    }

    /// Linear `[out, in]` → `[in, out]`.
    fn linear(&self, p: &str, cin: usize, cout: usize) -> Result<Conv> {
        let w = self.get(&format!("{p}.weight"), &[cout, cin])?;
        let b = self.get(&format!("{p}.bias"), &[cout])?;
        let mut pw = vec![0f32; cin * cout];
        for co in 0..cout {
            for ci in 0..cin {
                pw[ci * cout + co] = w[co * cin + ci];
            }
        }
        Ok(Conv { cin, cout, w: AVec::from_slice(&pw), b, wino: None })
    }

    fn res(&self, p: &str, cin: usize, cout: usize, temb_ch: usize, tidx: usize) -> Result<Res> {
        let tl = self.linear(&format!("{p}.temb_proj"), temb_ch, cout)?;
        Ok(Res {
            cin,
            cout,
            norm1: self.norm(&format!("{p}.norm1"), cin)?,
            conv1: self.conv_wino(&format!("{p}.conv1"), cin, cout)?,
            temb_w: tl.w.to_vec(),
            temb_b: tl.b,
            norm2: self.norm(&format!("{p}.norm2"), cout)?,
            conv2: self.conv_wino(&format!("{p}.conv2"), cout, cout)?,
            nin: if cin != cout { Some(self.conv(&format!("{p}.nin_shortcut"), cin, cout, 1)?) } else { None },
            tidx,
        })
    }

    fn attn(&self, p: &str, c: usize) -> Result<Attn> {
        let q = self.conv(&format!("{p}.q"), c, c, 1)?;
        let k = self.conv(&format!("{p}.k"), c, c, 1)?;
        let v = self.conv(&format!("{p}.v"), c, c, 1)?;
        let scale = 1.0 / (c as f32).sqrt();
        let mut wqkv = vec![0f32; c * 3 * c];
        for ci in 0..c {
            for co in 0..c {
                wqkv[ci * 3 * c + co] = q.w[ci * c + co] * scale;
                wqkv[ci * 3 * c + c + co] = k.w[ci * c + co];
                wqkv[ci * 3 * c + 2 * c + co] = v.w[ci * c + co];
            }
        }
        let mut bqkv: Vec<f32> = q.b.iter().map(|b| b * scale).collect();
        bqkv.extend_from_slice(&k.b);
        bqkv.extend_from_slice(&v.b);
        Ok(Attn { c, norm: self.norm(&format!("{p}.norm"), c)?, wqkv: AVec::from_slice(&wqkv), bqkv, proj: self.conv(&format!("{p}.proj_out"), c, c, 1)? })
    }
}

fn taps3(wp: usize, cin: usize) -> [isize; 9] {
    let mut t = [0isize; 9];
    for ky in 0..3 {
        for kx in 0..3 {
            t[ky * 3 + kx] = ((ky * wp + kx) * cin) as isize;
        }
    }
    t
}

impl FastUNet {
    /// Builds the network from the weight tensors of `train/model.py`'s state dict (the map
    /// [`super::Model::from_bytes`] loads; any float dtype).
    pub fn from_tensors(tensors: &HashMap<String, Tensor>, cfg: &Config) -> Result<Self> {
        Self::with_backend(tensors, cfg, Backend::detect())
    }

    /// As [`FastUNet::from_tensors`] with a chosen kernel back-end (the results are the same;
    /// [`Backend::Scalar`] is for tests and CPUs without AVX-512).
    pub fn with_backend(tensors: &HashMap<String, Tensor>, cfg: &Config, be: Backend) -> Result<Self> {
        cfg.validate()?;
        let ld = Loader { t: tensors };
        let ch = cfg.ch;
        let temb_ch = 4 * ch;
        let temb0 = ld.linear("temb_dense0", ch, temb_ch)?;
        let temb1 = ld.linear("temb_dense1", temb_ch, temb_ch)?;
        let conv_in = ld.conv("conv_in", cfg.in_channels, ch, 3)?;
        let mut res = cfg.resolution;
        let mut hs_ch = vec![(ch, res)];
        let mut cur = ch;
        let mut nres = 0;
        let mut max_map = res * res * ch;
        let mut max_attn = (0, 0);
        let pd = |r: usize, c: usize| (r + 2) * (r + 2) * c;
        let mut max_pad = pd(res, cfg.in_channels.max(ch));
        let nl = cfg.ch_mult.len();
        let mut down = Vec::new();
        for (i, &m) in cfg.ch_mult.iter().enumerate() {
            let mut lvl = Level { res: vec![], attn: vec![], resample: None, upsample: None };
            for j in 0..cfg.num_res_blocks {
                lvl.res.push(ld.res(&format!("down.{i}.res.{j}"), cur, ch * m, temb_ch, nres)?);
                max_pad = max_pad.max(pd(res, cur.max(ch * m)));
                nres += 1;
                cur = ch * m;
                max_map = max_map.max(res * res * cur);
                if cfg.attn_resolutions.contains(&res) {
                    lvl.attn.push(ld.attn(&format!("down.{i}.attn.{j}"), cur)?);
                    max_attn = (max_attn.0.max(res * res), max_attn.1.max(cur));
                }
                hs_ch.push((cur, res));
            }
            if i != nl - 1 {
                lvl.resample = Some(ld.conv(&format!("down.{i}.downsample"), cur, cur, 3)?);
                res /= 2;
                hs_ch.push((cur, res));
            }
            down.push(lvl);
        }
        let mid_res0 = ld.res("mid_res0", cur, cur, temb_ch, nres)?;
        let mid_attn = ld.attn("mid_attn", cur)?;
        max_attn = (max_attn.0.max(res * res), max_attn.1.max(cur));
        let mid_res1 = ld.res("mid_res1", cur, cur, temb_ch, nres + 1)?;
        nres += 2;
        let mut skips = hs_ch.clone();
        let mut up: Vec<Option<Level>> = (0..nl).map(|_| None).collect();
        for (i, &m) in cfg.ch_mult.iter().enumerate().rev() {
            let mut lvl = Level { res: vec![], attn: vec![], resample: None, upsample: None };
            for j in 0..=cfg.num_res_blocks {
                let (skip, _) = skips.pop().expect("skip channels");
                max_map = max_map.max(res * res * (cur + skip));
                max_pad = max_pad.max(pd(res, (cur + skip).max(ch * m)));
                lvl.res.push(ld.res(&format!("up.{i}.res.{j}"), cur + skip, ch * m, temb_ch, nres)?);
                nres += 1;
                cur = ch * m;
                if cfg.attn_resolutions.contains(&res) {
                    lvl.attn.push(ld.attn(&format!("up.{i}.attn.{j}"), cur)?);
                    max_attn = (max_attn.0.max(res * res), max_attn.1.max(cur));
                }
            }
            if i != 0 {
                lvl.upsample = Some(UpConv::new(ld.conv(&format!("up.{i}.upsample"), cur, cur, 3)?));
                max_pad = max_pad.max(pd(res, cur));
                res *= 2;
            }
            up[i] = Some(lvl);
        }
        let up = up.into_iter().map(|l| l.expect("level")).collect();
        let norm_out = ld.norm("norm_out", cur)?;
        let conv_out = ld.conv("conv_out", cur, cfg.out_channels(), 3)?;
        let mut conv_out_w = vec![0f32; conv_out.w.len()];
        let (ci_n, co_n) = (conv_out.cin, conv_out.cout);
        for t in 0..9 {
            for ci in 0..ci_n {
                for co in 0..co_n {
                    conv_out_w[(co * 9 + t) * ci_n + ci] = conv_out.w[(t * ci_n + ci) * co_n + co];
                }
            }
        }
        Ok(Self {
            cfg: cfg.clone(),
            be,
            temb0,
            temb1,
            conv_in,
            down,
            mid_res0,
            mid_attn,
            mid_res1,
            up,
            norm_out,
            conv_out,
            conv_out_w: AVec::from_slice(&conv_out_w),
            nres,
            hs_ch,
            max_map,
            max_pad,
            max_attn,
            pool: Mutex::new(Vec::new()),
        })
    }

    /// The configuration this network was built from.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The kernel back-end in use.
    pub fn backend(&self) -> Backend {
        self.be
    }

    /// ε_θ(x, t) for `n` images (NCHW f32, row-major), all at model time `t`.
    pub fn eps(&self, x: &[f32], n: usize, t: usize) -> Result<Vec<f32>> {
        let per = self.cfg.in_channels * self.cfg.resolution * self.cfg.resolution;
        let mut out = vec![0f32; n * per];
        self.forward_into(x, n, t, self.cfg.in_channels, &mut out)?;
        Ok(out)
    }

    /// As [`FastUNet::eps`], writing into `out` (`n` images).
    pub fn eps_into(&self, x: &[f32], n: usize, t: usize, out: &mut [f32]) -> Result<()> {
        self.forward_into(x, n, t, self.cfg.in_channels, out)
    }

    /// Every output channel ([`Config::out_channels`]: ε, then v for a learned-variance
    /// network) for `n` images; the ε planes are bit-identical to [`FastUNet::eps`]'s (each
    /// output channel of the last convolution is computed on its own).
    pub fn predict(&self, x: &[f32], n: usize, t: usize) -> Result<Vec<f32>> {
        let outc = self.cfg.out_channels();
        let mut out = vec![0f32; n * outc * self.cfg.resolution * self.cfg.resolution];
        self.forward_into(x, n, t, outc, &mut out)?;
        Ok(out)
    }

    /// The first `outc` output channels for `n` images into `out`.
    fn forward_into(&self, x: &[f32], n: usize, t: usize, outc: usize, out: &mut [f32]) -> Result<()> {
        let rr = self.cfg.resolution * self.cfg.resolution;
        let per = self.cfg.in_channels * rr;
        let per_out = outc * rr;
        if x.len() != n * per || out.len() != n * per_out {
            return Err(Error::Parameter(format!("eps: got {} / {} values for {n} images", x.len(), out.len())));
        }
        if n == 0 {
            return Ok(());
        }
        let tb = self.temb_biases(t as f32);
        let threads = rayon::current_num_threads();
        if n == 1 || threads == 1 {
            // one thread: groups of GROUP images; one image on several threads: split rows
            let g = n.min(GROUP);
            let mut ws = self.take_ws(g);
            for (xi, oi) in x.chunks(g * per).zip(out.chunks_mut(g * per_out)) {
                self.forward_group(xi, oi, xi.len() / per, outc, &tb, &mut ws, threads > 1);
            }
            self.put_ws(ws);
        } else {
            let g = GROUP.min(n.div_ceil(threads));
            x.par_chunks(g * per).zip(out.par_chunks_mut(g * per_out)).for_each(|(xi, oi)| {
                let mut ws = self.take_ws(g);
                self.forward_group(xi, oi, xi.len() / per, outc, &tb, &mut ws, false);
                self.put_ws(ws);
            });
        }
        Ok(())
    }

    /// Buffers for `g` images from the pool (or new ones).
    fn take_ws(&self, g: usize) -> Ws {
        let w = self.pool.lock().ok().and_then(|mut p| p.iter().position(|w| w.cap >= g).map(|i| p.swap_remove(i)));
        w.unwrap_or_else(|| self.new_ws(g))
    }

    fn put_ws(&self, ws: Ws) {
        if let Ok(mut p) = self.pool.lock() {
            p.push(ws);
        }
    }

    /// Buffers for a group of `g` images (≈ 2.4 MB an image for the shipped config).
    fn new_ws(&self, g: usize) -> Ws {
        let cmax = self.max_map;
        let (an, ac) = self.max_attn;
        let chmax = 8 * self.cfg.ch * self.cfg.ch_mult.iter().max().copied().unwrap_or(1);
        Ws {
            cap: g,
            hs: self.hs_ch.iter().map(|&(c, res)| AVec::zeros(g * c * res * res)).collect(),
            pad: AVec::zeros(g * self.max_pad),
            a: AVec::zeros(g * cmax),
            b: AVec::zeros(g * cmax),
            t: AVec::zeros(g * cmax),
            cat: AVec::default(), // only for identity shortcuts over a concatenation (grown on use)
            qkv: AVec::zeros(g * an * 3 * ac),
            kt: AVec::zeros(an * ac),
            s: AVec::zeros(an * an),
            o: AVec::zeros(g * an * ac),
            scale: vec![0f32; chmax],
            shift: vec![0f32; chmax],
            gtmp: Vec::with_capacity(2 * chmax),
        }
    }

    /// Per-call table: for each residual block, conv1's bias + temb_proj(SiLU(temb(t))).
    fn temb_biases(&self, t: f32) -> Vec<Vec<f32>> {
        let be = self.be;
        let dim = self.cfg.ch;
        let half = dim / 2;
        // as UNet::timestep_embedding, with platform-independent exp/sin/cos
        const LN_1E4: f32 = 9.210_340_5; // f32 nearest ln(10000)
        let scale = -LN_1E4 / (half as f32 - 1.0);
        let freqs: Vec<f32> = (0..half).map(|i| ops::exp_scalar(scale * i as f32)).collect();
        let sc: Vec<(f32, f32)> = freqs.iter().map(|f| ops::sin_cos(t * f)).collect();
        let mut emb: Vec<f32> = sc.iter().map(|p| p.0).collect();
        emb.extend(sc.iter().map(|p| p.1));
        let dense = |l: &Conv, x: &[f32]| {
            let mut y = vec![0f32; l.cout];
            gemm(be, 1, l.cout, x, Rows::Strided { ld: l.cin }, &[0], l.cin, &l.w, l.cout, &mut y, Rows::Strided { ld: l.cout }, Init::Zero, Some(&l.b), false);
            y
        };
        let mut h = dense(&self.temb0, &emb);
        ops::silu_inplace(be, &mut h);
        let mut temb = dense(&self.temb1, &h);
        ops::silu_inplace(be, &mut temb);
        let mut out = vec![Vec::new(); self.nres];
        let mut fill = |r: &Res| {
            let mut y = vec![0f32; r.cout];
            gemm(be, 1, r.cout, &temb, Rows::Strided { ld: temb.len() }, &[0], temb.len(), &r.temb_w, r.cout, &mut y, Rows::Strided { ld: r.cout }, Init::Zero, Some(&r.temb_b), false);
            for (v, b) in y.iter_mut().zip(&r.conv1.b) {
                *v += b;
            }
            out[r.tidx] = y;
        };
        for l in self.down.iter().chain(self.up.iter()) {
            l.res.iter().for_each(&mut fill);
        }
        fill(&self.mid_res0);
        fill(&self.mid_res1);
        out
    }

    /// GroupNorm(+SiLU) of `g` maps (`r×r×c` each, `c` the channels of all `parts` together:
    /// their concatenation) into the interiors of the padded maps in `pad` (`(r+2)²c` each).
    #[allow(clippy::too_many_arguments)]
    fn norm_to_pad(&self, nm: &Norm, parts: &[(&[f32], usize)], r: usize, g: usize, silu: bool, pad: &mut [f32], sc: &mut [f32], sh: &mut [f32], gtmp: &mut Vec<f32>) {
        let be = self.be;
        let wp = r + 2;
        let npix = r * r;
        let c: usize = parts.iter().map(|p| p.1).sum();
        let pi = wp * wp * c;
        for gi in 0..g {
            let img: Vec<(&[f32], usize)> = parts.iter().map(|&(x, cp)| (&x[gi * npix * cp..(gi + 1) * npix * cp], cp)).collect();
            let pad = &mut pad[gi * pi..(gi + 1) * pi];
            ops::group_norm_affine_parts(be, &img, npix, self.cfg.num_groups, GN_EPS, &nm.gamma, &nm.beta, sc, sh, gtmp);
            ops::zero_border(pad, r, r, c);
            let mut q0 = 0;
            for &(x, cp) in &img {
                for y in 0..r {
                    let d = ((y + 1) * wp + 1) * c + q0;
                    ops::affine_act(be, &x[y * r * cp..], cp, &mut pad[d..], c, r, cp, &sc[q0..], &sh[q0..], silu);
                }
                q0 += cp;
            }
        }
    }

    /// 3×3 convolution (padding 1) with `stride` of `g` padded maps in `pad` (`r×r×cin`
    /// interiors) into `g` stacked HWC maps in `out`.
    #[allow(clippy::too_many_arguments)]
    fn conv3(&self, cv: &Conv, pad: &[f32], r: usize, stride: usize, g: usize, out: &mut [f32], init: Init, bias: &[f32], par: bool) {
        if let (Some(u), 1, 0) = (&cv.wino, stride, r % 2) {
            return winograd::conv3(self.be, u, cv.cin, cv.cout, pad, r, g, out, init, bias, par);
        }
        let ro = r / stride;
        let wp = r + 2;
        gemm(
            self.be,
            g * ro * ro,
            cv.cout,
            pad,
            Rows::Conv { w_out: ro, h_out: ro, img: wp * wp * cv.cin, wp, cin: cv.cin, stride },
            &taps3(wp, cv.cin),
            cv.cin,
            &cv.w,
            cv.cout,
            out,
            Rows::Strided { ld: cv.cout },
            init,
            Some(bias),
            par,
        );
    }

    /// Copies `g` HWC maps (`r×r×c`) into padded maps.
    fn pad_maps(x: &[f32], r: usize, c: usize, g: usize, pad: &mut [f32]) {
        let (xi, pi) = (r * r * c, (r + 2) * (r + 2) * c);
        for gi in 0..g {
            ops::pad_copy(&x[gi * xi..(gi + 1) * xi], r, r, c, &mut pad[gi * pi..(gi + 1) * pi]);
        }
    }

    /// Nearest ×2 upsampling + 3×3 convolution of `g` maps `x` (`r×r×cin`) into `out`
    /// (`2r×2r×cout` each).
    #[allow(clippy::too_many_arguments)]
    fn upconv(&self, uc: &UpConv, x: &[f32], r: usize, g: usize, pad: &mut [f32], out: &mut [f32], par: bool) {
        let (cin, cout) = (uc.cin, uc.cout);
        Self::pad_maps(x, r, cin, g, pad);
        let wp = r + 2;
        let taps = [0, cin as isize, (wp * cin) as isize, ((wp + 1) * cin) as isize];
        for (ph, w) in uc.w.iter().enumerate() {
            let (py, px) = (ph / 2, ph % 2);
            gemm(
                self.be,
                g * r * r,
                cout,
                &pad[(py * wp + px) * cin..],
                Rows::Conv { w_out: r, h_out: r, img: wp * wp * cin, wp, cin, stride: 1 },
                &taps,
                cin,
                w,
                cout,
                &mut out[(py * 2 * r + px) * cout..],
                Rows::Conv { w_out: r, h_out: r, img: 4 * r * r * cout, wp: 2 * r, cin: cout, stride: 2 },
                Init::Zero,
                Some(&uc.b),
                par,
            );
        }
    }

    /// Residual block on `g` maps: `x` (`r×r×cin` each: the channel concatenation of the
    /// `parts`) → `out` (`r×r×cout` each).
    #[allow(clippy::too_many_arguments)]
    fn res_block(&self, rb: &Res, parts: &[(&[f32], usize)], r: usize, g: usize, out: &mut [f32], tb: &[Vec<f32>], pad: &mut [f32], tmp: &mut [f32], sc: &mut [f32], sh: &mut [f32], gtmp: &mut Vec<f32>, par: bool) {
        let npix = g * r * r;
        let co = rb.cout;
        self.norm_to_pad(&rb.norm1, parts, r, g, true, pad, sc, sh, gtmp);
        self.conv3(&rb.conv1, pad, r, 1, g, tmp, Init::Zero, &tb[rb.tidx], par);
        self.norm_to_pad(&rb.norm2, &[(&tmp[..npix * co], co)], r, g, true, pad, sc, sh, gtmp);
        match &rb.nin {
            Some(nin) => {
                // the 1×1 shortcut as one GEMM per part, continuing the same FMA chains
                let mut k0 = 0;
                for (i, &(x, cp)) in parts.iter().enumerate() {
                    let (init, bias) = if i == 0 { (Init::Zero, Some(&nin.b[..])) } else { (Init::C, None) };
                    gemm(self.be, npix, co, x, Rows::Strided { ld: cp }, &[0], cp, &nin.w[k0 * co..], co, out, Rows::Strided { ld: co }, init, bias, par);
                    k0 += cp;
                }
                self.conv3(&rb.conv2, pad, r, 1, g, out, Init::C, &rb.conv2.b, par);
            }
            None => {
                assert_eq!(parts.len(), 1, "identity shortcut over a concatenation");
                self.conv3(&rb.conv2, pad, r, 1, g, out, Init::From(&parts[0].0[..npix * co]), &rb.conv2.b, par)
            }
        }
    }

    /// Self-attention block, in place on `g` maps `x` (`npix×c` each).
    #[allow(clippy::too_many_arguments)]
    fn attn_block(&self, at: &Attn, x: &mut [f32], npix: usize, g: usize, ws_t: &mut [f32], qkv: &mut [f32], kt: &mut [f32], s: &mut [f32], o: &mut [f32], sc: &mut [f32], sh: &mut [f32], gtmp: &mut Vec<f32>, par: bool) {
        let be = self.be;
        let c = at.c;
        let xi = npix * c;
        for gi in 0..g {
            let x = &x[gi * xi..(gi + 1) * xi];
            ops::group_norm_affine(be, x, npix, c, self.cfg.num_groups, GN_EPS, &at.norm.gamma, &at.norm.beta, sc, sh, gtmp);
            ops::affine_act(be, x, c, &mut ws_t[gi * xi..], c, npix, c, sc, sh, false);
        }
        gemm(be, g * npix, 3 * c, ws_t, Rows::Strided { ld: c }, &[0], c, &at.wqkv, 3 * c, qkv, Rows::Strided { ld: 3 * c }, Init::Zero, Some(&at.bqkv), par);
        for gi in 0..g {
            let q = &qkv[gi * 3 * xi..(gi + 1) * 3 * xi];
            ops::transpose(&q[c..], 3 * c, npix, c, kt, npix);
            gemm(be, npix, npix, q, Rows::Strided { ld: 3 * c }, &[0], c, kt, npix, s, Rows::Strided { ld: npix }, Init::Zero, None, par);
            ops::softmax_rows(be, s, npix, npix, npix);
            gemm(be, npix, c, s, Rows::Strided { ld: npix }, &[0], npix, &q[2 * c..], 3 * c, &mut o[gi * xi..], Rows::Strided { ld: c }, Init::Zero, None, par);
        }
        gemm(be, g * npix, c, o, Rows::Strided { ld: c }, &[0], c, &at.proj.w, c, x, Rows::Strided { ld: c }, Init::C, Some(&at.proj.b), par);
    }

    /// `g` images: `x` (NCHW, c×R×R each) → `out` (NCHW). Every layer runs on all `g` at
    /// once (larger GEMMs, weights reused); each output's arithmetic is the same as alone.
    /// `outc` ≤ [`Config::out_channels`] output channels are written, `outc`×R×R per image.
    #[allow(clippy::too_many_arguments)]
    fn forward_group(&self, x: &[f32], out: &mut [f32], g: usize, outc: usize, tb: &[Vec<f32>], ws: &mut Ws, par: bool) {
        let r0 = self.cfg.resolution;
        let cin = self.cfg.in_channels;
        let per = cin * r0 * r0;
        debug_assert!(g <= ws.cap);
        let Ws { hs, pad, a, b, t, cat, qkv, kt, s, o, scale: sc, shift: sh, gtmp, .. } = ws;
        // input → padded HWC
        let wp = r0 + 2;
        let pi = wp * wp * cin;
        for gi in 0..g {
            let (x, pad) = (&x[gi * per..(gi + 1) * per], &mut pad[gi * pi..(gi + 1) * pi]);
            ops::zero_border(pad, r0, r0, cin);
            for y in 0..r0 {
                for xx in 0..r0 {
                    for c in 0..cin {
                        pad[((y + 1) * wp + xx + 1) * cin + c] = x[(c * r0 + y) * r0 + xx];
                    }
                }
            }
        }
        self.conv3(&self.conv_in, pad, r0, 1, g, &mut hs[0], Init::Zero, &self.conv_in.b, par);
        let mut r = r0;
        let mut hi = 0; // index of the last pushed skip map
        for lvl in &self.down {
            for (j, rb) in lvl.res.iter().enumerate() {
                let (lo, hi_) = hs.split_at_mut(hi + 1);
                let xin = &lo[hi];
                let dst = &mut hi_[0];
                self.res_block(rb, &[(xin, rb.cin)], r, g, dst, tb, pad, t, sc, sh, gtmp, par);
                if let Some(at) = lvl.attn.get(j) {
                    self.attn_block(at, dst, r * r, g, t, qkv, kt, s, o, sc, sh, gtmp, par);
                }
                hi += 1;
            }
            if let Some(ds) = &lvl.resample {
                Self::pad_maps(&hs[hi], r, ds.cin, g, pad);
                self.conv3(ds, pad, r, 2, g, &mut hs[hi + 1], Init::Zero, &ds.b, par);
                hi += 1;
                r /= 2;
            }
        }
        // middle: hs[hi] → a
        self.res_block(&self.mid_res0, &[(&hs[hi], self.mid_res0.cin)], r, g, b, tb, pad, t, sc, sh, gtmp, par);
        self.attn_block(&self.mid_attn, b, r * r, g, t, qkv, kt, s, o, sc, sh, gtmp, par);
        self.res_block(&self.mid_res1, &[(b, self.mid_res1.cin)], r, g, a, tb, pad, t, sc, sh, gtmp, par);
        let mut hc = self.mid_res1.cout;
        let mut skip_i = hi as isize;
        for lvl in self.up.iter().rev() {
            for (j, rb) in lvl.res.iter().enumerate() {
                let skip = &hs[skip_i as usize];
                skip_i -= 1;
                let sc_ch = rb.cin - hc;
                let npix = g * r * r;
                if rb.nin.is_some() {
                    std::mem::swap(a, b);
                    self.res_block(rb, &[(&b[..npix * hc], hc), (&skip[..npix * sc_ch], sc_ch)], r, g, a, tb, pad, t, sc, sh, gtmp, par);
                } else {
                    // identity shortcut (cin == cout): needs the concatenation itself
                    cat.resize(npix * rb.cin);
                    for p in 0..npix {
                        cat[p * rb.cin..p * rb.cin + hc].copy_from_slice(&a[p * hc..(p + 1) * hc]);
                        cat[p * rb.cin + hc..(p + 1) * rb.cin].copy_from_slice(&skip[p * sc_ch..(p + 1) * sc_ch]);
                    }
                    self.res_block(rb, &[(&cat[..npix * rb.cin], rb.cin)], r, g, a, tb, pad, t, sc, sh, gtmp, par);
                }
                hc = rb.cout;
                if let Some(at) = lvl.attn.get(j) {
                    self.attn_block(at, a, r * r, g, t, qkv, kt, s, o, sc, sh, gtmp, par);
                }
            }
            if let Some(us) = &lvl.upsample {
                self.upconv(us, a, r, g, pad, b, par);
                r *= 2;
                std::mem::swap(a, b);
            }
        }
        debug_assert_eq!(skip_i, -1);
        // norm_out + SiLU → CHW padded → conv_out (few channels: vectorised over pixels)
        let be = self.be;
        let xi = r * r * hc;
        for gi in 0..g {
            let x = &a[gi * xi..(gi + 1) * xi];
            ops::group_norm_affine(be, x, r * r, hc, self.cfg.num_groups, GN_EPS, &self.norm_out.gamma, &self.norm_out.beta, sc, sh, gtmp);
            ops::affine_act(be, x, hc, t, hc, r * r, hc, sc, sh, true);
            ops::hwc_to_chw_padded(t, r, r, hc, pad);
            // in blocks of ≤ in_channels output channels (the kernel takes at most 4); each
            // output channel's arithmetic is its own, so ε is the same with or without v
            let po = outc * r * r;
            let img = &mut out[gi * po..(gi + 1) * po];
            for c0 in (0..outc).step_by(cin) {
                let nc = cin.min(outc - c0);
                let w = &self.conv_out_w[c0 * 9 * hc..(c0 + nc) * 9 * hc];
                ops::conv3_few_out(be, pad, r, hc, w, &self.conv_out.b[c0..c0 + nc], nc, &mut img[c0 * r * r..(c0 + nc) * r * r]);
            }
        }
    }
}
