//! 3×3 convolutions (stride 1, padding 1) by Winograd's minimal filtering F(2×2, 3×3)
//! (Lavin & Gray 2016): each 2×2 block of outputs from a 4×4 input window with 16 products
//! per channel pair instead of 36, i.e. 2.25× fewer multiply-adds than the direct GEMM.
//!
//! With `d` a 4×4 input window, `g` a 3×3 kernel and
//! `Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1]`, `G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1]`,
//! `Aᵀ = [1 1 1 0; 0 1 −1 −1]`, the 2×2 output is `Aᵀ [Σ_ci (G g Gᵀ) ⊙ (Bᵀ d B)] A`:
//! - the weights `U = G g Gᵀ` are computed once at load, in f64, rounded to f32
//!   ([`transform_weights`]);
//! - the input transform `V = Bᵀ d B` and the output transform `Aᵀ M A` are additions and
//!   subtractions only, in a fixed order, the same on every path (lane-wise IEEE operations:
//!   vectorising them over channels cannot change a bit);
//! - the 16 sums over channels `M_e = Σ_ci V_e U_e` are GEMMs of [`super::gemm`] (one FMA per
//!   channel, in channel order).
//!
//! An output is then `init + ((Aᵀ M A) + bias)`. It does not depend on which tiles are computed
//! together, on the thread count or on the back-end, so the determinism of [`super`] holds.
//! The numbers differ from the direct convolution's by rounding only (tested against it).

use std::cell::RefCell;

use rayon::prelude::*;

use super::{gemm, AVec, Backend, Init, Rows};

/// Transformed weights `[16][cin][cout]` (element `e = i·4 + j` of `G g Gᵀ`) from the direct
/// convolution's packing `[(ky·3 + kx)·cin + ci, cout]`.
#[allow(clippy::needless_range_loop)]
pub fn transform_weights(w: &[f32], cin: usize, cout: usize) -> Vec<f32> {
    assert_eq!(w.len(), 9 * cin * cout, "winograd: weights");
    const G: [[f64; 3]; 4] = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]];
    let mut u = vec![0f32; 16 * cin * cout];
    for ci in 0..cin {
        for co in 0..cout {
            let g = |ky: usize, kx: usize| w[((ky * 3 + kx) * cin + ci) * cout + co] as f64;
            for i in 0..4 {
                for j in 0..4 {
                    let mut s = 0f64;
                    for a in 0..3 {
                        for b in 0..3 {
                            s += G[i][a] * g(a, b) * G[j][b];
                        }
                    }
                    u[((i * 4 + j) * cin + ci) * cout + co] = s as f32;
                }
            }
        }
    }
    u
}

/// Tiles (2×2 output blocks) a chunk aims at: its transformed inputs and products,
/// 16·T·(cin + cout) floats, stay in L2.
const CHUNK_TILES: usize = 48;

thread_local! {
    /// Per-thread transformed inputs and products, reused across calls.
    static SCRATCH: RefCell<(AVec, AVec)> = RefCell::new((AVec::default(), AVec::default()));
}

/// 3×3 convolution (stride 1, padding 1) of `g` zero-padded HWC maps in `pad`
/// (`(r+2)²·cin` floats each, `r` even) with transformed weights `u` ([`transform_weights`])
/// into `g` stacked HWC maps in `out` (`r²·cout` each): `out = init + (conv + bias)`.
/// `par` spreads the work over rayon's threads (same results).
#[allow(clippy::too_many_arguments)]
pub fn conv3(be: Backend, u: &[f32], cin: usize, cout: usize, pad: &[f32], r: usize, g: usize, out: &mut [f32], init: Init, bias: &[f32], par: bool) {
    assert!(r.is_multiple_of(2) && r > 0, "winograd: r {r} must be even");
    let wp = r + 2;
    assert!(u.len() == 16 * cin * cout && bias.len() >= cout, "winograd: weights/bias");
    assert!(pad.len() >= g * wp * wp * cin && out.len() >= g * r * r * cout, "winograd: maps");
    let th = r / 2;
    let rows = g * th; // tile rows; each covers 2·r·cout contiguous outputs
    let row_out = 2 * r * cout;
    let per = CHUNK_TILES.div_ceil(th).max(1); // tile rows a chunk
    let out = &mut out[..g * r * r * cout];
    let from = match init {
        Init::From(f) => {
            assert!(f.len() >= g * r * r * cout, "winograd: init");
            Some(&f[..g * r * r * cout])
        }
        _ => None,
    };
    let in_place = matches!(init, Init::C);
    let job = |(ci, oc): (usize, &mut [f32])| {
        let tr0 = ci * per;
        let fr = from.map(|f| &f[tr0 * row_out..tr0 * row_out + oc.len()]);
        SCRATCH.with(|s| {
            let (v, m) = &mut *s.borrow_mut();
            chunk(be, u, cin, cout, pad, r, tr0, oc.len() / row_out, oc, fr, in_place, bias, v, m);
        });
    };
    if par && rows > per {
        out.par_chunks_mut(per * row_out).enumerate().for_each(job);
    } else {
        out.chunks_mut(per * row_out).enumerate().for_each(job);
    }
}

/// Tile rows `tr0..tr0 + ntr` (flat over images) into `oc` (their outputs).
#[allow(clippy::too_many_arguments)]
fn chunk(be: Backend, u: &[f32], cin: usize, cout: usize, pad: &[f32], r: usize, tr0: usize, ntr: usize, oc: &mut [f32], from: Option<&[f32]>, in_place: bool, bias: &[f32], v: &mut AVec, m: &mut AVec) {
    let nt = ntr * (r / 2);
    // plane-major: each of the 16 GEMMs reads and writes contiguous rows; planes a cache
    // line more than their size apart (16 streams a multiple of 4 KiB apart share L1 sets)
    let lv = Planes { e: nt * cin + 16, t: cin };
    let lm = Planes { e: nt * cout + 16, t: cout };
    // every element read is written first (the gaps between planes are never read)
    v.resize_stale(lv.len(nt, cin));
    m.resize_stale(lm.len(nt, cout));
    input_pass(be, pad, cin, r, tr0, ntr, v, lv);
    for e in 0..16 {
        products(be, nt, cin, cout, &v[e * lv.e..], lv.t, &u[e * cin * cout..(e + 1) * cin * cout], &mut m[e * lm.e..], lm.t);
    }
    output_pass(be, m, lm, cout, r, ntr, bias, oc, from, in_place);
}

/// Where the 16 transformed values of a tile lie in a buffer: element `e` of tile `t` at
/// `e·self.e + t·self.t` (then its channels).
#[derive(Clone, Copy)]
struct Planes {
    e: usize,
    t: usize,
}

impl Planes {
    fn len(&self, nt: usize, c: usize) -> usize {
        15 * self.e + (nt - 1) * self.t + c
    }
}

/// `m = v u` (`[nt][cin]` × `[cin][cout]`, rows `lda` / `ldc` apart): each output one FMA
/// chain from 0 over the channels in order, as [`gemm`] with `Init::Zero` and no bias
/// computes it.
#[allow(clippy::too_many_arguments)]
fn products(be: Backend, nt: usize, cin: usize, cout: usize, v: &[f32], lda: usize, u: &[f32], m: &mut [f32], ldc: usize) {
    #[cfg(target_arch = "x86_64")]
    if be == Backend::Avx512 && cout <= 64 {
        assert!(v.len() >= (nt - 1) * lda + cin && u.len() >= cin * cout && m.len() >= (nt - 1) * ldc + cout);
        // SAFETY: the CPU has AVX-512F and FMA (the back-end was detected so); sizes checked.
        unsafe {
            match cout.div_ceil(16) {
                1 => products_avx512::<16, 1>(nt, cin, cout, v, lda, u, m, ldc),
                2 => products_avx512::<12, 2>(nt, cin, cout, v, lda, u, m, ldc),
                3 => products_avx512::<8, 3>(nt, cin, cout, v, lda, u, m, ldc),
                _ => products_avx512::<6, 4>(nt, cin, cout, v, lda, u, m, ldc),
            }
        }
        return;
    }
    gemm(be, nt, cout, v, Rows::Strided { ld: lda }, &[0], cin, u, cout, m, Rows::Strided { ld: ldc }, Init::Zero, None, false);
}

/// The products with all of `u` (≤ 64 columns) against MR rows at a time, the whole
/// reduction in registers. A short last block repeats its last row (computed again, stored
/// once: the same arithmetic per output).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn products_avx512<const MR: usize, const NV: usize>(nt: usize, cin: usize, cout: usize, v: &[f32], lda: usize, u: &[f32], m: &mut [f32], ldc: usize) {
    use std::arch::x86_64::*;
    let mut masks = [0xffffu16; NV];
    for (q, mk) in masks.iter_mut().enumerate() {
        let rem = cout.saturating_sub(16 * q).min(16);
        *mk = if rem >= 16 { 0xffff } else { ((1u32 << rem) - 1) as u16 };
    }
    let (vp, up, mp) = (v.as_ptr(), u.as_ptr(), m.as_mut_ptr());
    let mut t0 = 0;
    while t0 < nt {
        let rows = (nt - t0).min(MR);
        let a: [*const f32; MR] = std::array::from_fn(|i| vp.add((t0 + i.min(rows - 1)) * lda));
        let mut acc = [[_mm512_setzero_ps(); NV]; MR];
        let mut bp = up;
        for k in 0..cin {
            super::gemm::avx512::rank1(&mut acc, &a, k, bp, &masks);
            bp = bp.add(cout);
        }
        for (i, ai) in acc.iter().enumerate().take(rows) {
            for q in 0..NV {
                _mm512_mask_storeu_ps(mp.add((t0 + i) * ldc + 16 * q), masks[q], ai[q]);
            }
        }
        t0 += rows;
    }
}

/// `V = Bᵀ d B` of every tile of the tile rows `tr0..tr0 + ntr` of the padded maps `pad`
/// (`r` even, `c` channels) into `v` (laid out as `lv`).
#[allow(clippy::too_many_arguments)]
fn input_pass(be: Backend, pad: &[f32], c: usize, r: usize, tr0: usize, ntr: usize, v: &mut [f32], lv: Planes) {
    let (th, wp) = (r / 2, r + 2);
    let nt = ntr * th;
    // the last tile's window ends at its base + 3 rows + 4 pixels
    let last = tr0 + ntr - 1;
    let end = (last / th) * wp * wp * c + (2 * (last % th) * wp + 2 * (th - 1)) * c + 3 * wp * c + 4 * c;
    assert!(end <= pad.len() && lv.len(nt, c) <= v.len(), "winograd: input pass");
    #[cfg(target_arch = "x86_64")]
    if be == Backend::Avx512 {
        // SAFETY: the CPU has AVX-512F (the back-end was detected so); every access is
        // below the bounds asserted above.
        return unsafe { input_pass_avx512(pad, c, r, tr0, ntr, v, lv) };
    }
    let _ = be;
    for_tiles(r, tr0, ntr, c, |t, base| {
        for c0 in 0..c / 16 {
            input_block::<16>(&pad[base..], wp * c, c, 16 * c0, &mut v[t * lv.t..], lv.e);
        }
        for c0 in c / 16 * 16..c {
            input_block::<1>(&pad[base..], wp * c, c, c0, &mut v[t * lv.t..], lv.e);
        }
    });
}

/// Calls `f(tile, offset of its window in the padded maps)` for the tiles of the tile rows
/// `tr0..tr0 + ntr`, in order.
#[inline(always)]
fn for_tiles(r: usize, tr0: usize, ntr: usize, c: usize, mut f: impl FnMut(usize, usize)) {
    let (th, wp) = (r / 2, r + 2);
    for tr in 0..ntr {
        let (gi, ty) = ((tr0 + tr) / th, (tr0 + tr) % th);
        for tx in 0..th {
            f(tr * th + tx, gi * wp * wp * c + (2 * ty * wp + 2 * tx) * c);
        }
    }
}

/// [`input_block`] over whole 16-channel vectors in AVX-512 registers (the same operations per
/// channel; the last `c % 16` channels by the portable code).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
#[allow(clippy::needless_range_loop)]
unsafe fn input_pass_avx512(pad: &[f32], c: usize, r: usize, tr0: usize, ntr: usize, v: &mut [f32], lv: Planes) {
    use std::arch::x86_64::*;
    let ld = (r + 2) * c;
    let (pp, vp) = (pad.as_ptr(), v.as_mut_ptr());
    for_tiles(r, tr0, ntr, c, |t, base| {
        let (dp, op) = (pp.add(base), vp.add(t * lv.t));
        let mut c0 = 0;
        while c0 + 16 <= c {
            let x = |i: usize, j: usize| _mm512_loadu_ps(dp.add(i * ld + j * c + c0));
            let mut u = [[_mm512_setzero_ps(); 4]; 4];
            for j in 0..4 {
                let (x0, x1, x2, x3) = (x(0, j), x(1, j), x(2, j), x(3, j));
                u[0][j] = _mm512_sub_ps(x0, x2);
                u[1][j] = _mm512_add_ps(x1, x2);
                u[2][j] = _mm512_sub_ps(x2, x1);
                u[3][j] = _mm512_sub_ps(x1, x3);
            }
            for (i, ui) in u.iter().enumerate() {
                let y = [_mm512_sub_ps(ui[0], ui[2]), _mm512_add_ps(ui[1], ui[2]), _mm512_sub_ps(ui[2], ui[1]), _mm512_sub_ps(ui[1], ui[3])];
                for (j, yj) in y.iter().enumerate() {
                    _mm512_storeu_ps(op.add((i * 4 + j) * lv.e + c0), *yj);
                }
            }
            c0 += 16;
        }
        let (d, o) = (std::slice::from_raw_parts(dp, 3 * ld + 4 * c), std::slice::from_raw_parts_mut(op, lv.len(1, c)));
        while c0 < c {
            input_block::<1>(d, ld, c, c0, o, lv.e);
            c0 += 1;
        }
    });
}

/// `V = Bᵀ d B` for channels `c0..c0 + W` of the 4×4 window at `d` (rows `ld` apart, `c`
/// channels a pixel) into `v` (element `e` at `e·es`).
#[inline(always)]
fn input_block<const W: usize>(d: &[f32], ld: usize, c: usize, c0: usize, v: &mut [f32], es: usize) {
    let mut x = [[[0f32; W]; 4]; 4];
    for (i, xi) in x.iter_mut().enumerate() {
        for (j, xij) in xi.iter_mut().enumerate() {
            let s = i * ld + j * c + c0;
            xij.copy_from_slice(&d[s..s + W]);
        }
    }
    // rows: u = Bᵀ d
    let mut u = [[[0f32; W]; 4]; 4];
    for j in 0..4 {
        for q in 0..W {
            u[0][j][q] = x[0][j][q] - x[2][j][q];
            u[1][j][q] = x[1][j][q] + x[2][j][q];
            u[2][j][q] = x[2][j][q] - x[1][j][q];
            u[3][j][q] = x[1][j][q] - x[3][j][q];
        }
    }
    // columns: V = u B
    for (i, ui) in u.iter().enumerate() {
        let mut y = [[0f32; W]; 4];
        for q in 0..W {
            y[0][q] = ui[0][q] - ui[2][q];
            y[1][q] = ui[1][q] + ui[2][q];
            y[2][q] = ui[2][q] - ui[1][q];
            y[3][q] = ui[1][q] - ui[3][q];
        }
        for (j, yj) in y.iter().enumerate() {
            let s = (i * 4 + j) * es + c0;
            v[s..s + W].copy_from_slice(yj);
        }
    }
}

/// `Y = Aᵀ M A` of every tile's products in `m` (laid out as `lm`), plus `bias`, plus the
/// residual (`from`, or `oc`'s own contents when `in_place`), into the outputs `oc` of the
/// tile rows (`2·r·c` floats each).
#[allow(clippy::too_many_arguments)]
fn output_pass(be: Backend, m: &[f32], lm: Planes, c: usize, r: usize, ntr: usize, bias: &[f32], oc: &mut [f32], from: Option<&[f32]>, in_place: bool) {
    let nt = ntr * (r / 2);
    assert!(lm.len(nt, c) <= m.len() && bias.len() >= c && oc.len() >= ntr * 2 * r * c, "winograd: output pass");
    if let Some(f) = from {
        assert!(f.len() >= oc.len(), "winograd: residual");
    }
    #[cfg(target_arch = "x86_64")]
    if be == Backend::Avx512 {
        // SAFETY: the CPU has AVX-512F (the back-end was detected so); every access is
        // below the bounds asserted above.
        return unsafe { output_pass_avx512(m, lm, c, r, ntr, bias, oc, from, in_place) };
    }
    let _ = be;
    for_tiles(r, 0, ntr, 1, |t, _| {
        let o = out_offset(t, r, c);
        for c0 in 0..c / 16 {
            output_block::<16>(&m[t * lm.t..], lm.e, c, 16 * c0, bias, &mut oc[o..], r * c, from.map(|f| &f[o..]), in_place);
        }
        for c0 in c / 16 * 16..c {
            output_block::<1>(&m[t * lm.t..], lm.e, c, c0, bias, &mut oc[o..], r * c, from.map(|f| &f[o..]), in_place);
        }
    });
}

/// Offset of tile `t`'s top-left output in its chunk's outputs.
#[inline(always)]
fn out_offset(t: usize, r: usize, c: usize) -> usize {
    let th = r / 2;
    (2 * (t / th) * r + 2 * (t % th)) * c
}

/// [`output_block`] over whole 16-channel vectors in AVX-512 registers (the same operations
/// per channel; the last `c % 16` channels by the portable code).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
#[allow(clippy::needless_range_loop)]
unsafe fn output_pass_avx512(m: &[f32], lm: Planes, c: usize, r: usize, ntr: usize, bias: &[f32], oc: &mut [f32], from: Option<&[f32]>, in_place: bool) {
    use std::arch::x86_64::*;
    let ld = r * c;
    let (mp0, op0, bp) = (m.as_ptr(), oc.as_mut_ptr(), bias.as_ptr());
    let fp0 = from.map_or(std::ptr::null(), |f| f.as_ptr());
    for_tiles(r, 0, ntr, 1, |t, _| {
        let o = out_offset(t, r, c);
        let (mp, op) = (mp0.add(t * lm.t), op0.add(o));
        let mut c0 = 0;
        while c0 + 16 <= c {
            let x = |i: usize, j: usize| _mm512_loadu_ps(mp.add((i * 4 + j) * lm.e + c0));
            let b = _mm512_loadu_ps(bp.add(c0));
            let mut tr = [[_mm512_setzero_ps(); 4]; 2];
            for j in 0..4 {
                let (x0, x1, x2, x3) = (x(0, j), x(1, j), x(2, j), x(3, j));
                tr[0][j] = _mm512_add_ps(_mm512_add_ps(x0, x1), x2);
                tr[1][j] = _mm512_sub_ps(_mm512_sub_ps(x1, x2), x3);
            }
            for (dy, ti) in tr.iter().enumerate() {
                let y = [
                    _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(ti[0], ti[1]), ti[2]), b),
                    _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(ti[1], ti[2]), ti[3]), b),
                ];
                for (dx, yv) in y.iter().enumerate() {
                    let s = dy * ld + dx * c + c0;
                    let v = if !fp0.is_null() {
                        _mm512_add_ps(_mm512_loadu_ps(fp0.add(o + s)), *yv)
                    } else if in_place {
                        _mm512_add_ps(_mm512_loadu_ps(op.add(s)), *yv)
                    } else {
                        *yv
                    };
                    _mm512_storeu_ps(op.add(s), v);
                }
            }
            c0 += 16;
        }
        if c0 < c {
            let mt = std::slice::from_raw_parts(mp, lm.len(1, c));
            let ot = std::slice::from_raw_parts_mut(op, ld + 2 * c);
            let ft = from.map(|f| &f[o..o + ld + 2 * c]);
            while c0 < c {
                output_block::<1>(mt, lm.e, c, c0, bias, ot, ld, ft, in_place);
                c0 += 1;
            }
        }
    });
}

/// `Y = Aᵀ M A` + bias (+ residual) for channels `c0..c0 + W` of one tile's products `m`
/// (element `e` at `e·es`) into its 2×2 outputs at `o` (rows `ld` apart).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
#[allow(clippy::needless_range_loop)]
fn output_block<const W: usize>(m: &[f32], es: usize, c: usize, c0: usize, bias: &[f32], o: &mut [f32], ld: usize, res: Option<&[f32]>, in_place: bool) {
    let ld4 = |i: usize, j: usize| -> [f32; W] {
        let s = (i * 4 + j) * es + c0;
        m[s..s + W].try_into().expect("W floats")
    };
    let b: [f32; W] = bias[c0..c0 + W].try_into().expect("W floats");
    // rows: t = Aᵀ M (2×4)
    let mut t = [[[0f32; W]; 4]; 2];
    for j in 0..4 {
        let (x0, x1, x2, x3) = (ld4(0, j), ld4(1, j), ld4(2, j), ld4(3, j));
        t[0][j] = std::array::from_fn(|q| x0[q] + x1[q] + x2[q]);
        t[1][j] = std::array::from_fn(|q| x1[q] - x2[q] - x3[q]);
    }
    // columns: y = t A (2×2), + bias, + residual
    for (dy, ti) in t.iter().enumerate() {
        let y: [[f32; W]; 2] = [
            std::array::from_fn(|q| (ti[0][q] + ti[1][q] + ti[2][q]) + b[q]),
            std::array::from_fn(|q| (ti[1][q] - ti[2][q] - ti[3][q]) + b[q]),
        ];
        for (dx, yv) in y.iter().enumerate() {
            let s = dy * ld + dx * c + c0;
            let dst: &mut [f32; W] = (&mut o[s..s + W]).try_into().expect("W floats");
            match res {
                Some(rs) => {
                    let r: [f32; W] = rs[s..s + W].try_into().expect("W floats");
                    *dst = std::array::from_fn(|q| r[q] + yv[q]);
                }
                None if in_place => *dst = std::array::from_fn(|q| dst[q] + yv[q]),
                None => *dst = *yv,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rnd(s: &mut u32) -> f32 {
        *s = s.wrapping_mul(1664525).wrapping_add(1013904223);
        (*s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
    }

    /// Against the direct convolution in f64, for every back-end, init kind and threading:
    /// close to it, and bit-identical across back-ends and thread splits.
    #[test]
    fn winograd_matches_direct_and_is_deterministic() {
        let mut s = 7u32;
        for &(r, g, cin, cout) in &[(4, 3, 5, 7), (8, 2, 32, 32), (16, 1, 20, 40), (2, 5, 17, 3)] {
            let wp = r + 2;
            let w: Vec<f32> = (0..9 * cin * cout).map(|_| rnd(&mut s)).collect();
            let bias: Vec<f32> = (0..cout).map(|_| rnd(&mut s)).collect();
            let mut pad = vec![0f32; g * wp * wp * cin];
            for gi in 0..g {
                for y in 1..=r {
                    for x in 1..=r {
                        for c in 0..cin {
                            pad[gi * wp * wp * cin + (y * wp + x) * cin + c] = rnd(&mut s);
                        }
                    }
                }
            }
            let resid: Vec<f32> = (0..g * r * r * cout).map(|_| rnd(&mut s)).collect();
            let mut want = vec![0f64; g * r * r * cout];
            for gi in 0..g {
                for y in 0..r {
                    for x in 0..r {
                        for co in 0..cout {
                            let mut acc = bias[co] as f64;
                            for ky in 0..3 {
                                for kx in 0..3 {
                                    for ci in 0..cin {
                                        acc += pad[gi * wp * wp * cin + ((y + ky) * wp + x + kx) * cin + ci] as f64 * w[((ky * 3 + kx) * cin + ci) * cout + co] as f64;
                                    }
                                }
                            }
                            want[((gi * r + y) * r + x) * cout + co] = acc;
                        }
                    }
                }
            }
            let u = transform_weights(&w, cin, cout);
            let mut outs = vec![];
            for be in Backend::available() {
                for par in [false, true] {
                    let mut o = vec![0f32; g * r * r * cout];
                    conv3(be, &u, cin, cout, &pad, r, g, &mut o, Init::Zero, &bias, par);
                    for (a, b) in o.iter().zip(&want) {
                        assert!((*a as f64 - b).abs() < 1e-4 * (1.0 + b.abs()), "{a} vs {b} (r {r}, cin {cin})");
                    }
                    let mut o2 = vec![0f32; g * r * r * cout];
                    conv3(be, &u, cin, cout, &pad, r, g, &mut o2, Init::From(&resid), &bias, par);
                    let mut o3 = resid.clone();
                    conv3(be, &u, cin, cout, &pad, r, g, &mut o3, Init::C, &bias, par);
                    assert_eq!(o2, o3, "Init::From and Init::C");
                    for ((a, b), z) in o2.iter().zip(&o).zip(&resid) {
                        assert_eq!(a.to_bits(), (z + b).to_bits(), "residual added last");
                    }
                    outs.push(o);
                }
            }
            for o in &outs {
                assert_eq!(o, &outs[0], "back-ends and threading agree bit for bit");
            }
        }
    }
}
