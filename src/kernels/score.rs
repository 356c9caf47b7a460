//! The PFR encoder's candidate scores with a quadratic term per dimension, fused.
//!
//! For one panel of [`PANEL`] candidates (`panel[k * PANEL + i]`: candidate `i`'s value at
//! column `k`, `k < COLS`) and `g` chunks with linear coefficients `lin[c * COLS + k]` and
//! quadratic coefficients `quad[c * COLS + k]` (zero past a chunk's columns), adds to
//! `out[c * ld + i]` the chunk's log-ratio terms
//!
//! `L = Σ_k lin[c,k] · z_ik`, `Q = Σ_k quad[c,k] · z_ik²` as `out = (out + L) + Q`,
//!
//! each sum one FMA chain in increasing `k` from 0 and `z²` one rounded product, so the
//! result does not depend on the back-end. This replaced, for the learned variance's exact
//! quadratic scoring (the default stream), two GEMM calls, a pass that squared the panel and a
//! norm loop per panel ([`crate::rcc::pfr`]): the panel is read once and squared in registers.
//! Hand-written because the encoder spends most of its time here and a portable loop is
//! latency-bound (one FMA chain per accumulator); the scores are the encoder's alone (the
//! decoder regenerates the chosen candidate), so only determinism across threads and
//! back-ends is required, and both hold.

use super::Backend;

/// Candidates per panel.
pub const PANEL: usize = 16;
/// Columns per panel.
pub const COLS: usize = 64;

/// See the module docs. `kmax[c]`: chunk `c`'s column count (its coefficients are zero past
/// it); `out` rows are `ld` apart. Panics if the slices are too short.
pub fn panel_scores(be: Backend, g: usize, lin: &[f32], quad: &[f32], kmax: &[usize], panel: &[f32], out: &mut [f32], ld: usize) {
    assert!(lin.len() >= g * COLS && quad.len() >= g * COLS && kmax.len() >= g && panel.len() >= COLS * PANEL);
    assert!(g == 0 || out.len() >= (g - 1) * ld + PANEL);
    assert!(kmax[..g].iter().all(|&k| k <= COLS));
    #[cfg(target_arch = "x86_64")]
    if be == Backend::Avx512 {
        // SAFETY: Backend::Avx512 is only chosen when avx512f and fma are detected; the
        // bounds were checked above.
        unsafe { avx512::panel_scores(g, lin, quad, kmax, panel, out, ld) };
        return;
    }
    let _ = be;
    portable(g, lin, quad, kmax, panel, out, ld);
}

fn portable(g: usize, lin: &[f32], quad: &[f32], kmax: &[usize], panel: &[f32], out: &mut [f32], ld: usize) {
    for c in 0..g {
        let (mut l, mut q) = ([0f32; PANEL], [0f32; PANEL]);
        for k in 0..kmax[c] {
            let (a, b) = (lin[c * COLS + k], quad[c * COLS + k]);
            for i in 0..PANEL {
                let z = panel[k * PANEL + i];
                l[i] = a.mul_add(z, l[i]);
                q[i] = b.mul_add(z * z, q[i]);
            }
        }
        for i in 0..PANEL {
            let o = &mut out[c * ld + i];
            *o = (*o + l[i]) + q[i];
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{COLS, PANEL};
    use std::arch::x86_64::*;

    /// Chunks in groups of four: eight independent FMA chains keep both FMA ports busy.
    /// Columns past a chunk's count have zero coefficients, and fma(0, z, acc) = acc for the
    /// finite pool values, so a group runs to its largest count with the same result.
    #[target_feature(enable = "avx512f,fma")]
    pub(super) unsafe fn panel_scores(g: usize, lin: &[f32], quad: &[f32], kmax: &[usize], panel: &[f32], out: &mut [f32], ld: usize) {
        let (lp, qp, pp) = (lin.as_ptr(), quad.as_ptr(), panel.as_ptr());
        let mut c0 = 0;
        while c0 < g {
            let n = (g - c0).min(4);
            let km = kmax[c0..c0 + n].iter().copied().max().unwrap_or(0);
            let mut l = [_mm512_setzero_ps(); 4];
            let mut q = [_mm512_setzero_ps(); 4];
            // rows past n repeat row c0 (computed, not stored)
            let rows: [usize; 4] = std::array::from_fn(|r| c0 + if r < n { r } else { 0 });
            for k in 0..km {
                let z = _mm512_loadu_ps(pp.add(k * PANEL));
                let zz = _mm512_mul_ps(z, z);
                for r in 0..4 {
                    let a = _mm512_set1_ps(*lp.add(rows[r] * COLS + k));
                    let b = _mm512_set1_ps(*qp.add(rows[r] * COLS + k));
                    l[r] = _mm512_fmadd_ps(a, z, l[r]);
                    q[r] = _mm512_fmadd_ps(b, zz, q[r]);
                }
            }
            for r in 0..n {
                let o = out.as_mut_ptr().add((c0 + r) * ld);
                let v = _mm512_add_ps(_mm512_add_ps(_mm512_loadu_ps(o), l[r]), q[r]);
                _mm512_storeu_ps(o, v);
            }
            c0 += n;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// int8 scores
// ---------------------------------------------------------------------------------------------

/// Groups of four columns per panel (the int8 layout's 32-bit lanes).
pub const K4: usize = COLS / 4;
/// Bytes of one int8 panel.
pub const PANEL_BYTES: usize = PANEL * COLS;

/// The PFR encoder's int8 scores ([`crate::rcc::quant`]). One int8 panel holds [`PANEL`]
/// candidates × [`COLS`] columns as offset bytes, `panel[k4 * 64 + i * 4 + t] = zq(i, 4·k4 + t) + 128`
/// (`zq` a level in −127..=127), and `sq[|zq|]` is the level of its square. For `g` chunks
/// with four signed 8-bit linear coefficients per 32-bit word (`lin[c * K4 + k4]`, byte t for
/// column 4·k4 + t, little endian) and four quadratic ones (`quad[c * K4 + k4]`), in one
/// common unit, adds
///
/// `acc[c * ld + i] (+)= Σ_k lin[c, k] · (zq(i, k) + 128) + quad[c, k] · sq[|zq(i, k)|]`
///
/// over `k < 4 · k4max[c]` (added to `acc` with `add`, stored over it without), exactly (integers: every back-end gives the same values; the
/// caller keeps the sums below 2^31). Hand-written because it is the encoder's inner loop:
/// with AVX-512 VNNI one instruction does 64 of these multiply-adds, four times the f32 FMA's
/// 16, and the panel is a quarter of the f32 pool's bytes (the f32 scorer [`panel_scores`] is
/// bound by streaming the pool from memory on the Intel Xeon, bench/rcc/session12/).
#[allow(clippy::too_many_arguments)]
pub fn panel_scores_i8(be: Backend, g: usize, lin: &[i32], quad: &[i32], k4max: &[usize], panel: &[u8], sq: &[u8; 128], acc: &mut [i32], ld: usize, add: bool) {
    assert!(lin.len() >= g * K4 && quad.len() >= g * K4 && k4max.len() >= g && panel.len() >= PANEL_BYTES);
    assert!(g == 0 || acc.len() >= (g - 1) * ld + PANEL);
    assert!(k4max[..g].iter().all(|&k| k <= K4));
    #[cfg(target_arch = "x86_64")]
    if be == Backend::Avx512 && use_vnni() {
        // SAFETY: the features were detected at run time; the bounds were checked above.
        unsafe { vnni::panel_scores_i8(g, lin, quad, k4max, panel, sq, acc, ld, add) };
        return;
    }
    let _ = be;
    portable_i8(g, lin, quad, k4max, panel, sq, acc, ld, add);
}

/// Whether the CPU has what [`panel_scores_i8`]'s AVX-512 VNNI kernel needs (VNNI, BW and
/// VBMI besides AVX-512F; decided once). Elsewhere the portable loop gives the same integers.
pub fn use_vnni() -> bool {
    use std::sync::OnceLock;
    static V: OnceLock<bool> = OnceLock::new();
    *V.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vnni")
                && std::arch::is_x86_feature_detected!("avx512vbmi")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

#[allow(clippy::too_many_arguments)]
fn portable_i8(g: usize, lin: &[i32], quad: &[i32], k4max: &[usize], panel: &[u8], sq: &[u8; 128], acc: &mut [i32], ld: usize, add: bool) {
    for c in 0..g {
        let mut a = [0i32; PANEL];
        for k4 in 0..k4max[c] {
            let (lw, qw) = (lin[c * K4 + k4].to_le_bytes(), quad[c * K4 + k4].to_le_bytes());
            for (i, ai) in a.iter_mut().enumerate() {
                for t in 0..4 {
                    let u = panel[k4 * 64 + i * 4 + t];
                    let s = sq[((u ^ 0x80) as i8).unsigned_abs() as usize];
                    *ai += lw[t] as i8 as i32 * u as i32 + qw[t] as i8 as i32 * s as i32;
                }
            }
        }
        for (o, &v) in acc[c * ld..c * ld + PANEL].iter_mut().zip(&a) {
            *o = if add { *o + v } else { v };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use super::K4;
    use std::arch::x86_64::*;

    /// Chunks in groups of 16, 8, 4, 2 or 1 (one accumulator each, no row computed twice);
    /// per four columns one load, the squares' levels by a 128-entry byte shuffle shared by
    /// the group, and two `vpdpbusd` per chunk into its accumulator. Coefficients past a
    /// chunk's columns are zero, so a group runs to its largest count.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vbmi")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn panel_scores_i8(g: usize, lin: &[i32], quad: &[i32], k4max: &[usize], panel: &[u8], sq: &[u8; 128], acc: &mut [i32], ld: usize, add: bool) {
        let mut c0 = 0;
        while c0 < g {
            let n = g - c0;
            let nb = if n >= 16 { 16 } else if n >= 8 { 8 } else if n >= 4 { 4 } else if n >= 2 { 2 } else { 1 };
            let km = k4max[c0..c0 + nb].iter().copied().max().unwrap_or(0);
            let args = (lin.as_ptr().add(c0 * K4), quad.as_ptr().add(c0 * K4), panel.as_ptr(), sq, acc.as_mut_ptr().add(c0 * ld), ld, km, add);
            match nb {
                16 => rows::<16>(args),
                8 => rows::<8>(args),
                4 => rows::<4>(args),
                2 => rows::<2>(args),
                _ => rows::<1>(args),
            }
            c0 += nb;
        }
    }

    type Args<'a> = (*const i32, *const i32, *const u8, &'a [u8; 128], *mut i32, usize, usize, bool);

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vbmi")]
    unsafe fn rows<const NB: usize>((lp, qp, pp, sq, op, ld, km, add): Args<'_>) {
        let lo = _mm512_loadu_si512(sq.as_ptr() as *const _);
        let hi = _mm512_loadu_si512(sq.as_ptr().add(64) as *const _);
        let flip = _mm512_set1_epi8(-128);
        let mut a = [_mm512_setzero_si512(); NB];
        for k4 in 0..km {
            let u = _mm512_loadu_si512(pp.add(k4 * 64) as *const _);
            let s = _mm512_permutex2var_epi8(lo, _mm512_abs_epi8(_mm512_xor_si512(u, flip)), hi);
            for (r, ar) in a.iter_mut().enumerate() {
                *ar = _mm512_dpbusd_epi32(*ar, u, _mm512_set1_epi32(*lp.add(r * K4 + k4)));
                *ar = _mm512_dpbusd_epi32(*ar, s, _mm512_set1_epi32(*qp.add(r * K4 + k4)));
            }
        }
        for (r, ar) in a.iter().enumerate() {
            let o = op.add(r * ld);
            let v = if add { _mm512_add_epi32(_mm512_loadu_si512(o as *const _), *ar) } else { *ar };
            _mm512_storeu_si512(o as *mut _, v);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// int8 scores of a whole range, all blocks (AMX where the CPU has it)
// ---------------------------------------------------------------------------------------------

/// One block (64 columns) of a range for [`range_scores_i8`]: the group's coefficient words
/// (`lin[c * K4 + k4]`, `quad[c * K4 + k4]`, as in [`panel_scores_i8`]), the chunks' word
/// counts, and the range's int8 panels of this block, one after another (`w / PANEL` of them).
#[derive(Clone, Copy)]
pub struct BlockPanels<'a> {
    pub lin: &'a [i32],
    pub quad: &'a [i32],
    pub k4max: &'a [usize],
    pub panels: &'a [u8],
}

/// The integer sums of [`panel_scores_i8`] over every block of a range of `w` candidates (a
/// multiple of [`PANEL`]): `out[c * w + i] = Σ_blocks Σ_k …` for the `g` chunks. The same
/// integers on every path: with Intel AMX (TDPBSUD: the chunks' signed coefficients as the A
/// tile, the panel as it lies in memory as the B tile, all blocks accumulated in the C tiles)
/// where the CPU and the OS allow it, else block after block with [`panel_scores_i8`].
pub fn range_scores_i8(be: Backend, g: usize, blocks: &[BlockPanels<'_>], sq: &[u8; 128], out: &mut [i32], w: usize) {
    range_scores_i8_with(be, true, g, blocks, sq, out, w)
}

/// `amx`: whether AMX may run (where [`use_amx`]); false for the block-by-block path.
fn range_scores_i8_with(be: Backend, amx: bool, g: usize, blocks: &[BlockPanels<'_>], sq: &[u8; 128], out: &mut [i32], w: usize) {
    assert!(w % PANEL == 0 && out.len() >= g * w);
    for b in blocks {
        assert!(b.lin.len() >= g * K4 && b.quad.len() >= g * K4 && b.k4max.len() >= g && b.panels.len() >= w / PANEL * PANEL_BYTES);
        assert!(b.k4max[..g].iter().all(|&k| k <= K4));
    }
    if g == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if amx && be == Backend::Avx512 && use_amx() {
        // SAFETY: AMX was detected and granted (use_amx), the VBMI/BW features by use_vnni;
        // the bounds were checked above.
        unsafe { amx::range_scores(g, blocks, sq, out, w) };
        return;
    }
    let _ = amx;
    if blocks.is_empty() {
        out[..g * w].fill(0);
    }
    for (s, b) in blocks.iter().enumerate() {
        for jj in (0..w).step_by(PANEL) {
            let p = &b.panels[jj / PANEL * PANEL_BYTES..];
            panel_scores_i8(be, g, b.lin, b.quad, b.k4max, p, sq, &mut out[jj..], w, s > 0);
        }
    }
}

/// Whether [`range_scores_i8`] runs on Intel AMX: the CPU has AMX-TILE and AMX-INT8, Linux
/// granted this process the tile state (`arch_prctl(ARCH_REQ_XCOMP_PERM)`), and the
/// environment variable `DDPM_CODEC_AMX=0` does not turn it off (decided once). The integers
/// are the same either way; only the speed differs.
pub fn use_amx() -> bool {
    use std::sync::OnceLock;
    static A: OnceLock<bool> = OnceLock::new();
    *A.get_or_init(|| {
        if std::env::var("DDPM_CODEC_AMX").is_ok_and(|v| v == "0") {
            return false;
        }
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        {
            let l7 = std::arch::x86_64::__cpuid_count(7, 0);
            let (tile, int8) = (l7.edx >> 24 & 1 == 1, l7.edx >> 25 & 1 == 1);
            if !(tile && int8 && use_vnni()) {
                return false;
            }
            const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
            const XFEATURE_XTILEDATA: libc::c_long = 18;
            // SAFETY: a plain system call with integer arguments; on failure AMX stays off.
            unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 }
        }
        #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
        {
            false
        }
    })
}

#[cfg(target_arch = "x86_64")]
mod amx {
    //! Hand-written with inline assembly: Rust has no stable AMX intrinsics. Tiles: 0–3 the
    //! sums of four panels (chunks × 16 candidates, i32), 4 and 5 the linear and quadratic
    //! coefficients (chunks × 64 signed bytes), 6 a panel (16 groups of four columns × 16
    //! candidates × 4 bytes: the memory layout is already TDPBSUD's B layout), 7 its squares'
    //! levels (computed into a scratch panel with the VBMI byte table, as in the VNNI kernel).
    use super::{BlockPanels, K4, PANEL, PANEL_BYTES};
    use std::arch::asm;
    use std::arch::x86_64::*;

    #[repr(C, align(64))]
    struct TileConfig([u8; 64]);

    impl TileConfig {
        /// Palette 1, every tile 64 bytes wide: tiles 0, 1, 4, 5 `rows` high (sums and
        /// coefficients), tiles 2, 3, 6, 7 16 high (panels and squares).
        fn new(rows: usize) -> Self {
            let mut c = [0u8; 64];
            c[0] = 1;
            for t in 0..8 {
                let r = if matches!(t, 0 | 1 | 4 | 5) { rows } else { 16 };
                c[16 + 2 * t..18 + 2 * t].copy_from_slice(&64u16.to_le_bytes());
                c[48 + t] = r as u8;
            }
            TileConfig(c)
        }
    }

    #[repr(C, align(64))]
    struct Scratch([u8; PANEL_BYTES]);

    macro_rules! dp {
        ($c:literal, $b:literal, $s:literal, $p:expr, $q:expr) => {
            asm!(
                concat!("tileloadd tmm", $b, ", [{p} + {st}*1]"),
                concat!("tileloadd tmm", $s, ", [{s} + {st}*1]"),
                concat!("tdpbsud tmm", $c, ", tmm4, tmm", $b),
                concat!("tdpbsud tmm", $c, ", tmm5, tmm", $s),
                p = in(reg) $p, s = in(reg) $q, st = in(reg) 64usize,
                options(nostack, readonly)
            )
        };
    }
    macro_rules! store {
        ($c:literal, $o:expr, $ld:expr) => {
            asm!(concat!("tilestored [{o} + {ld}*1], tmm", $c), o = in(reg) $o, ld = in(reg) $ld, options(nostack))
        };
    }

    /// Panels this far ahead (in the same block) are prefetched: a block's panels are
    /// contiguous, but the loop interleaves the blocks, one 2 KiB step each.
    const AHEAD: usize = 16;

    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    unsafe fn squares(panel: *const u8, sq: &[u8; 128], out: &mut Scratch) {
        let lo = _mm512_loadu_si512(sq.as_ptr() as *const _);
        let hi = _mm512_loadu_si512(sq.as_ptr().add(64) as *const _);
        let flip = _mm512_set1_epi8(-128);
        for r in 0..PANEL_BYTES / 64 {
            let u = _mm512_loadu_si512(panel.add(r * 64) as *const _);
            let s = _mm512_permutex2var_epi8(lo, _mm512_abs_epi8(_mm512_xor_si512(u, flip)), hi);
            _mm512_store_si512(out.0.as_mut_ptr().add(r * 64) as *mut _, s);
        }
    }

    /// See [`super::range_scores_i8`]; the caller checked the bounds and the features. Two
    /// panels at a time (tiles 0–1 their sums, 6–7 and 2–3 their values and squares), so one
    /// panel's loads overlap the other's products; the sums stay in the tiles over all
    /// blocks. Bound by reading the pool (≈ 1 KiB per panel and block from L3 or memory).
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    pub(super) unsafe fn range_scores(g: usize, blocks: &[BlockPanels<'_>], sq: &[u8; 128], out: &mut [i32], w: usize) {
        let mut scratch: [Scratch; 2] = std::array::from_fn(|_| Scratch([0; PANEL_BYTES]));
        let panels = w / PANEL;
        let ld = w * 4;
        let mut rows_configured = 0;
        for c0 in (0..g).step_by(16) {
            let rows = (g - c0).min(16);
            if rows != rows_configured {
                let cfg = TileConfig::new(rows);
                asm!("ldtilecfg [{}]", in(reg) cfg.0.as_ptr(), options(nostack, readonly));
                rows_configured = rows;
            }
            // blocks where some chunk of this group has columns
            let live: Vec<&BlockPanels<'_>> = blocks.iter().filter(|b| b.k4max[c0..c0 + rows].iter().any(|&k| k > 0)).collect();
            for q in (0..panels).step_by(2) {
                let two = q + 1 < panels;
                asm!("tilezero tmm0", "tilezero tmm1", options(nostack, nomem));
                for b in &live {
                    asm!(
                        "tileloadd tmm4, [{l} + {st}*1]",
                        "tileloadd tmm5, [{a} + {st}*1]",
                        l = in(reg) b.lin.as_ptr().add(c0 * K4), a = in(reg) b.quad.as_ptr().add(c0 * K4), st = in(reg) 64usize,
                        options(nostack, readonly)
                    );
                    let p0 = b.panels.as_ptr().add(q * PANEL_BYTES);
                    if q + AHEAD + 2 <= panels {
                        let f = p0.add(AHEAD * PANEL_BYTES);
                        for line in (0..2 * PANEL_BYTES).step_by(64) {
                            _mm_prefetch::<_MM_HINT_T0>(f.add(line) as *const i8);
                        }
                    }
                    squares(p0, sq, &mut scratch[0]);
                    dp!("0", "6", "7", p0, scratch[0].0.as_ptr());
                    if two {
                        squares(p0.add(PANEL_BYTES), sq, &mut scratch[1]);
                        dp!("1", "2", "3", p0.add(PANEL_BYTES), scratch[1].0.as_ptr());
                    }
                }
                let o = out.as_mut_ptr().add(c0 * w + q * PANEL);
                store!("0", o, ld);
                if two {
                    store!("1", o.add(PANEL), ld);
                }
            }
        }
        asm!("tilerelease", options(nostack, nomem));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_backends_agree_and_match_the_definition() {
        let mut s = 7u32;
        let mut r = || {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            s >> 8
        };
        let panel: Vec<u8> = (0..PANEL_BYTES).map(|_| (1 + r() % 255) as u8).collect();
        let sq: [u8; 128] = std::array::from_fn(|a| ((a * a * 255) / (127 * 127)) as u8);
        // every group size of the VNNI kernel (16, 8, 4, 2, 1) and its remainders
        for g in [1usize, 2, 3, 5, 11, 16, 31] {
            let k4max: Vec<usize> = (0..g).map(|c| [16, 15, 16, 3, 1, 0, 16, 9][c % 8]).collect();
            let mut lin8 = vec![0i32; g * COLS];
            let mut quad8 = vec![0i32; g * COLS];
            let (mut lin, mut quad) = (vec![0i32; g * K4], vec![0i32; g * K4]);
            for c in 0..g {
                for k in 0..4 * k4max[c] {
                    lin8[c * COLS + k] = (r() % 255) as i32 - 127;
                    quad8[c * COLS + k] = (r() % 255) as i32 - 127;
                }
                for k4 in 0..K4 {
                    let pack = |v: &[i32]| i32::from_le_bytes(std::array::from_fn(|t| v[c * COLS + 4 * k4 + t] as i8 as u8));
                    lin[c * K4 + k4] = pack(&lin8);
                    quad[c * K4 + k4] = pack(&quad8);
                }
            }
            let ld = 37;
            let init: Vec<i32> = (0..g * ld).map(|_| (r() % 1000) as i32 - 500).collect();
            let mut want = init.clone();
            portable_i8(g, &lin, &quad, &k4max, &panel, &sq, &mut want, ld, true);
            for c in 0..g {
                for i in 0..PANEL {
                    let mut v = init[c * ld + i] as i64;
                    for k in 0..COLS {
                        let u = panel[(k / 4) * 64 + i * 4 + k % 4];
                        let zq = u as i64 - 128;
                        v += lin8[c * COLS + k] as i64 * u as i64 + quad8[c * COLS + k] as i64 * sq[zq.unsigned_abs() as usize] as i64;
                    }
                    assert_eq!(want[c * ld + i] as i64, v, "g {g} chunk {c} candidate {i}");
                }
            }
            for be in Backend::available() {
                let mut got = init.clone();
                panel_scores_i8(be, g, &lin, &quad, &k4max, &panel, &sq, &mut got, ld, true);
                assert_eq!(got, want, "g {g} {be:?} (vnni: {})", use_vnni());
                // stored over the buffer: the sums alone (rows between chunks untouched)
                let mut got = init.clone();
                panel_scores_i8(be, g, &lin, &quad, &k4max, &panel, &sq, &mut got, ld, false);
                for c in 0..g {
                    for i in 0..ld {
                        let want_ci = if i < PANEL { want[c * ld + i] - init[c * ld + i] } else { init[c * ld + i] };
                        assert_eq!(got[c * ld + i], want_ci, "g {g} {be:?} stored, chunk {c} lane {i}");
                    }
                }
            }
        }
    }

    #[test]
    fn range_scores_agree_on_every_path() {
        // AMX (where the CPU and the OS allow it), VNNI and the portable loop: the same integers
        // for ranges of every panel count modulo 4, chunk groups of more and fewer than 16 rows,
        // chunks that end in different blocks, and a block no chunk of a group reaches
        let mut s = 11u32;
        let mut r = || {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            s >> 8
        };
        let sq: [u8; 128] = std::array::from_fn(|a| ((a * a * 255) / (127 * 127)) as u8);
        for (g, w, nb) in [(1usize, 16usize, 1usize), (5, 48, 3), (16, 64, 2), (17, 80, 4), (35, 112, 3)] {
            let k4max: Vec<Vec<usize>> = (0..nb).map(|b| (0..g).map(|c| if c % 3 == 1 && b > 0 { 0 } else if b + 1 == nb { 1 + (c * 7 + b) % K4 } else { K4 }).collect()).collect();
            let panels: Vec<Vec<u8>> = (0..nb).map(|_| (0..w / PANEL * PANEL_BYTES).map(|_| (1 + r() % 255) as u8).collect()).collect();
            let word = |r: &mut dyn FnMut() -> u32| i32::from_le_bytes(std::array::from_fn(|_| ((r() % 255) as i32 - 127) as i8 as u8));
            let mut lin = vec![vec![0i32; g * K4]; nb];
            let mut quad = vec![vec![0i32; g * K4]; nb];
            for b in 0..nb {
                for c in 0..g {
                    for k4 in 0..k4max[b][c] {
                        lin[b][c * K4 + k4] = word(&mut r);
                        quad[b][c * K4 + k4] = word(&mut r);
                    }
                }
            }
            let blocks: Vec<BlockPanels<'_>> = (0..nb).map(|b| BlockPanels { lin: &lin[b], quad: &quad[b], k4max: &k4max[b], panels: &panels[b] }).collect();
            let mut want = vec![0i32; g * w];
            range_scores_i8_with(Backend::Scalar, false, g, &blocks, &sq, &mut want, w);
            // the definition, chunk by chunk
            for c in 0..g {
                for i in 0..w {
                    let mut v = 0i64;
                    for b in 0..nb {
                        for k in 0..4 * K4 {
                            let u = panels[b][(i / PANEL) * PANEL_BYTES + (k / 4) * 64 + (i % PANEL) * 4 + k % 4];
                            let zq = u as i64 - 128;
                            let (lb, qb) = (lin[b][c * K4 + k / 4].to_le_bytes()[k % 4] as i8 as i64, quad[b][c * K4 + k / 4].to_le_bytes()[k % 4] as i8 as i64);
                            v += lb * u as i64 + qb * sq[zq.unsigned_abs() as usize] as i64;
                        }
                    }
                    assert_eq!(want[c * w + i] as i64, v, "g {g} chunk {c} candidate {i}");
                }
            }
            for be in Backend::available() {
                for amx in [false, true] {
                    let mut got = vec![-7i32; g * w];
                    range_scores_i8_with(be, amx, g, &blocks, &sq, &mut got, w);
                    assert_eq!(got, want, "g {g} w {w} {be:?} amx {amx} (amx available: {})", use_amx());
                }
            }
        }
    }

    #[test]
    fn backends_agree_bit_for_bit_and_match_the_definition() {
        let g = 7;
        let mut s = 1u32;
        let mut r = || {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            (s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
        };
        let panel: Vec<f32> = (0..COLS * PANEL).map(|_| 3.0 * r()).collect();
        let kmax = [64, 63, 64, 10, 1, 0, 64];
        let mut lin = vec![0f32; g * COLS];
        let mut quad = vec![0f32; g * COLS];
        for c in 0..g {
            for k in 0..kmax[c] {
                lin[c * COLS + k] = r();
                quad[c * COLS + k] = 0.1 * r();
            }
        }
        let ld = 40;
        let init: Vec<f32> = (0..g * ld).map(|_| r()).collect();
        let mut want = init.clone();
        portable(g, &lin, &quad, &kmax, &panel, &mut want, ld);
        for c in 0..g {
            for i in 0..PANEL {
                let (l, q): (f64, f64) = (0..kmax[c]).fold((0.0, 0.0), |(l, q), k| {
                    let z = panel[k * PANEL + i] as f64;
                    (l + lin[c * COLS + k] as f64 * z, q + quad[c * COLS + k] as f64 * z * z)
                });
                let exact = init[c * ld + i] as f64 + l + q;
                assert!((want[c * ld + i] as f64 - exact).abs() < 1e-4, "chunk {c} candidate {i}");
            }
        }
        for be in Backend::available() {
            let mut got = init.clone();
            panel_scores(be, g, &lin, &quad, &kmax, &panel, &mut got, ld);
            assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{be:?}");
        }
    }
}
