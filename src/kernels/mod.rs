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
//! CPU without AVX-512 (or with `DDPM_CODEC_NO_AVX512` set), only slower.

pub mod gemm;
pub mod ops;

pub use gemm::{gemm, Init, Rows};

/// Whether the AVX-512 kernels are used (decided once, at first use).
pub fn use_avx512() -> bool {
    use std::sync::OnceLock;
    static USE: OnceLock<bool> = OnceLock::new();
    *USE.get_or_init(|| {
        if std::env::var_os("DDPM_CODEC_NO_AVX512").is_some() {
            return false;
        }
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx512f")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// Kernel back-end: the AVX-512 one where the CPU has it, else the portable one.
/// Both compute bit-identical results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Avx512,
    Scalar,
}

impl Backend {
    /// The fastest back-end this CPU supports.
    pub fn detect() -> Self {
        if use_avx512() {
            Backend::Avx512
        } else {
            Backend::Scalar
        }
    }
}
