//! The paper's Figure 6: progressive generation. Each row is one reverse chain from x_T; the
//! columns show x̂_0 predicted at evenly spaced steps from t = T (left) to t = 0 (right):
//! large-scale structure appears first, details last.
//!
//!   cargo run --release --example progressive_generation -- -o progressive.png

mod common;

use clap::Parser;
use ddpm_codec::diffusion::Diffusion;
use ddpm_codec::model::Model;
use ddpm_codec::schedule::{Schedule, Variance};
use ddpm_codec::{data, sample};

#[derive(Parser)]
struct Args {
    #[arg(short, long, default_value = "progressive.png")]
    output: std::path::PathBuf,
    /// Number of chains (rows).
    #[arg(long, default_value_t = 6)]
    rows: usize,
    /// Number of x̂_0 snapshots (columns).
    #[arg(long, default_value_t = 10)]
    frames: usize,
    /// Chain steps (respaced from T = 1000).
    #[arg(long, default_value_t = 250)]
    steps: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    model: Option<std::path::PathBuf>,
}

fn main() -> ddpm_codec::Result<()> {
    let a = Args::parse();
    let t0 = std::time::Instant::now();
    let model = Model::load(a.model.as_deref())?;
    let diff = Diffusion::new(Schedule::even(1000, a.steps)?, Variance::Small);
    let x = sample::progressive_strip(&model, &diff, a.rows, a.frames, a.seed, &mut |_, _| {})?;
    sample::grid_png(&data::model_to_u8(&x), a.rows * a.frames, 3, 32, 32, a.frames, &a.output)?;
    let ts: Vec<usize> = sample::strip_steps(a.steps, a.frames).iter().map(|&i| diff.schedule.model_t(i)).collect();
    println!("wrote {} ({} chains x {} columns at t = {:?}) in {:.1} s", a.output.display(), a.rows, a.frames, ts, t0.elapsed().as_secs_f64());
    Ok(())
}
