//! The prior network: configuration, weights and identity (SHA-256 of the weight file).
//!
//! Loading happens in one place, [`Model::from_bytes`]; the embedded default model is
//! [`Model::embedded`].

pub mod fast;
pub mod unet;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::schedule::VarianceTables;
pub use unet::UNet;

/// U-Net hyper-parameters; `Default` is the paper's CIFAR-10 model (35.7M parameters).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub in_channels: usize,
    pub ch: usize,
    pub ch_mult: Vec<usize>,
    pub num_res_blocks: usize,
    pub attn_resolutions: Vec<usize>,
    pub dropout: f64,
    pub resolution: usize,
    pub num_groups: usize,
    /// Improved DDPM's learned variance: the network also outputs v (`in_channels` more
    /// channels), σ² = exp(f log β + (1 − f) log β̃), f = (v + 1)/2 ([`crate::schedule::Variance::Learned`]).
    #[serde(default)]
    pub learn_sigma: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            in_channels: 3,
            ch: 128,
            ch_mult: vec![1, 2, 2, 2],
            num_res_blocks: 2,
            attn_resolutions: vec![16],
            dropout: 0.1,
            resolution: 32,
            num_groups: 32,
            learn_sigma: false,
        }
    }
}

impl Config {
    /// Channels of the network's output: ε, and v when [`Config::learn_sigma`].
    pub fn out_channels(&self) -> usize {
        self.in_channels * if self.learn_sigma { 2 } else { 1 }
    }

    /// Rejects configurations the network cannot be built from.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Parameter(format!("model config: {m}")));
        if self.in_channels == 0 || self.in_channels > 4 {
            return bad("in_channels must be 1..=4");
        }
        if self.ch == 0 || self.ch > 1024 || self.ch % 2 != 0 || self.ch < 4 {
            return bad("ch must be even, 4..=1024");
        }
        if self.ch_mult.is_empty() || self.ch_mult.len() > 6 || self.ch_mult.iter().any(|&m| m == 0 || m > 8) {
            return bad("ch_mult must have 1..=6 entries in 1..=8");
        }
        if self.num_res_blocks == 0 || self.num_res_blocks > 8 {
            return bad("num_res_blocks must be 1..=8");
        }
        if self.num_groups == 0 || self.ch % self.num_groups != 0 {
            return bad("num_groups must divide ch");
        }
        if self.resolution == 0 || self.resolution % (1 << (self.ch_mult.len() - 1)) != 0 {
            return bad("resolution must be divisible by 2^(levels-1)");
        }
        Ok(())
    }
}

/// A loaded prior: the network plus its identity.
#[derive(Debug)]
pub struct Model {
    net: UNet,
    fast: fast::FastUNet,
    sha256: [u8; 32],
    device: Device,
    backend: Backend,
    variance_tables: Option<VarianceTables>,
}

/// Names of the calibrated variance tables inside the weights file (f64 vectors).
pub const TABLE_X0_MSE: &str = "variance_tables.x0_mse";
/// See [`TABLE_X0_MSE`].
pub const TABLE_GAMMA: &str = "variance_tables.gamma";
/// See [`TABLE_X0_MSE`].
pub const TABLE_FINAL_STD: &str = "variance_tables.final_std";

fn f64_vec(t: &Tensor, name: &str) -> Result<Vec<f64>> {
    if t.rank() != 1 || t.dims()[0] > 1 << 20 {
        return Err(Error::Model(format!("{name}: expected a vector")));
    }
    Ok(t.to_dtype(DType::F64)?.to_vec1::<f64>()?)
}

/// Removes the variance tables from a loaded tensor map; all three or none must be present.
fn take_variance_tables(t: &mut std::collections::HashMap<String, Tensor>) -> Result<Option<VarianceTables>> {
    let parts = [TABLE_X0_MSE, TABLE_GAMMA, TABLE_FINAL_STD].map(|n| t.remove(n));
    match parts {
        [None, None, None] => Ok(None),
        [Some(a), Some(b), Some(c)] => Ok(Some(VarianceTables {
            x0_mse: f64_vec(&a, TABLE_X0_MSE)?,
            gamma: f64_vec(&b, TABLE_GAMMA)?,
            final_std: f64_vec(&c, TABLE_FINAL_STD)?,
        })),
        _ => Err(Error::Model("the weights file holds only some of the variance tables".into())),
    }
}

/// A copy of the safetensors file `weights` with `tables` stored in it (replacing any stored
/// before); every other tensor is copied byte for byte. The model identity (SHA-256 of the
/// file) changes with the tables.
pub fn with_variance_tables(weights: &[u8], tables: &VarianceTables) -> Result<Vec<u8>> {
    use safetensors::tensor::{Dtype, SafeTensors, TensorView};
    let st = SafeTensors::deserialize(weights).map_err(|e| Error::Model(format!("safetensors: {e}")))?;
    let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .filter(|(n, _)| ![TABLE_X0_MSE, TABLE_GAMMA, TABLE_FINAL_STD].contains(&n.as_str()))
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    for (name, vals) in [(TABLE_X0_MSE, &tables.x0_mse), (TABLE_GAMMA, &tables.gamma), (TABLE_FINAL_STD, &tables.final_std)] {
        let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        owned.push((name.to_string(), Dtype::F64, vec![vals.len()], bytes));
    }
    let views = owned
        .iter()
        .map(|(n, d, s, b)| Ok((n.clone(), TensorView::new(*d, s.clone(), b).map_err(|e| Error::Model(format!("{e}")))?)))
        .collect::<Result<Vec<_>>>()?;
    let (_, meta) = SafeTensors::read_metadata(weights).map_err(|e| Error::Model(format!("safetensors: {e}")))?;
    safetensors::tensor::serialize(views, meta.metadata().clone()).map_err(|e| Error::Model(format!("safetensors: {e}")))
}

/// Which implementation [`Model::eps`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Backend {
    /// The fast deterministic path ([`fast::FastUNet`]): batch-, thread- and ISA-invariant.
    #[default]
    Fast,
    /// candle's own CPU kernels (the reference, and the "before" of the speed work). Its
    /// outputs depend on the batch composition, so a stream encoded with it decodes only
    /// with it, at the same `batch_tiles`, on the same machine.
    Candle,
}

impl std::str::FromStr for Backend {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "fast" => Ok(Self::Fast),
            "candle" => Ok(Self::Candle),
            _ => Err(Error::Parameter(format!("unknown network backend {s:?} (fast|candle)"))),
        }
    }
}

/// The default model's files, embedded in the binary.
pub const EMBEDDED_WEIGHTS: &[u8] = include_bytes!("../../models/default/model.safetensors");
/// The default model's configuration (JSON).
pub const EMBEDDED_CONFIG: &str = include_str!("../../models/default/config.json");

impl Model {
    /// Loads weights (safetensors, f32/f16/bf16 stored, f32 in memory) and a JSON config.
    pub fn from_bytes(weights: &[u8], config_json: &str) -> Result<Self> {
        let cfg: Config = serde_json::from_str(config_json)
            .map_err(|e| Error::Parameter(format!("model config JSON: {e}")))?;
        let device = Device::Cpu;
        let mut tensors = candle_core::safetensors::load_buffer(weights, &device)?;
        let variance_tables = take_variance_tables(&mut tensors)?;
        let tensors = tensors
            .into_iter()
            .map(|(k, v)| Ok((k, v.to_dtype(DType::F32)?)))
            .collect::<Result<std::collections::HashMap<String, Tensor>>>()?;
        let fast = fast::FastUNet::from_tensors(&tensors, &cfg)?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &device);
        let net = UNet::new(&cfg, vb)?;
        let sha256: [u8; 32] = Sha256::digest(weights).into();
        Ok(Self { net, fast, sha256, device, backend: Backend::Fast, variance_tables })
    }

    /// Loads `DIR/model.safetensors` and `DIR/config.json`.
    pub fn from_dir(dir: &std::path::Path) -> Result<Self> {
        let w = std::fs::read(dir.join("model.safetensors"))?;
        let c = std::fs::read_to_string(dir.join("config.json"))?;
        Self::from_bytes(&w, &c)
    }

    /// The model embedded in the binary.
    pub fn embedded() -> Result<Self> {
        Self::from_bytes(EMBEDDED_WEIGHTS, EMBEDDED_CONFIG)
    }

    /// Loads from `dir` if given, else the embedded model.
    pub fn load(dir: Option<&std::path::Path>) -> Result<Self> {
        match dir {
            Some(d) => Self::from_dir(d),
            None => Self::embedded(),
        }
    }

    /// SHA-256 of the weight file: the model's identity, written into every stream.
    pub fn sha256(&self) -> [u8; 32] {
        self.sha256
    }

    /// The calibrated variance tables stored with the weights, if any.
    pub fn variance_tables(&self) -> Option<&VarianceTables> {
        self.variance_tables.as_ref()
    }

    /// Hex form of [`Model::sha256`].
    pub fn sha256_hex(&self) -> String {
        self.sha256.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn config(&self) -> &Config {
        self.net.config()
    }

    pub fn net(&self) -> &UNet {
        &self.net
    }

    /// The fast inference network ([`fast::FastUNet`]) that [`Model::eps`] runs.
    pub fn fast(&self) -> &fast::FastUNet {
        &self.fast
    }

    /// Selects the implementation [`Model::eps`] runs (default [`Backend::Fast`]).
    pub fn set_backend(&mut self, backend: Backend) {
        self.backend = backend;
    }

    /// The implementation [`Model::eps`] runs.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// ε_θ(x, t) for `n` images (NCHW f32, row-major), all at model time `t`. By default the
    /// fast, deterministic path (an image's output is bit-identical whatever the batch around
    /// it, the thread count and the CPU's vector extensions); see [`Model::set_backend`].
    pub fn eps(&self, x: &[f32], n: usize, t: usize) -> Result<Vec<f32>> {
        match self.backend {
            Backend::Fast => self.fast.eps(x, n, t),
            Backend::Candle => self.eps_candle(x, n, t),
        }
    }

    /// The whole output for `n` images: per image [`Config::out_channels`] planes, ε first and
    /// then v when the network learns its variance; equal to [`Model::eps`] otherwise. The ε
    /// planes are bit-identical to [`Model::eps`]'s.
    pub fn predict(&self, x: &[f32], n: usize, t: usize) -> Result<Vec<f32>> {
        match self.backend {
            Backend::Fast => self.fast.predict(x, n, t),
            Backend::Candle => self.candle_forward(x, n, t, self.config().out_channels()),
        }
    }

    /// True when the network outputs v as well as ε ([`Config::learn_sigma`]).
    pub fn learns_sigma(&self) -> bool {
        self.config().learn_sigma
    }

    /// ε_θ(x, t) by the candle network (the reference for parity tests; slower, and its
    /// results depend on the batch composition).
    pub fn eps_candle(&self, x: &[f32], n: usize, t: usize) -> Result<Vec<f32>> {
        self.candle_forward(x, n, t, self.config().in_channels)
    }

    /// The candle network's first `keep` output channels.
    fn candle_forward(&self, x: &[f32], n: usize, t: usize, keep: usize) -> Result<Vec<f32>> {
        let c = self.config().in_channels;
        let r = self.config().resolution;
        if x.len() != n * c * r * r {
            return Err(Error::Parameter(format!("eps: got {} values for {n} images", x.len())));
        }
        let xt = Tensor::from_slice(x, (n, c, r, r), &self.device)?;
        let ts = vec![t as f32; n];
        let out = self.net.forward(&xt, &ts)?.narrow(1, 0, keep)?;
        Ok(out.flatten_all()?.to_vec1::<f32>()?)
    }
}
