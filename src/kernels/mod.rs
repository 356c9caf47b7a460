//! CPU kernels of the fast inference path ([`crate::model::fast::FastUNet`]).
//!
//! Layout: channels last (HWC, row-major, f32), images of a group stacked. Convolutions are
//! GEMMs whose A rows are read straight from zero-padded inputs (no im2col copy); the AVX-512
//! micro-kernel keeps an MR×(16·NV) tile in registers and k-blocks B to stay in L1.
//!
//! # Determinism
//! Every output element is computed by one fixed sequence of IEEE operations that does not
//! depend on where the element sits in a register tile, on the batch, on the thread count or
//! on the vector width:
//! - a GEMM output is `init` (0, or a residual) `+ bias`, then one fused multiply-add per
//!   reduction index `k`, in increasing `k` (taps in order, channels in order);
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

pub use gemm::{gemm, Init, Rows};

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
