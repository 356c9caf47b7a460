//! The bits-back stack: one constriction [`DefaultAnsCoder`] with push (encode) and pop (decode)
//! of discretised latents and of pixels, plus the accounting the archive needs (how deep the
//! encoder dug into the initial words, how many bits the stack holds).
//!
//! # The coder
//!
//! `AnsCoder<u64, u128>` (64-bit words, 128-bit state): the state stays in [2^64, 2^128), so
//! a 32-bit model leaves 32 bits of headroom and a 24-bit pixel model 40.
//!
//! # Latent models
//!
//! A latent x_ℓ (level ℓ = 1..K of the chain) lives on the grid n·δ_ℓ, δ_ℓ = 2^e_ℓ, with bin
//! indices n ∈ −M_ℓ..=M_ℓ, M_ℓ = R·2^−e_ℓ (R = 2^range_log2). A Gaussian N(μ, s²) over it is
//! constriction's `LeakyQuantizer` (32-bit precision: every bin gets one unit of 2^−32 "leak")
//! over `probability::distribution::Gaussian` in bin units, i.e. bin n has the mass of
//! [n − ½, n + ½]·δ. Before the model is built, the mean (in bins) is snapped to 1/256 bin and
//! the std (in bins) to 1/256 bin, clamped to [1/4, 2^24] bins: the parameters reach
//! constriction as exact multiples of 2^−8, identical on both sides whatever rounding came
//! before (determinism, as `entropy.rs` does for pixels).
//!
//! Two supports:
//! - `p` models (pushed by the encoder, popped by the decoder): the whole grid −M..=M, because
//!   the value they code came from a `q` pop the decoder cannot predict;
//! - `q` models (popped by the encoder, pushed back by the decoder): the window
//!   [⌊μ − W·s⌋, ⌈μ + W·s⌉] ∩ [−M, M] (at least two bins), so that the leak cannot send a
//!   popped latent far out (the Gaussian mass outside 7 stds is 2.6e-12).
//!
//! Pixels use `entropy.rs`'s discretised Gaussian (24-bit precision, parameters snapped there).

use constriction::stream::model::{DefaultLeakyQuantizer, LeakyQuantizer};
use constriction::stream::stack::AnsCoder;
use constriction::stream::{Code, Decode, Encode};
use probability::distribution::Gaussian;

use crate::entropy::PixelParams;
use crate::error::{format_err, Error, Result};

/// Precision of the latent models (bits).
pub const LATENT_PRECISION: usize = 32;
/// Mean and std grid of the latent models: 1/256 bin.
pub const PARAM_GRID: f64 = 256.0;
const STD_MIN_BINS: f64 = 0.25;
const STD_MAX_BINS: f64 = (1u64 << 24) as f64;

/// 64-bit words and a 128-bit state: with 32-bit latent models the state keeps 32 bits of
/// headroom above the model precision (with constriction's default 32/64-bit coder a 32-bit
/// model has none, and rANS then loses a large fraction of a bit per symbol: measured
/// 0.4–0.6 bits/dim above the bound on CIFAR-10).
type Coder = AnsCoder<u64, u128, Vec<u64>>;
type LatentQuantizer = LeakyQuantizer<f64, i32, u32, LATENT_PRECISION>;

/// The grid of one latent level: δ = 2^exp, bins −max_bin..=max_bin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LevelGrid {
    /// e: δ = 2^e.
    pub exp: i32,
    /// M = R / δ.
    pub max_bin: i32,
}

impl LevelGrid {
    /// The grid δ = 2^exp over [−2^range_log2, 2^range_log2]; M must fit 2^24 bins (so that
    /// every grid value n·δ is exact in f32).
    pub fn new(exp: i32, range_log2: u32) -> Result<Self> {
        let shift = range_log2 as i64 - exp as i64;
        if !(1..=24).contains(&shift) {
            return Err(Error::Parameter(format!("latent grid 2^{exp} over ±2^{range_log2}: 2^{shift} bins per side (1..=2^24)")));
        }
        Ok(LevelGrid { exp, max_bin: 1 << shift })
    }
    /// δ.
    pub fn delta(&self) -> f64 {
        2f64.powi(self.exp)
    }
    /// n·δ (exact in f32).
    pub fn value(&self, n: i32) -> f32 {
        (n as f64 * self.delta()) as f32
    }
}

fn snap(v: f64, lo: f64, hi: f64) -> f64 {
    let q = (v * PARAM_GRID).round() / PARAM_GRID;
    if q.is_nan() {
        0.0f64.clamp(lo, hi)
    } else {
        q.clamp(lo, hi)
    }
}

/// A Gaussian over a level's bins, with snapped parameters (in bins).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LatentGaussian {
    /// Mean in bins (a multiple of 1/256).
    pub mean: f64,
    /// Std in bins (a multiple of 1/256, in [1/4, 2^24]).
    pub std: f64,
}

impl LatentGaussian {
    /// N(mu, sd²) in model units on `grid`, snapped.
    pub fn new(grid: LevelGrid, mu: f64, sd: f64) -> Self {
        let inv = 2f64.powi(-grid.exp);
        let m = (grid.max_bin as f64) * 2.0;
        LatentGaussian { mean: snap(mu * inv, -m, m), std: snap(sd * inv, STD_MIN_BINS, STD_MAX_BINS) }
    }
    fn dist(&self) -> Gaussian {
        Gaussian::new(self.mean, self.std)
    }
    /// The q window [⌊μ − W s⌋, ⌈μ + W s⌉] ∩ [−M, M], at least two bins.
    fn window(&self, grid: LevelGrid, w: f64) -> (i32, i32) {
        let m = grid.max_bin;
        let lo = (self.mean - w * self.std).floor().clamp(-m as f64, m as f64) as i32;
        let hi = (self.mean + w * self.std).ceil().clamp(-m as f64, m as f64) as i32;
        if lo < hi {
            (lo, hi)
        } else if lo < m {
            (lo, lo + 1)
        } else {
            (m - 1, m)
        }
    }
}

/// The stack plus the models' fixed parts and the encoder's accounting.
pub struct Stack {
    coder: Coder,
    pixels: DefaultLeakyQuantizer<f64, i32>,
    /// Half-width of q windows in stds.
    window_sigmas: f64,
    /// Fewest words the bulk held so far (the words below never moved).
    min_bulk: usize,
}

/// Odd multiplier of the quantile scramble (the 32-bit golden ratio) and its inverse mod 2^32.
pub const SCRAMBLE_MUL: u32 = 0x9E37_79B9;
const fn inverse_mod_2_32(c: u32) -> u32 {
    // Newton's iteration x ← x(2 − cx) doubles the correct low bits; c·c ≡ 1 (mod 8) for odd c
    let mut x = c;
    let mut i = 0;
    while i < 5 {
        x = x.wrapping_mul(2u32.wrapping_sub(c.wrapping_mul(x)));
        i += 1;
    }
    x
}
const SCRAMBLE_INV: u32 = inverse_mod_2_32(SCRAMBLE_MUL);

/// splitmix64's output function (the SPEC's `splitmix64`).
pub fn splitmix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn coder_err(e: impl std::fmt::Display) -> Error {
    Error::Parameter(format!("bits-back coder: {e}"))
}

impl Stack {
    /// A stack whose content is `words` as binary data (`AnsCoder::from_binary`: every bit is
    /// payload, so pops draw uniformly random symbols from them).
    pub fn from_binary(words: Vec<u64>, window_sigmas: f64) -> Self {
        let coder = Coder::from_binary(words).unwrap_or_else(|e| match e {});
        let min_bulk = coder.bulk().len();
        Stack { coder, pixels: DefaultLeakyQuantizer::new(0..=255), window_sigmas, min_bulk }
    }

    /// A stack holding `compressed` as written by [`Self::into_compressed`]; a zero top word is
    /// a [`Error::Format`].
    pub fn from_compressed(compressed: Vec<u64>, window_sigmas: f64) -> Result<Self> {
        let coder = Coder::from_compressed(compressed).map_err(|_| format_err("bits-back body ends in a zero word"))?;
        let min_bulk = coder.bulk().len();
        Ok(Stack { coder, pixels: DefaultLeakyQuantizer::new(0..=255), window_sigmas, min_bulk })
    }

    /// The stack as words (bottom first, top word non-zero).
    pub fn into_compressed(self) -> Vec<u64> {
        self.coder.into_compressed().unwrap_or_else(|e| match e {})
    }

    /// (bulk, state), for comparing with an expected stack exactly.
    pub fn into_raw_parts(self) -> (Vec<u64>, u128) {
        self.coder.into_raw_parts()
    }

    /// Fewest words the bulk has held since the stack was made.
    pub fn min_bulk(&self) -> usize {
        self.min_bulk
    }

    /// Information on the stack in bits: 64 per bulk word plus log2 of the state.
    pub fn bits(&self) -> f64 {
        let s = self.coder.state();
        let state_bits = if s == 0 { 0.0 } else { (s as f64).log2() };
        64.0 * self.coder.bulk().len() as f64 + state_bits
    }

    /// The bijection applied to the quantile bits before every q pop and undone after every q
    /// push: with y the state's low 32 bits and h the low 32 bits of splitmix64(bits 32..95 of
    /// the state), y' = z ⊕ (z ≫ 16), z = (y ⊕ h)·C mod 2^32; bits 32..127 are unchanged.
    ///
    /// Why (measured on 100 CIFAR-10 images, K = 50): a pop reads the state's low 32 bits,
    /// which the pushes just before wrote as the CDF positions of their symbols under the p
    /// models. Those symbols are not distributed as p (p is wider than the true conditional and
    /// off by the network's error), so the popped latents were not exact samples of q and the
    /// pops returned fewer bits than −log q ("dirty bits": 0.14 bits/dim above the bound).
    /// Mixing older bits into the quantile removes that. Only the low 32 bits change, so the
    /// state's size (its log2, the bits it holds) moves by less than 2^−31 bits; scrambling all
    /// 64 low bits cost 0.001 bits per pop (it breaks the ANS state's 1/x distribution when
    /// the high word is small: 0.05 bits/dim over the chain).
    /// Hand-written: it must be the exact same bijection on both sides.
    fn scramble(&mut self, forward: bool) {
        let coder = std::mem::replace(&mut self.coder, Coder::from_raw_parts(Vec::new(), 0));
        let (bulk, state) = coder.into_raw_parts();
        let y = state as u32;
        let h = splitmix64((state >> 32) as u64) as u32;
        let y = if forward {
            let z = (y ^ h).wrapping_mul(SCRAMBLE_MUL);
            z ^ (z >> 16)
        } else {
            (y ^ (y >> 16)).wrapping_mul(SCRAMBLE_INV) ^ h
        };
        self.coder = Coder::from_raw_parts(bulk, (state & !(u32::MAX as u128)) | y as u128);
    }

    #[inline]
    fn note_pop(&mut self) {
        let n = self.coder.bulk().len();
        if n < self.min_bulk {
            self.min_bulk = n;
        }
    }

    /// Pushes bin `n` under a `p` model (support −M..=M).
    pub fn push_p(&mut self, grid: LevelGrid, g: LatentGaussian, n: i32) -> Result<()> {
        let q = LatentQuantizer::new(-grid.max_bin..=grid.max_bin);
        self.coder.encode_symbol(n, q.quantize(g.dist())).map_err(coder_err)
    }

    /// Pops a bin under a `p` model.
    pub fn pop_p(&mut self, grid: LevelGrid, g: LatentGaussian) -> i32 {
        let q = LatentQuantizer::new(-grid.max_bin..=grid.max_bin);
        let n = self.coder.decode_symbol(q.quantize(g.dist())).unwrap_or_else(|e| match e {
            constriction::CoderError::Frontend(x) => match x {},
            constriction::CoderError::Backend(x) => match x {},
        });
        self.note_pop();
        n
    }

    /// Pops a bin under a `q` model (windowed support).
    pub fn pop_q(&mut self, grid: LevelGrid, g: LatentGaussian) -> i32 {
        self.scramble(true);
        let (lo, hi) = g.window(grid, self.window_sigmas);
        let q = LatentQuantizer::new(lo..=hi);
        let n = self.coder.decode_symbol(q.quantize(g.dist())).unwrap_or_else(|e| match e {
            constriction::CoderError::Frontend(x) => match x {},
            constriction::CoderError::Backend(x) => match x {},
        });
        self.note_pop();
        n
    }

    /// Pushes bin `n` back under a `q` model; a bin outside the window is a [`Error::Format`]
    /// (it cannot come from a valid archive).
    pub fn push_q(&mut self, grid: LevelGrid, g: LatentGaussian, n: i32) -> Result<()> {
        let (lo, hi) = g.window(grid, self.window_sigmas);
        if n < lo || n > hi {
            return Err(format_err("decoded latent outside its forward-transition window (corrupt archive or model mismatch)"));
        }
        let q = LatentQuantizer::new(lo..=hi);
        self.coder.encode_symbol(n, q.quantize(g.dist())).map_err(coder_err)?;
        self.scramble(false);
        Ok(())
    }

    /// Pushes pixel `v` with the discretised Gaussian of model-space mean `mu` and std `sigma`.
    pub fn push_pixel(&mut self, v: u8, mu: f32, sigma: f32) -> Result<()> {
        let m = PixelParams::snap(mu, sigma).model(&self.pixels);
        self.coder.encode_symbol(v as i32, m).map_err(coder_err)
    }

    /// Pops a pixel (see [`Self::push_pixel`]).
    pub fn pop_pixel(&mut self, mu: f32, sigma: f32) -> u8 {
        let m = PixelParams::snap(mu, sigma).model(&self.pixels);
        let v = self.coder.decode_symbol(m).unwrap_or_else(|e| match e {
            constriction::CoderError::Frontend(x) => match x {},
            constriction::CoderError::Backend(x) => match x {},
        });
        self.note_pop();
        v.clamp(0, 255) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pop_then_push_restores_the_stack() {
        let words: Vec<u64> = (0..64u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5555).collect();
        let mut s = Stack::from_binary(words.clone(), 7.0);
        let grid = LevelGrid::new(-14, 3).unwrap();
        let gq = LatentGaussian::new(grid, 0.3, 0.01);
        let gp = LatentGaussian::new(grid, 0.29, 0.012);
        let a = s.pop_q(grid, gq);
        s.push_p(grid, gp, a).unwrap();
        s.push_pixel(17, -0.8, 0.01).unwrap();
        assert_eq!(s.pop_pixel(-0.8, 0.01), 17);
        assert_eq!(s.pop_p(grid, gp), a);
        s.push_q(grid, gq, a).unwrap();
        let want = Stack::from_binary(words, 7.0).into_raw_parts();
        assert_eq!(s.into_raw_parts(), want);
        assert!((a as f64 * grid.delta() - 0.3).abs() < 0.08);
    }

    #[test]
    fn scramble_inverse() {
        assert_eq!(SCRAMBLE_MUL.wrapping_mul(SCRAMBLE_INV), 1);
        let mut s = Stack::from_binary(vec![5, 6, 7], 7.0);
        let before = s.coder.clone().into_raw_parts();
        s.scramble(true);
        assert_ne!(s.coder.clone().into_raw_parts(), before);
        s.scramble(false);
        assert_eq!(s.into_raw_parts(), before);
    }

    #[test]
    fn snapping_and_windows() {
        let grid = LevelGrid::new(-8, 3).unwrap();
        assert_eq!(grid.max_bin, 2048);
        let g = LatentGaussian::new(grid, 1.0, 1.0 / 256.0 / 1000.0);
        assert_eq!((g.mean, g.std), (256.0, 0.25));
        let g = LatentGaussian::new(grid, 100.0, 0.5);
        assert_eq!(g.window(grid, 7.0), (2047, 2048));
        let g = LatentGaussian::new(grid, f64::NAN, f64::NAN);
        assert_eq!((g.mean, g.std), (0.0, 0.25));
        assert!(LevelGrid::new(-30, 3).is_err());
    }
}
