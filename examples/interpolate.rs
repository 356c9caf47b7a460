//! The paper's Figures 8–9: interpolation in latent space. Both images are encoded with q to
//! x_t (shared noise), mixed as (1 − λ) x_t + λ x'_t and decoded with the reverse process.
//! Each row is one t; columns are λ. Larger t gives coarser, more varied interpolations.
//!
//!   cargo run --release --example interpolate -- a.png b.png --t 500 -o interp.png

mod common;

use clap::Parser;
use ddpm_codec::diffusion::Diffusion;
use ddpm_codec::figures;
use ddpm_codec::model::Model;
use ddpm_codec::schedule::{Schedule, Variance};
use ddpm_codec::Error;

#[derive(Parser)]
struct Args {
    first: std::path::PathBuf,
    second: std::path::PathBuf,
    #[arg(short, long, default_value = "interpolate.png")]
    output: std::path::PathBuf,
    /// Model time(s) of the latents, one row each (comma-separated).
    #[arg(long, default_value = "500")]
    t: String,
    #[arg(long, default_value = "0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1")]
    lambdas: String,
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
    let x = common::load_tiled(&a.first)?;
    let y = common::load_tiled(&a.second)?;
    if x.grid != y.grid {
        return Err(Error::Parameter("the two images must have the same size".into()));
    }
    let lambdas: Vec<f64> = common::parse_list(&a.lambdas);
    let times: Vec<usize> = common::parse_list(&a.t);
    let mut cells = Vec::new();
    for &t in &times {
        let i = figures::step_for_time(&diff, t);
        cells.push(common::untile(&x.grid, &x.tiles));
        for m in figures::interpolate(&model, &diff, &x.tiles, &y.tiles, i, &lambdas, a.seed)? {
            cells.push(common::untile(&x.grid, &m));
        }
        cells.push(common::untile(&y.grid, &y.tiles));
    }
    common::write_grid(&cells, x.grid.width, x.grid.height, lambdas.len() + 2, &a.output)?;
    println!(
        "wrote {} (rows t = {:?}; columns: first image, λ = {:?}, second image) in {:.1} s",
        a.output.display(),
        times,
        lambdas,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
