//! ddpm-codec: a progressive image codec whose prior is a denoising diffusion model.
//!
//! Layering (each module uses only those listed before it):
//! ground: [`error`], [`schedule`], [`rng`], [`tiling`], [`kernels`]
//! parts: [`model`], [`entropy`], [`bitstream`], [`image_io`]
//! process: [`diffusion`], [`rcc`], [`data`]
//! codec: [`codec`], [`bitsback`] (lossless archives of image sets by bits-back coding)
//! reports: [`eval`], [`sample`]

pub mod error;
pub mod schedule;
pub mod rng;
pub mod tiling;
pub mod kernels;
pub mod model;
pub mod entropy;
pub mod bitstream;
pub mod image_io;
pub mod diffusion;
pub mod rcc;
pub mod plan;
pub mod data;
pub mod codec;
pub mod fuzzing;
pub mod bitsback;
pub mod eval;
pub mod sample;
pub mod figures;

pub use error::{Error, Result};
