//! One function per subcommand: parse options, call the library, print, write files.

use std::path::Path;

use ddpm_codec::codec::{self, CodecParams, DecodeOptions, Recon};
use ddpm_codec::model::Model;
use ddpm_codec::rcc::RccParams;
use ddpm_codec::schedule::Variance;
use ddpm_codec::{image_io, Error, Result};
use indicatif::{ProgressBar, ProgressStyle};

use super::{Cli, CodeArgs, Command, PackArgs, RdArgs};

fn bar(quiet: bool, msg: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(1);
    pb.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} {elapsed_precise} eta {eta}")
            .expect("template")
            .progress_chars("=> "),
    );
    pb.set_message(msg.to_string());
    pb
}

fn tick(pb: &ProgressBar) -> impl FnMut(usize, usize) + '_ {
    move |done, total| {
        pb.set_length(total as u64);
        pb.set_position(done as u64);
    }
}

impl CodeArgs {
    /// The codec parameters these options name (validated).
    fn params(&self, model: &Model) -> Result<CodecParams> {
        let (chain, rcc) = (&self.chain, &self.rcc);
        let variance = codec::resolve_variance(&chain.variance, model, chain.steps)?;
        let mut p = CodecParams::new(chain.steps, &chain.spacing, variance)?;
        // unset options take the chain's preset (CodecParams::new: RccParams::default_for K)
        p.rcc = RccParams {
            chunk_bits: rcc.chunk_bits.unwrap_or(p.rcc.chunk_bits),
            margin_bits: rcc.margin_bits.unwrap_or(p.rcc.margin_bits),
            skip_below_bits: rcc.skip_below_bits,
            tilt: rcc.tilt.unwrap_or(p.rcc.tilt),
            defer_bits: rcc.defer_bits.unwrap_or(p.rcc.defer_bits),
            scorer: rcc.scorer.unwrap_or(p.rcc.scorer),
            ..p.rcc.clone()
        };
        p.rcc.validate()?;
        p.seed = rcc.seed;
        p.batch_tiles = self.batch_tiles;
        Ok(p)
    }
}

impl PackArgs {
    /// The bits-back parameters these options name.
    fn params(&self, model: &Model) -> Result<ddpm_codec::bitsback::PackParams> {
        let variance = codec::resolve_variance(&self.chain.variance, model, self.chain.steps)?;
        let mut p = ddpm_codec::bitsback::PackParams::new(self.chain.steps, &self.chain.spacing, variance)?;
        p.latent_bits = self.latent_bits;
        p.max_group_tiles = self.max_group;
        p.seed = self.seed;
        Ok(p)
    }
}

/// The items of a pack input (`rd::load_inputs`: an image, a CIFAR-10 folder, or a folder of
/// images), named by file stem.
fn pack_items(input: &Path, limit: Option<usize>) -> Result<Vec<ddpm_codec::bitsback::Item>> {
    let images = ddpm_codec::eval::rd::load_inputs(input, limit)?;
    Ok(images
        .into_iter()
        .map(|n| {
            let p = Path::new(&n.name);
            let stem = match p.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()) {
                Some(e) if matches!(e.as_str(), "png" | "jpg" | "jpeg") => p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or(n.name.clone()),
                _ => n.name.clone(),
            };
            ddpm_codec::bitsback::Item { name: stem, image: n.image }
        })
        .collect())
}

fn write_json(path: &Path, v: &impl serde::Serialize) -> Result<()> {
    let s = serde_json::to_string_pretty(v).map_err(|e| Error::Parameter(e.to_string()))?;
    std::fs::write(path, s)?;
    Ok(())
}

/// Loads the model named on the command line with the chosen network backend.
fn load_model(cli: &Cli) -> Result<Model> {
    let backend: ddpm_codec::model::Backend = cli.network.parse()?;
    let mut model = Model::load(cli.model.as_deref())?;
    model.set_backend(backend);
    Ok(model)
}

/// Runs the parsed command line.
pub fn run_command(cli: Cli) -> Result<()> {
    let quiet = cli.quiet;
    match &cli.cmd {
        Command::Encode { input, output, code, lossy, report } => {
            let model = load_model(&cli)?;
            let img = image_io::read_image(input)?;
            let mut p = code.params(&model)?;
            p.lossless = !lossy;
            let pb = bar(quiet, "encode");
            let (bytes, rep) = codec::encode(&model, &img, &p, &mut tick(&pb), None)?;
            pb.finish_and_clear();
            let out = output.clone().unwrap_or_else(|| input.with_extension("ddpc"));
            std::fs::write(&out, &bytes)?;
            eprintln!(
                "{}: {}x{}x{} → {} bytes ({:.3} bits/dim actual, {:.3} ideal, ratio {:.3}), {} steps, {:.1} s",
                out.display(),
                rep.width,
                rep.height,
                rep.channels,
                rep.file_bytes,
                rep.actual_bpd(),
                rep.ideal_bpd(),
                rep.actual_bpd() / rep.ideal_bpd(),
                rep.steps,
                rep.encode_seconds
            );
            if let Some(r) = report {
                write_json(r, &rep)?;
            }
        }
        Command::Decode { input, output, max_steps, max_bytes, recon, max_work } => {
            let model = load_model(&cli)?;
            let bytes = std::fs::read(input)?;
            let opts = DecodeOptions {
                max_packets: *max_steps,
                max_bytes: *max_bytes,
                recon: recon.parse::<Recon>()?,
                max_work: *max_work,
                ..DecodeOptions::default()
            };
            let pb = bar(quiet, "decode");
            let (img, rep) = codec::decode(&model, &bytes, &opts, &mut tick(&pb))?;
            pb.finish_and_clear();
            image_io::write_png(output, &img)?;
            eprintln!(
                "{}: {} of {} packets ({} bytes), {}, {:.1} s",
                output.display(),
                rep.packets_decoded,
                rep.packets_total,
                rep.bytes_used,
                if rep.lossless { "lossless (checksum verified)".to_string() } else { format!("reconstructed from t = {}", rep.t) },
                rep.decode_seconds
            );
        }
        Command::Pack { input, output, limit, pack, report } => {
            let model = load_model(&cli)?;
            let items = pack_items(input, *limit)?;
            let p = pack.params(&model)?;
            let pb = bar(quiet, "pack");
            let (bytes, rep) = ddpm_codec::bitsback::pack(&model, &items, &p, &mut tick(&pb))?;
            pb.finish_and_clear();
            std::fs::write(output, &bytes)?;
            eprintln!(
                "{}: {} items ({} tiles, {} dims) → {} bytes: {:.4} bits/dim (net {:.4} + initial bits {:.4} + header {:.4}), initial bits {:.0} ({:.0} bytes), {:.1} s ({:.3} s/item)",
                output.display(),
                rep.items,
                rep.tiles,
                rep.dims,
                rep.archive_bytes,
                rep.archive_bpd,
                rep.net_bpd,
                rep.initial_bpd,
                rep.header_bpd,
                rep.initial_bits,
                rep.initial_bits / 8.0,
                rep.pack_seconds,
                rep.pack_seconds / rep.items as f64
            );
            if let Some(r) = report {
                write_json(r, &rep)?;
            }
        }
        Command::Unpack { input, output, report } => {
            let model = load_model(&cli)?;
            let bytes = std::fs::read(input)?;
            let pb = bar(quiet, "unpack");
            let (items, rep) = ddpm_codec::bitsback::unpack(&model, &bytes, &ddpm_codec::bitsback::ArchiveLimits::default(), &mut tick(&pb))?;
            pb.finish_and_clear();
            std::fs::create_dir_all(output)?;
            for it in &items {
                image_io::write_png(&output.join(format!("{}.png", it.name)), &it.image)?;
            }
            eprintln!(
                "{}: {} items bit-exact (pixel CRCs and initial stack verified), {:.1} s ({:.3} s/item)",
                output.display(),
                rep.items,
                rep.unpack_seconds,
                rep.unpack_seconds / rep.items as f64
            );
            if let Some(r) = report {
                write_json(r, &rep)?;
            }
        }
        Command::Info { input } => {
            let bytes = std::fs::read(input)?;
            if bytes.starts_with(ddpm_codec::bitsback::archive::MAGIC) {
                print!("{}", ddpm_codec::bitsback::info(&bytes, &ddpm_codec::bitsback::ArchiveLimits::default())?);
            } else {
                print!("{}", codec::info(&bytes)?);
            }
        }
        Command::Nll { data, split, limit, chain, mode, batch, seed, json } => {
            let model = load_model(&cli)?;
            let pb = bar(quiet, "nll");
            let images = load_images(data, split, *limit)?;
            let schedule = codec::make_schedule(1000, chain.steps, &chain.spacing)?;
            let rep = ddpm_codec::eval::nll::run_nll(
                &model,
                &images,
                &schedule,
                codec::resolve_variance(&chain.variance, &model, chain.steps)?,
                model.variance_tables(),
                mode.parse()?,
                *batch,
                *seed,
                &mut tick(&pb),
            )?;
            pb.finish_and_clear();
            print!("{}", rep.table());
            if let Some(j) = json {
                write_json(j, &rep)?;
            }
        }
        Command::Sample { n, output, strip, steps, seed } => {
            let model = load_model(&cli)?;
            let pb = bar(quiet, "sample");
            use ddpm_codec::{data, diffusion::Diffusion, sample};
            let diff = Diffusion::new(codec::make_schedule(1000, *steps, "dense")?, Variance::Small);
            let x = sample::sample(&model, &diff, *n, *seed, &mut tick(&pb))?;
            let cols = (*n as f64).sqrt().ceil() as usize;
            sample::grid_png(&data::model_to_u8(&x), *n, 3, 32, 32, cols, output)?;
            if let Some(sp) = strip {
                let frames = 10.min(*steps);
                let rows = 4;
                let x = sample::progressive_strip(&model, &diff, rows, frames, *seed + 1, &mut tick(&pb))?;
                sample::grid_png(&data::model_to_u8(&x), rows * frames, 3, 32, 32, frames, sp)?;
                eprintln!("wrote {} ({rows} chains × {frames} frames, x̂_0 from t = 1000 down to t = 1)", sp.display());
            }
            pb.finish_and_clear();
            eprintln!("wrote {}", output.display());
        }
        Command::Calibrate { data, limit, out, json } => {
            use ddpm_codec::eval::calibrate;
            let model = load_model(&cli)?;
            let images = load_images(data, "train", Some(*limit))?;
            let pb = bar(quiet, "calibrate");
            let tables = calibrate::calibrate(&model, &images, 1000, &calibrate::CalibrateOptions::default(), &mut tick(&pb))?;
            pb.finish_and_clear();
            let weights = match &cli.model {
                Some(d) => std::fs::read(d.join("model.safetensors"))?,
                None => ddpm_codec::model::EMBEDDED_WEIGHTS.to_vec(),
            };
            let config = match &cli.model {
                Some(d) => std::fs::read_to_string(d.join("config.json"))?,
                None => ddpm_codec::model::EMBEDDED_CONFIG.to_string(),
            };
            let new = ddpm_codec::model::with_variance_tables(&weights, &tables)?;
            std::fs::create_dir_all(out)?;
            std::fs::write(out.join("model.safetensors"), &new)?;
            std::fs::write(out.join("config.json"), config)?;
            let reloaded = Model::from_dir(out)?;
            eprintln!(
                "wrote {} ({} calibration images; identity {})",
                out.display(),
                images.len() / (3 * 32 * 32),
                reloaded.sha256_hex()
            );
            if let Some(j) = json {
                write_json(j, &tables)?;
            }
        }
        Command::Rd(args) => run_rd(&cli, args)?,
        Command::BenchLossless { input, limit, code, no_verify, bitsback, latent_bits, json } => {
            use ddpm_codec::eval::{classical::Tools, rd};
            let model = load_model(&cli)?;
            let images = rd::load_inputs(input, *limit)?;
            let p = code.params(&model)?;
            let tools = Tools::detect();
            let mut extras = rd::LosslessExtras::default();
            if *bitsback {
                let mut bp = ddpm_codec::bitsback::PackParams::new(code.chain.steps, &code.chain.spacing, p.variance)?;
                bp.latent_bits = *latent_bits;
                bp.seed = code.rcc.seed;
                extras.bitsback = Some(bp);
                extras.bound = true;
            }
            let pb = bar(quiet, "lossless");
            let rep = rd::bench_lossless_with(&model, &images, &p, &tools, !no_verify, &extras, &mut tick(&pb))?;
            pb.finish_and_clear();
            print!("{}", rep.table());
            if let Some(j) = json {
                write_json(j, &rep)?;
                eprintln!("wrote {}", j.display());
            }
            let failures: usize = rep.codecs.iter().map(|c| c.failures).sum();
            if failures > 0 {
                return Err(Error::Checksum(format!("{failures} lossless round trips were not bit-exact (see the table)")));
            }
        }
    }
    Ok(())
}

/// `rd`: our curves from one encode per image, optionally the classical codecs, then files.
fn run_rd(cli: &Cli, args: &RdArgs) -> Result<()> {
    let RdArgs { input, limit, code, recon, ddim_points, classical, csv, json, plot, strip, strip_frames } = args;
    let chain = &code.chain;
    let (limit, ddim_points, classical, strip_frames) = (*limit, *ddim_points, *classical, *strip_frames);
    use ddpm_codec::eval::{classical::Tools, plot as rdplot, rd};
    let quiet = cli.quiet;
    let model = load_model(cli)?;
    let images = rd::load_inputs(input, limit)?;
    let p = code.params(&model)?;
    let mode: rd::ReconMode = recon.parse()?;
    let opts = rd::RdOptions { recon: mode, ddim_points: ddim_points.max(1), keep_frames: strip.is_some() };
    let pb = bar(quiet, "rd");
    let (per_image, ddim_prefixes) = rd::run_rd(&model, &images, &p, &opts, &mut tick(&pb))?;
    pb.finish_and_clear();
    let mut curves = rd::ours_curves(&per_image, mode)?;
    let mut notes = Vec::new();
    if classical {
        let tools = Tools::detect();
        let pb = bar(quiet, "classical");
        let (c, n) = rd::classical_curves(&tools, &images, &mut tick(&pb))?;
        pb.finish_and_clear();
        curves.extend(c);
        notes = n;
    }
    for n in &notes {
        eprintln!("note: {n}");
    }
    print!("{}", rd::summary(&curves));
    let k = p.schedule.steps();
    // the strip: first image, frames spread evenly along the stream (packets), the last one the lossless end
    let mut strip_info = Vec::new();
    if let Some(sp) = strip {
        let first = &per_image[0];
        let lossy: Vec<usize> = first.onestep.iter().filter(|q| q.packets < k).map(|q| q.bytes).collect();
        let lossless = p.lossless;
        let want = strip_frames.max(2) - usize::from(lossless);
        let picks = rd::even_prefixes(lossy.len(), want);
        let mut frames = Vec::new();
        for &m in &picks {
            frames.push(first.frames[m].clone());
            strip_info.push(&first.onestep[m]);
        }
        if lossless {
            frames.push(images[0].image.clone());
            strip_info.push(first.onestep.last().expect("lossless end"));
        }
        let scale = (128 / first.width.max(first.height)).max(1);
        rdplot::strip_png(sp, &frames, scale)?;
        eprintln!("wrote {} ({}: one-step reconstructions at {} prefixes, x{scale})", sp.display(), first.name, frames.len());
        for q in &strip_info {
            let d = ddpm_codec::eval::metrics::Distortion::from_mse(q.mse);
            eprintln!(
                "  m = {:>4} packets, t = {:>4}: {:.3} bpp actual ({} bytes), {:.3} bpp ideal, RMSE {:.2}, PSNR {:.2} dB",
                q.packets,
                q.t,
                q.bytes as f64 * 8.0 / first.pixels as f64,
                q.bytes,
                q.ideal_bits / first.pixels as f64,
                d.rmse,
                d.psnr
            );
        }
    }
    if let Some(c) = csv {
        std::fs::write(c, rd::to_csv(&curves))?;
        eprintln!("wrote {}", c.display());
    }
    if let Some(j) = json {
        let meta = serde_json::json!({
            "images": images.len(),
            "image_names": images.iter().map(|i| i.name.clone()).collect::<Vec<_>>(),
            "steps": k,
            "spacing": chain.spacing,
            "variance": p.variance.name(),
            "taus": p.schedule.taus(),
            "rcc": p.rcc,
            "seed": p.seed,
            "model_sha256": model.sha256_hex(),
            "recon": recon,
            "ddim_prefixes": ddim_prefixes,
            "notes": notes,
            "per_image": per_image.iter().map(|r| serde_json::json!({
                "name": r.name,
                "file_bytes": r.file_bytes,
                "actual_bpd": r.file_bytes as f64 * 8.0 / r.dims as f64,
                "ideal_bpd": r.ideal_bits / r.dims as f64,
                "encode_seconds": r.encode_seconds,
            })).collect::<Vec<_>>(),
            "strip": strip_info.iter().map(|q| serde_json::json!({
                "packets": q.packets,
                "t": q.t,
                "bytes": q.bytes,
                "bpp": q.bytes as f64 * 8.0 / per_image[0].pixels as f64,
                "ideal_bpp": q.ideal_bits / per_image[0].pixels as f64,
                "rmse": q.mse.sqrt(),
            })).collect::<Vec<_>>(),
        });
        write_json(j, &rd::to_json(&curves, meta))?;
        eprintln!("wrote {}", j.display());
    }
    if let Some(pl) = plot {
        let title = format!(
            "ddpm-codec vs classical codecs: {} image{}, {} steps ({} spacing)",
            images.len(),
            if images.len() == 1 { "" } else { "s" },
            k,
            chain.spacing
        );
        rdplot::rd_plot(pl, &title, &rdplot::series_from_curves(&curves))?;
        eprintln!("wrote {}", pl.display());
    }
    Ok(())
}

/// Loads a data set: a folder with CIFAR-10 binary batches, or a folder of 32×32 images.
pub fn load_images(dir: &Path, split: &str, limit: Option<usize>) -> Result<Vec<u8>> {
    use ddpm_codec::data;
    let split = match split {
        "test" => data::Split::Test,
        "train" => data::Split::Train,
        s => return Err(Error::Parameter(format!("unknown split {s:?} (test or train)"))),
    };
    let bin = dir.join(if split == data::Split::Test { "test_batch.bin" } else { "data_batch_1.bin" });
    let (images, _n) = if bin.exists() {
        data::load_cifar10(dir, split, limit)?
    } else {
        data::load_png_folder(dir, limit)?
    };
    Ok(images)
}
