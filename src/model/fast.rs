//! Fast, deterministic CPU inference of the U-Net ([`super::unet::UNet`], `train/model.py`).
//!
//! Same weights and arithmetic as the candle network (to ~1e-5), computed with the kernels
//! of [`crate::kernels`]: channels-last maps, convolutions as GEMMs over zero-padded inputs
//! with pre-packed weights, fused GroupNorm+SiLU, reused per-thread buffers.
//!
//! Determinism: an image's ε is a fixed sequence of IEEE operations, bit-identical whatever
//! the batch around it, the thread count, and whether the AVX-512 or the portable kernels
//! run. Batches are parallelised across images (rayon); a single image splits the rows of
//! each GEMM between threads, which does not change any output's arithmetic.

use std::collections::HashMap;
use std::sync::Mutex;

use candle_core::{DType, Tensor};
use rayon::prelude::*;

use super::Config;
use crate::error::{Error, Result};
use crate::kernels::{gemm, ops, Backend, Init, Rows};

const GN_EPS: f32 = 1e-6;

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
    w: Vec<f32>,
    b: Vec<f32>,
}

/// Nearest ×2 upsampling followed by a 3×3 convolution, computed as four 2×2 convolutions
/// of the low-resolution map, one per output phase `(y % 2, x % 2)`, whose weights are the
/// 3×3 weights summed over the taps that read the same source pixel (4/9 of the work).
#[derive(Debug)]
struct UpConv {
    cin: usize,
    cout: usize,
    /// per phase `py * 2 + px`: `[(a * 2 + b) * cin + ci, cout]`
    w: [Vec<f32>; 4],
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
            w
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
    wqkv: Vec<f32>,
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
#[derive(Default)]
struct Ws {
    hs: Vec<Vec<f32>>,
    pad: Vec<f32>,
    a: Vec<f32>,
    b: Vec<f32>,
    t: Vec<f32>,
    cat: Vec<f32>,
    qkv: Vec<f32>,
    kt: Vec<f32>,
    s: Vec<f32>,
    o: Vec<f32>,
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
        Ok(Conv { cin, cout, w: pw, b })
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
        Ok(Conv { cin, cout, w: pw, b })
    }

    fn res(&self, p: &str, cin: usize, cout: usize, temb_ch: usize, tidx: usize) -> Result<Res> {
        let tl = self.linear(&format!("{p}.temb_proj"), temb_ch, cout)?;
        Ok(Res {
            cin,
            cout,
            norm1: self.norm(&format!("{p}.norm1"), cin)?,
            conv1: self.conv(&format!("{p}.conv1"), cin, cout, 3)?,
            temb_w: tl.w,
            temb_b: tl.b,
            norm2: self.norm(&format!("{p}.norm2"), cout)?,
            conv2: self.conv(&format!("{p}.conv2"), cout, cout, 3)?,
            nin: if cin != cout { Some(self.conv(&format!("{p}.nin_shortcut"), cin, cout, 1)?) } else { None },
            tidx,
        })
    }

    fn attn(&self, p: &str, c: usize) -> Result<Attn> {
        let q = self.conv(&format!("{p}.q"), c, c, 1)?;
        let k = self.conv(&format!("{p}.k"), c, c, 1)?;
        let v = self.conv(&format!("{p}.v"), c, c, 1)?;
        let scale = (c as f32).powf(-0.5);
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
        Ok(Attn { c, norm: self.norm(&format!("{p}.norm"), c)?, wqkv, bqkv, proj: self.conv(&format!("{p}.proj_out"), c, c, 1)? })
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
        let conv_out = ld.conv("conv_out", cur, cfg.in_channels, 3)?;
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
        if x.len() != n * per {
            return Err(Error::Parameter(format!("eps: got {} values for {n} images", x.len())));
        }
        let mut out = vec![0f32; n * per];
        self.eps_into(x, n, t, &mut out)?;
        Ok(out)
    }

    /// As [`FastUNet::eps`], writing into `out` (`n` images).
    pub fn eps_into(&self, x: &[f32], n: usize, t: usize, out: &mut [f32]) -> Result<()> {
        let per = self.cfg.in_channels * self.cfg.resolution * self.cfg.resolution;
        if x.len() != n * per || out.len() != n * per {
            return Err(Error::Parameter(format!("eps: got {} / {} values for {n} images", x.len(), out.len())));
        }
        if n == 0 {
            return Ok(());
        }
        let tb = self.temb_biases(t as f32);
        let threads = rayon::current_num_threads();
        if n == 1 || threads == 1 {
            let mut ws = self.take_ws();
            for (xi, oi) in x.chunks(per).zip(out.chunks_mut(per)) {
                self.forward_image(xi, oi, &tb, &mut ws, threads > 1);
            }
            self.put_ws(ws);
        } else {
            x.par_chunks(per).zip(out.par_chunks_mut(per)).for_each(|(xi, oi)| {
                let mut ws = self.take_ws();
                self.forward_image(xi, oi, &tb, &mut ws, false);
                self.put_ws(ws);
            });
        }
        Ok(())
    }

    fn take_ws(&self) -> Ws {
        let w = self.pool.lock().ok().and_then(|mut p| p.pop());
        w.unwrap_or_else(|| self.new_ws())
    }

    fn put_ws(&self, ws: Ws) {
        if let Ok(mut p) = self.pool.lock() {
            p.push(ws);
        }
    }

    fn new_ws(&self) -> Ws {
        let cmax = self.max_map;
        let (an, ac) = self.max_attn;
        let chmax = 8 * self.cfg.ch * self.cfg.ch_mult.iter().max().copied().unwrap_or(1);
        Ws {
            hs: self.hs_ch.iter().map(|&(c, res)| vec![0f32; c * res * res]).collect(),
            pad: vec![0f32; self.max_pad],
            a: vec![0f32; cmax],
            b: vec![0f32; cmax],
            t: vec![0f32; cmax],
            cat: vec![0f32; cmax],
            qkv: vec![0f32; an * 3 * ac],
            kt: vec![0f32; an * ac],
            s: vec![0f32; an * an],
            o: vec![0f32; an * ac],
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
        let scale = -(10000f32.ln()) / (half as f32 - 1.0);
        let freqs: Vec<f32> = (0..half).map(|i| (scale * i as f32).exp()).collect();
        let mut emb: Vec<f32> = freqs.iter().map(|f| (t * f).sin()).collect();
        emb.extend(freqs.iter().map(|f| (t * f).cos()));
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

    /// GroupNorm(+SiLU) of `x` (`r×r×c`) into the interior of the padded buffer `pad`.
    fn norm_to_pad(&self, nm: &Norm, x: &[f32], r: usize, c: usize, silu: bool, pad: &mut [f32], ws_scale: &mut [f32], ws_shift: &mut [f32], gtmp: &mut Vec<f32>) {
        let be = self.be;
        ops::group_norm_affine(be, x, r * r, c, self.cfg.num_groups, GN_EPS, &nm.gamma, &nm.beta, ws_scale, ws_shift, gtmp);
        let wp = r + 2;
        ops::zero_border(pad, r, r, c);
        for y in 0..r {
            let d = ((y + 1) * wp + 1) * c;
            ops::affine_act(be, &x[y * r * c..], c, &mut pad[d..d + r * c], c, r, c, ws_scale, ws_shift, silu);
        }
    }

    /// 3×3 convolution (padding 1) of the padded map `pad` (`r×r×cin`) with `stride`.
    #[allow(clippy::too_many_arguments)]
    fn conv3(&self, cv: &Conv, pad: &[f32], r: usize, stride: usize, out: &mut [f32], init: Init, bias: &[f32], par: bool) {
        let ro = r / stride;
        let wp = r + 2;
        gemm(
            self.be,
            ro * ro,
            cv.cout,
            pad,
            Rows::Conv { w_out: ro, wp, cin: cv.cin, stride },
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

    /// Nearest ×2 upsampling + 3×3 convolution of `x` (`r×r×cin`) into `out` (`2r×2r×cout`).
    fn upconv(&self, uc: &UpConv, x: &[f32], r: usize, pad: &mut [f32], out: &mut [f32], par: bool) {
        let (cin, cout) = (uc.cin, uc.cout);
        ops::pad_copy(x, r, r, cin, pad);
        let wp = r + 2;
        let taps = [0, cin as isize, (wp * cin) as isize, ((wp + 1) * cin) as isize];
        for (ph, w) in uc.w.iter().enumerate() {
            let (py, px) = (ph / 2, ph % 2);
            gemm(
                self.be,
                r * r,
                cout,
                &pad[(py * wp + px) * cin..],
                Rows::Conv { w_out: r, wp, cin, stride: 1 },
                &taps,
                cin,
                w,
                cout,
                &mut out[(py * 2 * r + px) * cout..],
                Rows::Conv { w_out: r, wp: 2 * r, cin: cout, stride: 2 },
                Init::Zero,
                Some(&uc.b),
                par,
            );
        }
    }

    /// Residual block: `x` (`r×r×cin`) → `out` (`r×r×cout`).
    #[allow(clippy::too_many_arguments)]
    fn res_block(&self, rb: &Res, x: &[f32], r: usize, out: &mut [f32], tb: &[Vec<f32>], pad: &mut [f32], tmp: &mut [f32], sc: &mut [f32], sh: &mut [f32], gtmp: &mut Vec<f32>, par: bool) {
        let npix = r * r;
        self.norm_to_pad(&rb.norm1, x, r, rb.cin, true, pad, sc, sh, gtmp);
        self.conv3(&rb.conv1, pad, r, 1, tmp, Init::Zero, &tb[rb.tidx], par);
        self.norm_to_pad(&rb.norm2, &tmp[..npix * rb.cout], r, rb.cout, true, pad, sc, sh, gtmp);
        match &rb.nin {
            Some(nin) => {
                gemm(self.be, npix, rb.cout, x, Rows::Strided { ld: rb.cin }, &[0], rb.cin, &nin.w, rb.cout, out, Rows::Strided { ld: rb.cout }, Init::Zero, Some(&nin.b), par);
                self.conv3(&rb.conv2, pad, r, 1, out, Init::C, &rb.conv2.b, par);
            }
            None => self.conv3(&rb.conv2, pad, r, 1, out, Init::From(&x[..npix * rb.cout]), &rb.conv2.b, par),
        }
    }

    /// Self-attention block, in place on `x` (`n×c`).
    #[allow(clippy::too_many_arguments)]
    fn attn_block(&self, at: &Attn, x: &mut [f32], npix: usize, ws_t: &mut [f32], qkv: &mut [f32], kt: &mut [f32], s: &mut [f32], o: &mut [f32], sc: &mut [f32], sh: &mut [f32], gtmp: &mut Vec<f32>, par: bool) {
        let be = self.be;
        let c = at.c;
        ops::group_norm_affine(be, x, npix, c, self.cfg.num_groups, GN_EPS, &at.norm.gamma, &at.norm.beta, sc, sh, gtmp);
        ops::affine_act(be, x, c, ws_t, c, npix, c, sc, sh, false);
        gemm(be, npix, 3 * c, ws_t, Rows::Strided { ld: c }, &[0], c, &at.wqkv, 3 * c, qkv, Rows::Strided { ld: 3 * c }, Init::Zero, Some(&at.bqkv), par);
        ops::transpose(&qkv[c..], 3 * c, npix, c, kt, npix);
        gemm(be, npix, npix, qkv, Rows::Strided { ld: 3 * c }, &[0], c, kt, npix, s, Rows::Strided { ld: npix }, Init::Zero, None, par);
        ops::softmax_rows(be, s, npix, npix, npix);
        gemm(be, npix, c, s, Rows::Strided { ld: npix }, &[0], npix, &qkv[2 * c..], 3 * c, o, Rows::Strided { ld: c }, Init::Zero, None, par);
        gemm(be, npix, c, o, Rows::Strided { ld: c }, &[0], c, &at.proj.w, c, x, Rows::Strided { ld: c }, Init::C, Some(&at.proj.b), par);
    }

    /// One image: `x` (NCHW, c×R×R) → `out` (NCHW).
    fn forward_image(&self, x: &[f32], out: &mut [f32], tb: &[Vec<f32>], ws: &mut Ws, par: bool) {
        let be = self.be;
        let r0 = self.cfg.resolution;
        let cin = self.cfg.in_channels;
        let Ws { hs, pad, a, b, t, cat, qkv, kt, s, o, scale: sc, shift: sh, gtmp } = ws;
        // input → padded HWC
        let wp = r0 + 2;
        ops::zero_border(pad, r0, r0, cin);
        for y in 0..r0 {
            for xx in 0..r0 {
                for c in 0..cin {
                    pad[((y + 1) * wp + xx + 1) * cin + c] = x[(c * r0 + y) * r0 + xx];
                }
            }
        }
        self.conv3(&self.conv_in, pad, r0, 1, &mut hs[0], Init::Zero, &self.conv_in.b, par);
        let mut r = r0;
        let mut hi = 0; // index of the last pushed skip map
        for lvl in &self.down {
            for (j, rb) in lvl.res.iter().enumerate() {
                let (lo, hi_) = hs.split_at_mut(hi + 1);
                let xin = &lo[hi];
                let dst = &mut hi_[0];
                self.res_block(rb, xin, r, dst, tb, pad, t, sc, sh, gtmp, par);
                if let Some(at) = lvl.attn.get(j) {
                    self.attn_block(at, dst, r * r, t, qkv, kt, s, o, sc, sh, gtmp, par);
                }
                hi += 1;
            }
            if let Some(ds) = &lvl.resample {
                ops::pad_copy(&hs[hi], r, r, ds.cin, pad);
                self.conv3(ds, pad, r, 2, &mut hs[hi + 1], Init::Zero, &ds.b, par);
                hi += 1;
                r /= 2;
            }
        }
        // middle: hs[hi] → a
        self.res_block(&self.mid_res0, &hs[hi], r, b, tb, pad, t, sc, sh, gtmp, par);
        self.attn_block(&self.mid_attn, b, r * r, t, qkv, kt, s, o, sc, sh, gtmp, par);
        self.res_block(&self.mid_res1, b, r, a, tb, pad, t, sc, sh, gtmp, par);
        let mut hc = self.mid_res1.cout;
        let mut skip_i = hi as isize;
        for lvl in self.up.iter().rev() {
            for (j, rb) in lvl.res.iter().enumerate() {
                let skip = &hs[skip_i as usize];
                skip_i -= 1;
                let sc_ch = rb.cin - hc;
                let npix = r * r;
                for p in 0..npix {
                    cat[p * rb.cin..p * rb.cin + hc].copy_from_slice(&a[p * hc..(p + 1) * hc]);
                    cat[p * rb.cin + hc..(p + 1) * rb.cin].copy_from_slice(&skip[p * sc_ch..(p + 1) * sc_ch]);
                }
                self.res_block(rb, cat, r, a, tb, pad, t, sc, sh, gtmp, par);
                hc = rb.cout;
                if let Some(at) = lvl.attn.get(j) {
                    self.attn_block(at, a, r * r, t, qkv, kt, s, o, sc, sh, gtmp, par);
                }
            }
            if let Some(us) = &lvl.upsample {
                self.upconv(us, a, r, pad, b, par);
                r *= 2;
                std::mem::swap(a, b);
            }
        }
        debug_assert_eq!(skip_i, -1);
        self.norm_to_pad(&self.norm_out, a, r, hc, true, pad, sc, sh, gtmp);
        self.conv3(&self.conv_out, pad, r, 1, b, Init::Zero, &self.conv_out.b, par);
        for p in 0..r * r {
            for c in 0..cin {
                out[c * r * r + p] = b[p * cin + c];
            }
        }
        let _ = be;
    }
}
