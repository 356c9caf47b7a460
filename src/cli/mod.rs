//! Command-line interface: subcommands map one-to-one onto library calls.

mod commands;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use ddpm_codec::Error;

pub use commands::run_command;

/// Progressive, lossless-capable image codec with a DDPM prior.
#[derive(Parser, Debug)]
#[command(name = "ddpm-codec", version, about)]
pub struct Cli {
    /// Model directory (model.safetensors + config.json); default: the embedded model.
    #[arg(long, global = true)]
    pub model: Option<PathBuf>,
    /// Worker threads (default: all cores).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// No progress bars.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Network implementation: "fast" (deterministic kernels) or "candle" (the slow reference;
    /// its streams decode only with --network candle on the same machine). For timing.
    #[arg(long, global = true, default_value = "fast")]
    pub network: String,
    #[command(subcommand)]
    pub cmd: Command,
}

/// Chain options (part of [`CodeArgs`]).
#[derive(clap::Args, Debug, Clone)]
pub struct ChainArgs {
    /// Number of chain steps K (respaced from T = 1000).
    #[arg(long, default_value_t = ddpm_codec::codec::DEFAULT_STEPS)]
    pub steps: usize,
    /// Step spacing: "dense" (τ_i = T·(i/K)², dense where the bits are) or "even".
    #[arg(long, default_value = "dense")]
    pub spacing: String,
    /// Reverse variance: auto (learned for a model with a learned variance at K ≥ 50; else
    /// optimal when the model carries calibrated tables; else large), learned (per dimension from a
    /// learn_sigma model's v), optimal (KL-optimal per step from the tables), large (β),
    /// small (β̃) or analytic (Analytic-DPM; `nll` and `pack` only: streams cannot name it).
    #[arg(long, default_value = "auto")]
    pub variance: String,
}

/// Channel-simulation options.
#[derive(clap::Args, Debug, Clone)]
pub struct RccArgs {
    /// Target bits per PFR chunk (B). Default: the preset (`rcc::RccParams::default_for`), 16
    /// at every K.
    #[arg(long)]
    pub chunk_bits: Option<f64>,
    /// Extra candidate bits beyond a chunk's KL (2^(KL+margin) candidates, at most 2^17).
    /// Default: 2.
    #[arg(long)]
    pub margin_bits: Option<u32>,
    /// Steps whose KL is below this many bits are sampled from p_θ for free.
    #[arg(long, default_value_t = ddpm_codec::rcc::RccParams::default().skip_below_bits)]
    pub skip_below_bits: f64,
    /// Encoder only: scale of the PFR target's shift away from p_θ, offsetting the pull toward
    /// p_θ of a finite candidate set (1 = plain PFR; not stored, any value decodes). Default:
    /// 1.4.
    #[arg(long)]
    pub tilt: Option<f64>,
    /// Encoder only: how PFR candidates are scored, `int8` (from an int8 copy of the candidate
    /// pool with integer sums: approximate scores, the fast default) or `f32` (exact scores).
    /// Not stored; any value decodes. Default: int8.
    #[arg(long)]
    pub scorer: Option<ddpm_codec::rcc::Scorer>,
    /// Deferral target D in bits per 32×32 tile: chain steps are merged until the planned KL of
    /// a coded transition reaches D per tile (0 = code every step). Default: 0 up to K = 50
    /// steps, 24 above.
    #[arg(long)]
    pub defer_bits: Option<f64>,
    /// Shared seed of the stream.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Coding options shared by encode, rd and bench-lossless: everything that fixes a stream.
#[derive(clap::Args, Debug, Clone)]
pub struct CodeArgs {
    #[command(flatten)]
    pub chain: ChainArgs,
    #[command(flatten)]
    pub rcc: RccArgs,
    /// Tiles per network call (fixed in the stream).
    #[arg(long, default_value_t = 64)]
    pub batch_tiles: usize,
}

/// Options of `rd`.
#[derive(clap::Args, Debug, Clone)]
pub struct RdArgs {
    /// An image, a folder of PNG/JPEG images, or a CIFAR-10 folder (test_batch.bin: test split).
    pub input: PathBuf,
    /// At most this many images.
    #[arg(long)]
    pub limit: Option<usize>,
    #[command(flatten)]
    pub code: CodeArgs,
    /// Reconstruction after a prefix: onestep (free: from the encode pass), ddim (decoder,
    /// ≈ K network calls per prefix) or both.
    #[arg(long, default_value = "onestep")]
    pub recon: String,
    /// Prefixes (spread evenly in bytes) at which DDIM is evaluated.
    #[arg(long, default_value_t = 10)]
    pub ddim_points: usize,
    /// Also run the classical codecs (cjpeg, cwebp, cjxl on PATH; absent ones are skipped).
    #[arg(long)]
    pub classical: bool,
    /// Write the RD table as plain CSV (header row first). Columns: name, recon, param, step,
    /// t, ideal_bpd, ideal_bpp, actual_bpd, actual_bpp, mse, rmse, psnr, mean_psnr, images: one
    /// row per curve point averaged over `images` images; rates are whole-file (header
    /// included) bits/dim (dims = pixels × channels) and bits/pixel; ideal_* is the model's
    /// ideal code length (ours only); step = packets decoded (ours) or setting index
    /// (classical); t = model time of the reconstruction's state; rmse/psnr of the mean MSE
    /// (0–255 scale), mean_psnr the mean of per-image PSNRs; inf = lossless.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Write the curves as JSON (CompressAI's layout; other curves under "others").
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the two-panel RD plot (PNG).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Write the first image's reconstructions at ~8 prefixes as one PNG row.
    #[arg(long)]
    pub strip: Option<PathBuf>,
    /// Frames of the strip (the last is the lossless end).
    #[arg(long, default_value_t = 8)]
    pub strip_frames: usize,
}

/// Options of `pack` (and of the bits-back row of `bench-lossless`).
#[derive(clap::Args, Debug, Clone)]
pub struct PackArgs {
    #[command(flatten)]
    pub chain: ChainArgs,
    /// Latent grid: 2^B bins per std of each level's forward transition.
    #[arg(long, default_value_t = ddpm_codec::bitsback::DEFAULT_LATENT_BITS)]
    pub latent_bits: u32,
    /// Most tiles coded as one vector (one network call per step); 1 = tile by tile (the
    /// fewest initial bits; the fast network is as fast per tile at batch 1).
    #[arg(long, default_value_t = 1)]
    pub max_group: usize,
    /// Seed of the initial stack words.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Lossless archive of a set of images at the bound: bits-back coding over the diffusion
    /// chain (one ANS stack for all items). INPUT: a folder of PNG/JPEG images, a CIFAR-10 folder
    /// (test split) or one image (coded tile by tile).
    Pack {
        input: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        #[arg(long)]
        limit: Option<usize>,
        #[command(flatten)]
        pack: PackArgs,
        /// Write the pack report (per-item bits, initial bits, timing) as JSON.
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Unpack a .ddpa archive: every item bit-exact, written as DIR/<name>.png.
    Unpack {
        input: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        /// Write the unpack report as JSON.
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Encode an image (PNG/JPEG) into a progressive .ddpc stream.
    Encode {
        input: PathBuf,
        /// Output file (default: INPUT with extension .ddpc).
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        code: CodeArgs,
        /// Omit the lossless final step (the stream ends at x_{τ_1}).
        #[arg(long)]
        lossy: bool,
        /// Write the per-step report (ideal vs actual bits) as JSON.
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Decode a .ddpc stream (or a prefix of it) to PNG.
    Decode {
        input: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        /// Decode at most this many packets (coded steps).
        #[arg(long)]
        max_steps: Option<usize>,
        /// Use only the first B bytes of the file (the longest packet prefix that fits).
        #[arg(long)]
        max_bytes: Option<usize>,
        /// Reconstruction after a prefix: "onestep" (the paper's x̂_0) or "ddim".
        #[arg(long, default_value = "onestep")]
        recon: String,
        /// Refuse streams that need more than this many network evaluations (tiles × steps)
        /// before decoding anything (format/SPEC.md § 6).
        #[arg(long, default_value_t = ddpm_codec::codec::DEFAULT_MAX_WORK)]
        max_work: u64,
    },
    /// Print a stream's or a bits-back archive's header and sizes (per-packet sizes: `encode --report`).
    Info { input: PathBuf },
    /// Bits/dim of a data set under the model (the paper's variational bound).
    Nll {
        /// A folder with CIFAR-10 binary batches, or a folder of 32×32 PNGs.
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value = "test")]
        split: String,
        #[arg(long)]
        limit: Option<usize>,
        /// The chain: the same options and defaults as `encode`, so `--steps K` names the chain
        /// the codec codes with (`--steps 1000` is the paper's full chain).
        #[command(flatten)]
        chain: ChainArgs,
        /// "exact" (every step) or "random-t" (unbiased estimate with a 95% CI).
        #[arg(long, default_value = "exact")]
        mode: String,
        #[arg(long, default_value_t = 64)]
        batch: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Calibrate the model's variance tables (x̂_0 error, Γ, final-step std per model time) on
    /// training images and write the model with the tables to OUT (model.safetensors +
    /// config.json). The tables enable `--variance optimal` and `analytic`; the model identity
    /// (SHA-256 of the weights file) changes.
    Calibrate {
        /// A folder with CIFAR-10 binary batches (train split), or a folder of 32×32 PNGs.
        #[arg(long)]
        data: PathBuf,
        /// Calibration images (the first N of the split).
        #[arg(long, default_value_t = 128)]
        limit: usize,
        /// Output model directory.
        #[arg(long)]
        out: PathBuf,
        /// Also write the tables as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Draw samples from the model: a PNG grid, and optionally the progressive strip.
    Sample {
        #[arg(short, default_value_t = 16)]
        n: usize,
        #[arg(short, long)]
        output: PathBuf,
        /// Also write the paper's progressive-generation strip (x̂_0 along the chain).
        #[arg(long)]
        strip: Option<PathBuf>,
        #[arg(long, default_value_t = 1000)]
        steps: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Rate–distortion curves of the progressive code (every prefix: ideal and actual rate,
    /// RMSE/PSNR), optionally beside JPEG, WebP and JPEG XL on the same images.
    Rd(RdArgs),
    /// Lossless bits/dim (whole files) of ddpm-codec beside PNG, WebP lossless and JPEG XL
    /// lossless on the same images, with bit-exact round-trip checks.
    BenchLossless {
        /// A folder of PNG/JPEG images, a CIFAR-10 folder (test split), or one image.
        input: PathBuf,
        #[arg(long)]
        limit: Option<usize>,
        #[command(flatten)]
        code: CodeArgs,
        /// Skip decoding our streams (no round-trip check; halves the time).
        #[arg(long)]
        no_verify: bool,
        /// Also pack all images into one bits-back archive (.ddpa) and report its bits/dim, and
        /// the bound of the chain on the same images (RGB images whose sides are multiples of 32, on their 32×32 tiles).
        #[arg(long)]
        bitsback: bool,
        /// Latent grid of the bits-back row (see `pack`).
        #[arg(long, default_value_t = ddpm_codec::bitsback::DEFAULT_LATENT_BITS)]
        latent_bits: u32,
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

/// Parses arguments and runs the command.
pub fn run() -> Result<(), Error> {
    let cli = Cli::parse();
    let threads = cli.threads.unwrap_or(0);
    if threads > 0 {
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    }
    rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().ok();
    run_command(cli)
}

/// Exit codes: 1 usage/parameters, 2 bad input data, 3 model/checksum mismatch, 4 I/O, 5 other.
pub fn exit_code(e: &Error) -> i32 {
    match e {
        Error::Parameter(_) => 1,
        Error::Format(_) | Error::LimitsExceeded(_) | Error::Image(_) => 2,
        Error::ModelMismatch(_) | Error::Checksum(_) => 3,
        Error::Io(_) => 4,
        _ => 5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn shared_coding_options_parse_the_same_everywhere() {
        let flags = ["--steps", "20", "--variance", "small", "--chunk-bits", "10", "--seed", "7", "--batch-tiles", "16"];
        let codes: Vec<CodeArgs> = ["encode", "rd", "bench-lossless"]
            .iter()
            .map(|cmd| {
                let argv = ["ddpm-codec", cmd, "in.png"].into_iter().chain(flags);
                match Cli::try_parse_from(argv).expect("parses").cmd {
                    Command::Encode { code, .. } | Command::BenchLossless { code, .. } => code,
                    Command::Rd(a) => a.code,
                    other => panic!("{other:?}"),
                }
            })
            .collect();
        for c in &codes {
            assert_eq!((c.chain.steps, c.chain.variance.as_str(), c.batch_tiles), (20, "small", 16));
            assert_eq!((c.rcc.chunk_bits, c.rcc.seed), (Some(10.0), 7));
        }
        let d = Cli::try_parse_from(["ddpm-codec", "rd", "x"]).unwrap();
        let Command::Rd(a) = d.cmd else { panic!() };
        assert_eq!((a.code.chain.steps, a.code.batch_tiles, a.ddim_points), (ddpm_codec::codec::DEFAULT_STEPS, 64, 10));
        assert!(Cli::try_parse_from(["ddpm-codec", "rd", "x", "--steps", "many"]).is_err());
    }
}
