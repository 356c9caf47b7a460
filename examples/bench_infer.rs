//! U-Net forward speed, for bench/run_infer_bench.sh (via train/bench_infer.py):
//!
//!   RAYON_NUM_THREADS=1 bench_infer --model DIR --batch 16 --secs 1.5 --backends fast,candle
//!
//! prints one JSON line: wall ms per image for each back-end (`candle`: the candle U-Net;
//! `fast`: FastUNet), `<name>_cpu`: CPU ms per image (all threads) and `<name>_min`: the
//! fastest call's wall ms per image.
//! Thread count: RAYON_NUM_THREADS (read by rayon and by candle).

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use ddpm_codec::model::fast::FastUNet;
use ddpm_codec::model::{Config, UNet};

/// CPU time of this process (all threads, from /proc/self/task/*/schedstat), seconds.
fn cpu_secs() -> f64 {
    let mut ns = 0u64;
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for t in dir.flatten() {
            let s = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
            ns += s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    ns as f64 * 1e-9
}

/// (wall ms, CPU ms, fastest call's wall ms) per image.
fn time_it(secs: f64, batch: usize, warm: usize, min_iters: usize, mut f: impl FnMut()) -> (f64, f64, f64) {
    for _ in 0..warm {
        f();
    }
    let (t0, c0) = (Instant::now(), cpu_secs());
    let mut n = 0;
    let mut best = f64::INFINITY;
    loop {
        let t1 = Instant::now();
        f();
        best = best.min(t1.elapsed().as_secs_f64());
        n += 1;
        let el = t0.elapsed().as_secs_f64();
        if el >= secs && n >= min_iters {
            let imgs = (n * batch) as f64;
            return (1e3 * el / imgs, 1e3 * (cpu_secs() - c0) / imgs, 1e3 * best / batch as f64);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, def: &str| -> String {
        args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned()).unwrap_or_else(|| def.to_string())
    };
    let dir = std::path::PathBuf::from(arg("--model", "models/default"));
    let batch: usize = arg("--batch", "16").parse().expect("--batch");
    let secs: f64 = arg("--secs", "1.5").parse().expect("--secs");
    let backends = arg("--backends", "fast,candle");
    let cfg: Config = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).expect("config.json")).expect("config");
    let tensors: HashMap<String, Tensor> = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu)
        .expect("weights")
        .into_iter()
        .map(|(k, v)| (k, v.to_dtype(DType::F32).unwrap()))
        .collect();
    let per = cfg.in_channels * cfg.resolution * cfg.resolution;
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    let x: Vec<f32> = (0..batch * per)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect();
    let mut out = Vec::new();
    for be in backends.split(',') {
        let (ms, cpu, best) = match be {
            "fast" => {
                let net = FastUNet::from_tensors(&tensors, &cfg).expect("fast net");
                time_it(secs, batch, 2, 2, || {
                    std::hint::black_box(net.eps(&x, batch, 500).unwrap());
                })
            }
            "candle" => {
                let vb = VarBuilder::from_tensors(tensors.clone(), DType::F32, &Device::Cpu);
                let net = UNet::new(&cfg, vb).expect("candle net");
                let xt = Tensor::from_slice(&x, (batch, cfg.in_channels, cfg.resolution, cfg.resolution), &Device::Cpu).unwrap();
                let ts = vec![500f32; batch];
                // slow: one warm-up call, at least one timed call
                time_it(secs, batch, 1, 1, || {
                    std::hint::black_box(net.forward(&xt, &ts).unwrap());
                })
            }
            other => panic!("unknown back-end {other}"),
        };
        out.push(format!("\"{be}\": {ms:.4}, \"{be}_cpu\": {cpu:.4}, \"{be}_min\": {best:.4}"));
    }
    println!("{{{}}}", out.join(", "));
}
