//! U-Net forward pass per 32×32 tile: the candle network ("before") and `FastUNet`.
//!
//!   cargo bench --bench network                       # random weights, shipped config
//!   DDPM_BENCH_MODEL=DIR cargo bench --bench network  # DIR/model.safetensors + config.json
//!
//! Threads: RAYON_NUM_THREADS (rayon and candle both read it). Throughput is per image.
//! candle at batch 64 is left out (≈ 10 s a call); bench/run_infer_bench.sh has it.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ddpm_codec::model::fast::FastUNet;
use ddpm_codec::model::{Config, UNet};

fn shipped_config() -> Config {
    let s = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/train/configs/small.json")).expect("small.json");
    serde_json::from_str(&s).expect("config")
}

fn weights() -> (HashMap<String, Tensor>, Config) {
    if let Ok(dir) = std::env::var("DDPM_BENCH_MODEL") {
        let dir = std::path::PathBuf::from(dir);
        let cfg: Config = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
        let t = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
        return (t.into_iter().map(|(k, v)| (k, v.to_dtype(DType::F32).unwrap())).collect(), cfg);
    }
    let cfg = shipped_config();
    let vm = VarMap::new();
    let _ = UNet::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
    let t = vm.data().lock().unwrap().iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect();
    (t, cfg)
}

fn bench(c: &mut Criterion) {
    let (tensors, cfg) = weights();
    let fast = FastUNet::from_tensors(&tensors, &cfg).unwrap();
    let candle = UNet::new(&cfg, VarBuilder::from_tensors(tensors.clone(), DType::F32, &Device::Cpu)).unwrap();
    let per = cfg.in_channels * cfg.resolution * cfg.resolution;
    let mut g = c.benchmark_group("unet_forward");
    g.sample_size(10);
    for &n in &[1usize, 16, 64] {
        let x: Vec<f32> = (0..n * per).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("fast", n), &n, |b, &n| b.iter(|| fast.eps(&x, n, 500).unwrap()));
        if n <= 16 {
            let xt = Tensor::from_slice(&x, (n, cfg.in_channels, cfg.resolution, cfg.resolution), &Device::Cpu).unwrap();
            let ts = vec![500f32; n];
            g.bench_with_input(BenchmarkId::new("candle", n), &n, |b, _| b.iter(|| candle.forward(&xt, &ts).unwrap()));
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
