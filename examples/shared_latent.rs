//! The paper's Figure 7: samples of p_θ(x_0 | x_t) that share one x_t = q(x_t | x_0) of a
//! given image. Row r uses t = times[r]; column 0 is the source image, the others are
//! independent reverse chains from that shared x_t. The smaller t, the more they share.
//!
//!   cargo run --release --example shared_latent -- examples/images/cifar_test_0.png -o shared.png

mod common;

use clap::Parser;
use ddpm_codec::diffusion::Diffusion;
use ddpm_codec::figures;
use ddpm_codec::model::Model;
use ddpm_codec::schedule::{Schedule, Variance};

#[derive(Parser)]
struct Args {
    /// Source image (PNG/JPEG, any size; tiled into 32x32).
    image: std::path::PathBuf,
    #[arg(short, long, default_value = "shared_latent.png")]
    output: std::path::PathBuf,
    /// Model times of the shared latents (one row each).
    #[arg(long, default_value = "1000,750,500,250")]
    times: String,
    /// Samples per row.
    #[arg(long, default_value_t = 7)]
    samples: usize,
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
    let src = common::load_tiled(&a.image)?;
    let (w, h) = (src.grid.width, src.grid.height);
    let mut cells = Vec::new();
    let times: Vec<usize> = common::parse_list(&a.times);
    for &t in &times {
        let i = figures::step_for_time(&diff, t);
        cells.push(common::untile(&src.grid, &src.tiles));
        for s in figures::shared_latent_samples(&model, &diff, &src.tiles, i, a.samples, a.seed)? {
            cells.push(common::untile(&src.grid, &s));
        }
    }
    common::write_grid(&cells, w, h, a.samples + 1, &a.output)?;
    println!("wrote {} (rows t = {:?}; column 0 = source) in {:.1} s", a.output.display(), times, t0.elapsed().as_secs_f64());
    Ok(())
}
