//! CPU kernels of the fast inference path ([`crate::model::fast::FastUNet`]).
//!
//! Layout: channels last (HWC, row-major, f32), images of a group stacked. Convolutions are
//! GEMMs whose A rows are read straight from zero-padded inputs (no im2col copy); the AVX-512
//! micro-kernel keeps an MR×(16·NV) tile in registers and k-blocks B to stay in L1. The
//! residual blocks' 3×3 convolutions run as Winograd F(2×2, 3×3) ([`winograd`]: 2.25× fewer
//! multiply-adds; its transforms are additions only). Buffers the kernels stream through are
//! [`AVec`]s (64-byte aligned).
//!
//! # Determinism
//! Every output element is computed by one fixed sequence of IEEE operations that does not
//! depend on where the element sits in a register tile, on the batch, on the thread count or
//! on the vector width:
//! - a GEMM output is `init` (0, or a residual) `+ bias`, then one fused multiply-add per
//!   reduction index `k`, in increasing `k` (taps in order, channels in order);
//! - a Winograd convolution output is `init + ((Aᵀ M A) + bias)`, M's 16 elements FMA chains
//!   from 0 in channel order, the transforms fixed sequences of additions ([`winograd`]);
//! - reductions that are not GEMMs have a fixed order: GroupNorm sums per channel in pixel
//!   order, then per group in channel order; softmax sums in 16 partial sums (index mod 16)
//!   added in order;
//! - `exp` is a polynomial evaluated with the same FMA sequence on every path, SiLU's
//!   reciprocal is Newton steps from a bit-trick seed (no division), and the time
//!   embedding's sin/cos come from f64 series ([`ops::sin_cos`]): no libm call anywhere.
//!
//! The AVX-512 kernels and the portable scalar kernels therefore give bit-identical results
//! (tested; `tests/fast_inference.rs` pins the output bits), so a stream decodes the same on a
//! CPU without AVX-512 (see [`Backend`]), only slower.

pub mod gemm;
pub mod ops;
pub mod score;
pub mod winograd;

pub use gemm::{gemm, Init, Rows};

/// An f32 buffer whose first element sits on a 64-byte boundary, so that the kernels' 16-float
/// vectors over maps with a multiple of 16 channels never straddle two cache lines (a split
/// load or store costs about twice as much; measured on the Winograd transforms: 3×).
/// Alignment changes no result, only speed.
#[derive(Default)]
pub struct AVec {
    buf: Vec<f32>,
    off: usize,
    len: usize,
}

impl AVec {
    /// `n` zeros.
    pub fn zeros(n: usize) -> Self {
        let mut v = AVec::default();
        v.resize(n);
        v
    }

    /// A copy of `x`.
    pub fn from_slice(x: &[f32]) -> Self {
        let mut v = AVec::zeros(x.len());
        v.copy_from_slice(x);
        v
    }

    /// Makes the length `n` (new elements zero; old ones kept when the buffer is not moved,
    /// and copied when it is).
    pub fn resize(&mut self, n: usize) {
        if self.off + n > self.buf.len() {
            let mut buf = vec![0f32; n + 16];
            let off = buf.as_ptr().align_offset(64).min(16);
            let keep = self.len.min(n);
            buf[off..off + keep].copy_from_slice(&self.buf[self.off..self.off + keep]);
            *self = AVec { buf, off, len: n };
        } else {
            if n > self.len {
                self.buf[self.off + self.len..self.off + n].fill(0.0);
            }
            self.len = n;
        }
    }

    /// Makes the length `n` without zeroing: elements past the old length keep whatever the
    /// buffer held (always initialised floats). For scratch that is written before it is read.
    pub fn resize_stale(&mut self, n: usize) {
        if self.off + n > self.buf.len() {
            self.resize(n);
        } else {
            self.len = n;
        }
    }
}

/// A copy in a new, again 64-byte aligned buffer (a derived clone would copy the offset into a
/// buffer of other alignment).
impl Clone for AVec {
    fn clone(&self) -> Self {
        AVec::from_slice(self)
    }
}

impl std::ops::Deref for AVec {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.buf[self.off..self.off + self.len]
    }
}

impl std::ops::DerefMut for AVec {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.buf[self.off..self.off + self.len]
    }
}

impl std::fmt::Debug for AVec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Whether the AVX-512 kernels are used (decided once, at first use).
pub fn use_avx512() -> bool {
    Backend::detect() == Backend::Avx512
}

/// Whether the AVX-512 paths that also need the DQ and VL extensions (the vectorised hashes of
/// [`crate::rng::fill_normals`] and of the encoder's arrival times) run: the AVX-512 back-end
/// is in use and the CPU has both (decided once). Those paths compute the same bits as their
/// portable versions; this is the one place that decides between them.
pub fn use_avx512_dq_vl() -> bool {
    use std::sync::OnceLock;
    static WIDE: OnceLock<bool> = OnceLock::new();
    *WIDE.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            use_avx512() && std::arch::is_x86_feature_detected!("avx512dq") && std::arch::is_x86_feature_detected!("avx512vl")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// Kernel back-end. All compute bit-identical results; they differ in speed only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Hand-written AVX-512 kernels (register-tiled GEMM).
    Avx512,
    /// The portable kernels compiled for AVX2 + FMA (auto-vectorised).
    Avx2,
    /// The portable kernels (on x86-64 without FMA, `mul_add` is a libm call: very slow).
    Scalar,
}

impl Backend {
    /// The fastest back-end this CPU supports (decided once). The environment variable
    /// `DDPM_CODEC_KERNELS=avx512|avx2|scalar` caps the choice (for tests and comparisons).
    pub fn detect() -> Self {
        use std::sync::OnceLock;
        static BE: OnceLock<Backend> = OnceLock::new();
        *BE.get_or_init(|| {
            let cap = std::env::var("DDPM_CODEC_KERNELS").unwrap_or_default();
            let allow = |b: Backend| match cap.as_str() {
                "scalar" => b == Backend::Scalar,
                "avx2" => b != Backend::Avx512,
                _ => true,
            };
            Self::available().into_iter().find(|&b| allow(b)).unwrap_or(Backend::Scalar)
        })
    }

    /// The back-ends this CPU can run, fastest first.
    pub fn available() -> Vec<Backend> {
        let mut v = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("fma") {
                v.push(Backend::Avx512);
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                v.push(Backend::Avx2);
            }
        }
        v.push(Backend::Scalar);
        v
    }
}
