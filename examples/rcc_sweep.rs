//! Channel-simulation sweep (issue #12): encodes images with each (chunk bits, margin) pair and
//! prints one CSV row per setting: whole-file and chain-alone actual/ideal, container bytes,
//! faithfulness of the coded samples (whitened residual mean/variance; per chunk, the residual
//! projected on the shift μ_q − μ_p: exact sampling gives 0 and 1),
//! encode CPU seconds per image, and the chunks' over-budget share.
//!
//!   cargo run --release --example rcc_sweep -- DATA N STEPS VARIANCE "B:M,B:M,..." [MODEL_DIR]
//!
//! Each setting is B:M (at most 2^19 candidates per chunk), B:M:MAX_LOG2 (12:3:17 is the
//! default stream up to K = 50, 14:2:17 above) B:M:MAX_LOG2:SKIP (steps below SKIP bits are skipped; default 0.25) or
//! B:M:MAX_LOG2:SKIP:TILT (the encoder's target tilt; default: the preset of K, 1.2 up to K = 50, 1.3 above) or B:M:MAX_LOG2:SKIP:TILT:E
//! (E = 1 exact per-dimension quadratic scoring of a learned variance, the default; 0 the chunk mean, `RccParams::exact_quadratic`)
//! or B:M:MAX_LOG2:SKIP:TILT:E:D (D: the deferral target `RccParams::defer_bits`; default by K)
//! or B:M:MAX_LOG2:SKIP:TILT:E:D:SCORER (`int8`, the default, or `f32`: `RccParams::scorer`). DATA: a CIFAR-10 folder (test split) or an image folder; N images; e.g.
//!   rcc_sweep ../shared/data/cifar10 50 50 optimal "6:6,10:3,14:2,16:2" /work/runs/calib/model

use ddpm_codec::codec::{self, CodecParams};
use ddpm_codec::eval::rd::load_inputs;
use ddpm_codec::model::Model;
use ddpm_codec::rcc::RccParams;

fn cpu_secs() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let f: Vec<&str> = s.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let tick = 100.0;
    (f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)) / tick
}

fn main() -> ddpm_codec::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 6 {
        eprintln!("usage: rcc_sweep DATA N STEPS VARIANCE B:M,... [MODEL_DIR]");
        std::process::exit(1);
    }
    let images = load_inputs(std::path::Path::new(&a[1]), Some(a[2].parse().unwrap()))?;
    let steps: usize = a[3].parse().unwrap();
    let model = Model::load(a.get(6).map(std::path::Path::new))?;
    println!("chunk_bits,margin_bits,max_log2,skip_below_bits,tilt,images,file_actual_over_ideal,chain_actual_over_kl,container_bytes,actual_bpd,ideal_bpd,encode_cpu_s_per_image,chunks_per_image,over_budget_share,index_bpd,step_info_bpd,skipped_steps_per_image,resid_mean,resid_var,shift_proj_mean,shift_proj_var,scorer");
    for bm in a[5].split(',') {
        // B:M (max 2^19 candidates, as in bench/rcc/) or B:M:MAX_LOG2
        let f: Vec<&str> = bm.split(':').collect();
        let (b, m) = (f[0], f[1]);
        let max_l = f.get(2).map_or(19, |v| v.parse().unwrap());
        // unset fields: the chain's preset (CodecParams::new: RccParams::default_for K)
        let mut p = CodecParams::new(steps, "dense", a[4].parse()?)?;
        let skip = f.get(3).map_or(p.rcc.skip_below_bits, |v| v.parse().unwrap());
        let tilt = f.get(4).map_or(p.rcc.tilt, |v| v.parse().unwrap());
        // the default stream scores exactly (sessions 7–8 ran "12:3:17" with the chunk mean: a 6th field was needed)
        let exact_quadratic = f.get(5).map_or(p.rcc.exact_quadratic, |v| *v == "1");
        let defer_bits: Option<f64> = f.get(6).map(|v| v.parse().unwrap());
        let scorer: Option<ddpm_codec::rcc::Scorer> = f.get(7).map(|v| v.parse().unwrap());
        p.rcc = RccParams { chunk_bits: b.parse().unwrap(), margin_bits: m.parse().unwrap(), max_log2_candidates: max_l, skip_below_bits: skip, tilt, exact_quadratic, ..p.rcc.clone() };
        if let Some(d) = defer_bits {
            p.rcc.defer_bits = d;
        }
        if let Some(sc) = scorer {
            p.rcc.scorer = sc;
        }
        let (mut file_bits, mut ideal, mut chain_bits, mut chain_kl, mut head, mut dims) = (0.0, 0.0, 0.0, 0.0, 0usize, 0usize);
        let (mut chunks, mut over) = (0usize, 0usize);
        let (mut index_bits, mut info_bits, mut skipped) = (0.0f64, 0.0f64, 0usize);
        let mut faith = ddpm_codec::rcc::Faithfulness::default();
        let c0 = cpu_secs();
        for img in &images {
            let (bytes, rep) = codec::encode(&model, &img.image, &p, &mut |_, _| {}, None)?;
            file_bits += bytes.len() as f64 * 8.0;
            ideal += rep.ideal_bits;
            head += rep.overhead_bytes;
            dims += rep.dims;
            let k = rep.packets.len();
            let last_chain = rep.packets.iter().rposition(|q| q.t_after > 0).unwrap_or(0);
            let _ = k;
            chain_bits += rep.packets[last_chain].cum_words as f64 * 32.0;
            chain_kl += rep.packets[last_chain].cum_ideal_bits;
            chunks += rep.packets.iter().map(|q| q.chunks).sum::<usize>();
            over += rep.packets.iter().map(|q| q.over_budget_chunks).sum::<usize>();
            index_bits += rep.packets.iter().map(|q| q.index_bits).sum::<f64>();
            info_bits += rep.packets.iter().map(|q| q.step_info_bits).sum::<f64>();
            skipped += rep.packets.iter().filter(|q| q.t_after > 0 && q.chunks == 0).count();
            rep.packets.iter().for_each(|q| faith.add(&q.faith));
        }
        let n = images.len() as f64;
        println!(
            "{b},{m},{max_l},{skip},{tilt},{},{:.4},{:.4},{:.2},{:.4},{:.4},{:.3},{:.1},{:.4},{:.4},{:.4},{:.1},{:.4},{:.4},{:.4},{:.4},{:?}",
            images.len(),
            file_bits / ideal,
            chain_bits / chain_kl,
            head as f64 / n,
            file_bits / dims as f64,
            ideal / dims as f64,
            (cpu_secs() - c0) / n,
            chunks as f64 / n,
            over as f64 / chunks.max(1) as f64,
            index_bits / dims as f64,
            info_bits / dims as f64,
            skipped as f64 / n,
            faith.residual().0,
            faith.residual().1,
            faith.projection().0,
            faith.projection().1,
            p.rcc.scorer
        );
    }
    Ok(())
}
