//! Deterministic f32 GEMM for convolutions, 1×1 convolutions, linear layers and attention.
//!
//! `C[m, 0..n] = init[m] + bias + Σ_k A[m, k] · B[k, 0..n]`, where A's row `m` is a set of
//! `taps.len()` runs of `kt` consecutive floats at `a[arows.off(m) + taps[j] ..]` (a 3×3
//! convolution over a zero-padded HWC input: 9 taps of `cin` channels), B is row-major
//! `[taps.len() * kt, ldb]` and C's row `m` starts at `c[crows.off(m)]`. Each output is one FMA chain in increasing k (see the module
//! docs of [`crate::kernels`]), so results do not depend on tiling, threads or back-end.

use super::Backend;

/// Where row `m` of A (or C) starts.
#[derive(Debug, Clone, Copy)]
pub enum Rows {
    /// Row `m` at `m * ld` (dense matrices, 1×1 convolutions, stacked images).
    Strided { ld: usize },
    /// Output pixel `m = (g * h_out + y) * w_out + x` of a 3×3 convolution with `stride`
    /// over padded HWC inputs of width `wp` (`= w_in + 2`), `cin` channels, one image
    /// every `img` floats: its window's top-left. (Also the pixel of a strided HWC output.)
    Conv { w_out: usize, h_out: usize, img: usize, wp: usize, cin: usize, stride: usize },
}

impl Rows {
    /// Rows of a 3×3 convolution of one image (`w_out × w_out` output).
    pub fn conv(w_out: usize, wp: usize, cin: usize, stride: usize) -> Self {
        Rows::Conv { w_out, h_out: w_out, img: 0, wp, cin, stride }
    }

    #[inline(always)]
    fn off(&self, m: usize) -> usize {
        match *self {
            Rows::Strided { ld } => m * ld,
            Rows::Conv { w_out, h_out, img, wp, cin, stride } => {
                let (g, r) = (m / (w_out * h_out), m % (w_out * h_out));
                let (y, x) = (r / w_out, r % w_out);
                g * img + (y * stride * wp + x * stride) * cin
            }
        }
    }

    /// The largest row offset among rows `0..m` (`m ≥ 1`).
    fn max_off(&self, m: usize) -> usize {
        match *self {
            Rows::Strided { .. } => self.off(m - 1),
            Rows::Conv { w_out, h_out, img, .. } => {
                let hw = w_out * h_out;
                let last = self.off(m - 1);
                if m > hw {
                    // the full image before the last one ends at row (g_last * hw - 1)
                    last.max(self.off((m - 1) / hw * hw - 1))
                } else {
                    let _ = img;
                    last
                }
            }
        }
    }

    /// Offsets of rows `m, m+1, …` (`out.len()` of them; rows past `m + rows - 1` repeat
    /// that row), with one division.
    #[inline(always)]
    fn offs(&self, m: usize, rows: usize, out: &mut [usize]) {
        match *self {
            Rows::Strided { ld } => {
                for (i, o) in out.iter_mut().enumerate() {
                    *o = (m + i.min(rows - 1)) * ld;
                }
            }
            Rows::Conv { w_out, h_out, img, wp, cin, stride } => {
                let hw = w_out * h_out;
                let (mut g, r) = (m / hw, m % hw);
                let (mut y, mut x) = (r / w_out, r % w_out);
                for (i, o) in out.iter_mut().enumerate() {
                    *o = g * img + (y * stride * wp + x * stride) * cin;
                    if i + 1 < rows {
                        x += 1;
                        if x == w_out {
                            x = 0;
                            y += 1;
                            if y == h_out {
                                y = 0;
                                g += 1;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The accumulator's starting value (before `bias` is added).
pub enum Init<'a> {
    /// Zero.
    Zero,
    /// C's previous contents (an in-place residual add).
    C,
    /// Another matrix with C's layout (`crows`): a residual add.
    From(&'a [f32]),
}

/// Arguments shared by all tiles of one GEMM (raw pointers; ranges checked by [`gemm`]).
#[derive(Clone, Copy)]
struct Job {
    a: *const f32,
    rows: Rows,
    taps: *const isize,
    ntaps: usize,
    kt: usize,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    crows: Rows,
    init: *const f32, // null: zero; else matrix with layout crows
    bias: *const f32, // null: none
    n: usize,
}
unsafe impl Send for Job {}
unsafe impl Sync for Job {}

/// Computes the GEMM described in the module docs for rows `0..m`, columns `0..n`.
///
/// `par`: split the rows between the threads of the current rayon pool (no effect on the
/// results). Panics if a slice is too short for the described access.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    be: Backend,
    m: usize,
    n: usize,
    a: &[f32],
    arows: Rows,
    taps: &[isize],
    kt: usize,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    crows: Rows,
    init: Init,
    bias: Option<&[f32]>,
    par: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    let k = taps.len() * kt;
    assert!(n <= ldb, "gemm: n {n} > ldb {ldb}");
    // distinct C rows (threads write disjoint rows)
    match crows {
        Rows::Strided { ld } => assert!(n <= ld || m == 1, "gemm: n {n} > ldc {ld}"),
        Rows::Conv { w_out, h_out, img, wp, cin, stride } => assert!(
            n <= cin && stride >= 1 && w_out * stride <= wp && (m <= w_out * h_out || img >= h_out * stride * wp * cin),
            "gemm: C rows overlap"
        ),
    }
    if k > 0 {
        let tmax = *taps.iter().max().unwrap();
        assert!(taps.iter().all(|&t| t >= 0));
        assert!(arows.max_off(m) + tmax as usize + kt <= a.len(), "gemm: A too short");
        assert!((k - 1) * ldb + n <= b.len(), "gemm: B too short");
    }
    assert!(crows.max_off(m) + n <= c.len(), "gemm: C too short");
    let initp = match init {
        Init::Zero => std::ptr::null(),
        Init::C => c.as_ptr(),
        Init::From(r) => {
            assert!(crows.max_off(m) + n <= r.len(), "gemm: init too short");
            r.as_ptr()
        }
    };
    if let Some(bs) = bias {
        assert!(bs.len() >= n, "gemm: bias too short");
    }
    let job = Job {
        a: a.as_ptr(),
        rows: arows,
        taps: taps.as_ptr(),
        ntaps: taps.len(),
        kt,
        b: b.as_ptr(),
        ldb,
        c: c.as_mut_ptr(),
        crows,
        init: initp,
        bias: bias.map_or(std::ptr::null(), |s| s.as_ptr()),
        n,
    };
    let threads = if par { rayon::current_num_threads() } else { 1 };
    // SAFETY: all accesses are inside the ranges checked above; disjoint row ranges.
    unsafe {
        if threads <= 1 || m < 32 {
            run_rows(be, &job, 0, m);
        } else {
            // `threads` row ranges, multiples of 24 rows (whole tiles; any split gives the same bits)
            let chunk = m.div_ceil(threads).div_ceil(24) * 24;
            rayon::scope(|s| {
                let mut m0 = 0;
                while m0 < m {
                    let m1 = (m0 + chunk).min(m);
                    let j = job;
                    s.spawn(move |_| run_rows(be, &j, m0, m1));
                    m0 = m1;
                }
            });
        }
    }
}

unsafe fn run_rows(be: Backend, j: &Job, m0: usize, m1: usize) {
    let mut n0 = 0;
    while n0 < j.n {
        let nb = (j.n - n0).min(64);
        let nv = nb.div_ceil(16);
        match be {
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512 => match nv {
                1 => avx512::block::<8, 1>(j, m0, m1, n0, nb),
                2 => avx512::block::<8, 2>(j, m0, m1, n0, nb),
                3 => avx512::block::<8, 3>(j, m0, m1, n0, nb),
                _ => avx512::block::<6, 4>(j, m0, m1, n0, nb),
            },
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2 => portable_block_fma(j, m0, m1, n0, nb),
            _ => portable_block::<4>(j, m0, m1, n0, nb),
        }
        n0 += nb;
    }
}

/// A full R×16 tile of the portable kernel (fixed sizes: accumulators stay in registers).
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn portable_tile<const R: usize>(j: &Job, taps: &[isize], aoff: &[usize; R], n0: usize, mut acc: [[f32; 16]; R]) -> [[f32; 16]; R] {
    let mut bp = j.b.add(n0);
    for &t in taps {
        let a: [*const f32; R] = std::array::from_fn(|i| j.a.add(aoff[i]).offset(t));
        for k in 0..j.kt {
            let bv: [f32; 16] = std::ptr::read_unaligned(bp as *const [f32; 16]);
            for i in 0..R {
                let av = *a[i].add(k);
                for q in 0..16 {
                    acc[i][q] = av.mul_add(bv[q], acc[i][q]);
                }
            }
            bp = bp.add(j.ldb);
        }
    }
    acc
}

/// The portable kernel compiled for AVX2 + FMA, with 6-row tiles: 12 accumulators (two
/// 8-lane registers a row) keep both FMA pipes busy through the FMA latency, where 4 rows
/// (8 chains) left them idle a fifth of the time; 15 of the 16 vector registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn portable_block_fma(j: &Job, m0: usize, m1: usize, n0: usize, nb: usize) {
    portable_block::<6>(j, m0, m1, n0, nb)
}

/// Portable kernel: the same FMA chains as the AVX-512 one. Tiles of R rows × 16 columns
/// (fixed sizes, so the compiler keeps them in vector registers); short column blocks one
/// output at a time. Every output is the same FMA chain whatever R.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn portable_block<const R: usize>(j: &Job, m0: usize, m1: usize, n0: usize, nb: usize) {
    const W: usize = 16;
    let taps = std::slice::from_raw_parts(j.taps, j.ntaps);
    let mut q0 = 0;
    while q0 < nb {
        let w = (nb - q0).min(W);
        let mut m = m0;
        while m < m1 {
            let rows = (m1 - m).min(R);
            let mut acc = [[0f32; W]; R];
            let mut aoff = [0usize; R];
            let mut coff = [0usize; R];
            j.rows.offs(m, rows, &mut aoff);
            j.crows.offs(m, rows, &mut coff);
            for i in 0..R {
                for q in 0..w {
                    let mut v = if j.init.is_null() { 0.0 } else { *j.init.add(coff[i] + n0 + q0 + q) };
                    if !j.bias.is_null() {
                        v += *j.bias.add(n0 + q0 + q);
                    }
                    acc[i][q] = v;
                }
            }
            if w == W {
                acc = portable_tile(j, taps, &aoff, n0 + q0, acc);
            } else {
                let mut bp = j.b.add(n0 + q0);
                for &t in taps {
                    for k in 0..j.kt {
                        for i in 0..R {
                            let av = *j.a.add(aoff[i]).offset(t).add(k);
                            for q in 0..w {
                                acc[i][q] = av.mul_add(*bp.add(q), acc[i][q]);
                            }
                        }
                        bp = bp.add(j.ldb);
                    }
                }
            }
            for i in 0..rows {
                std::ptr::copy_nonoverlapping(acc[i].as_ptr(), j.c.add(coff[i] + n0 + q0), w);
            }
            m += rows;
        }
        q0 += w;
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx512 {
    use super::Job;
    use std::arch::x86_64::*;

    /// Bytes of B kept in L1 per k-block.
    const L1_B: usize = 24 * 1024;

    /// Rows `m0..m1`, columns `n0..n0+nb` (nb ≤ 16·NV) in tiles of MR rows; a short last
    /// tile repeats its last row (computed again, stored once: same arithmetic per output).
    /// The reduction runs in k-blocks whose B panel stays in L1; between blocks the partial
    /// sums go through C unchanged (f32), so each output is still one FMA chain in k order.
    #[target_feature(enable = "avx512f,fma")]
    pub(super) unsafe fn block<const MR: usize, const NV: usize>(j: &Job, m0: usize, m1: usize, n0: usize, nb: usize) {
        let mut masks = [0xffffu16; NV];
        for (v, mk) in masks.iter_mut().enumerate() {
            let rem = nb.saturating_sub(16 * v).min(16);
            *mk = if rem >= 16 { 0xffff } else { ((1u32 << rem) - 1) as u16 };
        }
        let ktot = j.ntaps * j.kt;
        let kb = (L1_B / (64 * NV)).max(16);
        // balanced blocks: ceil(ktot / kb) blocks of near-equal size
        let nblk = ktot.div_ceil(kb).max(1);
        let kb = ktot.div_ceil(nblk).max(1);
        let mut k0 = 0;
        loop {
            let k1 = (k0 + kb).min(ktot);
            // the block's runs of consecutive k: (offset into an A row, length)
            let mut segs = [(0isize, 0usize); MAX_SEGS];
            let mut ns = 0;
            let mut k = k0;
            while k < k1 {
                let (t, kk) = (k / j.kt, k % j.kt);
                let steps = (j.kt - kk).min(k1 - k);
                if ns == MAX_SEGS {
                    break;
                }
                segs[ns] = (*j.taps.add(t) + kk as isize, steps);
                ns += 1;
                k += steps;
            }
            let k1 = k; // shortened if the block had too many runs
            let mut m = m0;
            while m < m1 {
                let rows = (m1 - m).min(MR);
                tile::<MR, NV>(j, m, rows, n0, &masks, k0, &segs[..ns]);
                m += rows;
            }
            k0 = k1;
            if k0 >= ktot {
                break;
            }
        }
    }

    const MAX_SEGS: usize = 32;

    /// One reduction index of an MR × 16·NV register tile: `acc[i] += a[i][k] · B row at bp`
    /// (one FMA per output; the micro-kernels of the GEMM and of the Winograd products).
    #[inline(always)]
    pub(in crate::kernels) unsafe fn rank1<const MR: usize, const NV: usize>(acc: &mut [[__m512; NV]; MR], a: &[*const f32; MR], k: usize, bp: *const f32, masks: &[u16; NV]) {
        let mut bv = [_mm512_setzero_ps(); NV];
        for v in 0..NV {
            bv[v] = _mm512_maskz_loadu_ps(masks[v], bp.add(16 * v));
        }
        for i in 0..MR {
            let av = _mm512_set1_ps(*a[i].add(k));
            for v in 0..NV {
                acc[i][v] = _mm512_fmadd_ps(av, bv[v], acc[i][v]);
            }
        }
    }

    /// One register tile over the reduction range starting at flat index `k0`, given as runs.
    #[inline(always)]
    unsafe fn tile<const MR: usize, const NV: usize>(j: &Job, m: usize, rows: usize, n0: usize, masks: &[u16; NV], k0: usize, segs: &[(isize, usize)]) {
        let mut aoff = [0usize; MR];
        let mut coff = [0usize; MR];
        j.rows.offs(m, rows, &mut aoff);
        j.crows.offs(m, rows, &mut coff);
        let mut cp = [std::ptr::null_mut::<f32>(); MR];
        for i in 0..MR {
            cp[i] = j.c.add(coff[i] + n0);
        }
        let mut acc = [[_mm512_setzero_ps(); NV]; MR];
        if k0 == 0 {
            for v in 0..NV {
                let bias = if j.bias.is_null() {
                    _mm512_setzero_ps()
                } else {
                    _mm512_maskz_loadu_ps(masks[v], j.bias.add(n0 + 16 * v))
                };
                for i in 0..MR {
                    let init = if j.init.is_null() {
                        _mm512_setzero_ps()
                    } else {
                        _mm512_maskz_loadu_ps(masks[v], j.init.add(coff[i] + n0 + 16 * v))
                    };
                    acc[i][v] = if j.bias.is_null() { init } else { _mm512_add_ps(init, bias) };
                }
            }
        } else {
            for i in 0..MR {
                for v in 0..NV {
                    acc[i][v] = _mm512_maskz_loadu_ps(masks[v], cp[i].add(16 * v));
                }
            }
        }
        let ldb = j.ldb;
        let mut bp = j.b.add(n0 + k0 * ldb);
        for &(off, steps) in segs {
            let mut a = [std::ptr::null::<f32>(); MR];
            for i in 0..MR {
                a[i] = j.a.add(aoff[i]).offset(off);
            }
            for s in 0..steps {
                rank1(&mut acc, &a, s, bp, masks);
                bp = bp.add(ldb);
            }
        }
        for i in 0..rows {
            for v in 0..NV {
                _mm512_mask_storeu_ps(cp[i].add(16 * v), masks[v], acc[i][v]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::too_many_arguments)]
    fn naive(m: usize, n: usize, a: &[f32], rows: Rows, taps: &[isize], kt: usize, b: &[f32], ldb: usize) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for q in 0..n {
                let mut s = 0f64;
                for (ti, &t) in taps.iter().enumerate() {
                    for k in 0..kt {
                        s += a[(rows.off(i) as isize + t) as usize + k] as f64 * b[(ti * kt + k) * ldb + q] as f64;
                    }
                }
                c[i * n + q] = s as f32;
            }
        }
        c
    }

    #[test]
    fn gemm_matches_naive_and_backends_agree() {
        let mut s = 1u32;
        let mut rnd = move || {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        for &(m, n, kt, ntaps) in &[(37, 5, 3, 2), (50, 64, 16, 1), (29, 100, 7, 3), (13, 33, 9, 1)] {
            let taps: Vec<isize> = (0..ntaps).map(|t| (t * 5) as isize).collect();
            let ld = kt + 10;
            let a: Vec<f32> = (0..m * ld + 20).map(|_| rnd()).collect();
            let ldb = n + 3;
            let b: Vec<f32> = (0..ntaps * kt * ldb).map(|_| rnd()).collect();
            let want = naive(m, n, &a, Rows::Strided { ld }, &taps, kt, &b, ldb);
            let mut outs = vec![];
            for be in Backend::available() {
                for par in [false, true] {
                    let mut c = vec![0f32; m * n];
                    gemm(be, m, n, &a, Rows::Strided { ld }, &taps, kt, &b, ldb, &mut c, Rows::Strided { ld: n }, Init::Zero, None, par);
                    outs.push(c);
                }
            }
            for c in &outs {
                assert_eq!(c, &outs[0]);
            }
            for (x, y) in outs[0].iter().zip(&want) {
                assert!((x - y).abs() < 1e-4, "{x} vs {y}");
            }
        }
    }
}
