//! Coding benchmarks: PFR chunks/s, pixel entropy coding pixels/s, normal generation normals/s.
//!
//! `cargo bench --bench coding -- --quick`

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use ddpm_codec::entropy::{SymbolReader, SymbolWriter};
use ddpm_codec::rcc::{decode_step, encode_step, plan_chunks, RccParams, StepKey};
use ddpm_codec::rng::fill_normals;

/// A realistic step: D = 3072 (one 32×32×3 tile), KL ≈ 100 bits, equal variances.
fn step_inputs(dims: usize, kl_bits: f64) -> (Vec<f32>, Vec<f32>) {
    let mut mu_p = vec![0f32; dims];
    let mut u = vec![0f32; dims];
    fill_normals(1, 1, &mut mu_p);
    fill_normals(1, 2, &mut u);
    let uu: f64 = u.iter().map(|&x| (x as f64).powi(2)).sum();
    let sigma = 0.1f64;
    let scale = (kl_bits * std::f64::consts::LN_2 * 2.0 * sigma * sigma / uu).sqrt();
    let mu_q = mu_p
        .iter()
        .zip(&u)
        .map(|(&p, &x)| p + (scale * x as f64) as f32)
        .collect();
    (mu_p, mu_q)
}

fn bench_pfr(c: &mut Criterion) {
    let dims = 3072;
    let kl = 100.0;
    let (mu_p, mu_q) = step_inputs(dims, kl);
    let mut g = c.benchmark_group("pfr_encode_step_D3072_KL100");
    g.sample_size(10);
    for chunk_bits in [6.0, 8.0, 10.0] {
        let params = RccParams {
            chunk_bits,
            ..RccParams::default()
        };
        let q = ddpm_codec::entropy::quantize_kl(kl);
        let plan = plan_chunks(q, &params, dims).unwrap();
        g.throughput(Throughput::Elements(plan.chunks as u64));
        let id = format!("B{chunk_bits}_n{}_L{}", plan.chunks, plan.log2_candidates);
        g.bench_function(BenchmarkId::from_parameter(id), |b| {
            b.iter(|| {
                let mut w = SymbolWriter::new();
                let mut prev = 0;
                let key = StepKey { seed: 3, step: 1 };
                let (x, _) =
                    encode_step(key, &params, &mu_p, 0.1, &mu_q, 0.1, &mut prev, &mut w).unwrap();
                black_box(x)
            })
        });
    }
    g.finish();

    let params = RccParams::default();
    let mut w = SymbolWriter::new();
    let mut prev = 0;
    let key = StepKey { seed: 3, step: 1 };
    encode_step(key, &params, &mu_p, 0.1, &mu_q, 0.1, &mut prev, &mut w).unwrap();
    let enc = w.finish().unwrap();
    let mut g = c.benchmark_group("pfr_decode_step_D3072_KL100");
    g.throughput(Throughput::Elements(dims as u64));
    g.bench_function("B8", |b| {
        b.iter(|| {
            let mut r = SymbolReader::new(&enc.words).unwrap();
            let mut prev = 0;
            black_box(decode_step(key, &params, &mu_p, 0.1, &mut prev, &mut r).unwrap())
        })
    });
    g.finish();
}

fn bench_pixels(c: &mut Criterion) {
    let n = 3072;
    let mut mu = vec![0f32; n];
    fill_normals(9, 0, &mut mu);
    let mu: Vec<f32> = mu.iter().map(|&z| (z * 0.4).clamp(-1.0, 1.0)).collect();
    let sigma = 0.01f32; // ≈ 1.3 pixel
    let mut noise = vec![0f32; n];
    fill_normals(9, 1, &mut noise);
    let values: Vec<u8> = mu
        .iter()
        .zip(&noise)
        .map(|(&m, &z)| (((m + 1.0) * 127.5) + z * 1.3).round().clamp(0.0, 255.0) as u8)
        .collect();
    let mut g = c.benchmark_group("pixels");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("encode_3072", |b| {
        b.iter(|| {
            let mut w = SymbolWriter::new();
            w.begin_step();
            w.write_pixels(&values, &mu, sigma).unwrap();
            black_box(w.finish().unwrap())
        })
    });
    let mut w = SymbolWriter::new();
    w.begin_step();
    let ideal = w.write_pixels(&values, &mu, sigma).unwrap();
    let enc = w.finish().unwrap();
    println!(
        "pixels: ideal {:.4} bits/pixel, actual {:.4} bits/pixel",
        ideal / n as f64,
        enc.words.len() as f64 * 32.0 / n as f64
    );
    g.bench_function("decode_3072", |b| {
        b.iter(|| {
            let mut r = SymbolReader::new(&enc.words).unwrap();
            let mut out = vec![0u8; n];
            r.read_pixels(&mu, sigma, &mut out).unwrap();
            black_box(out)
        })
    });
    g.finish();
}

fn bench_normals(c: &mut Criterion) {
    let n = 1 << 20;
    let mut out = vec![0f32; n];
    let mut g = c.benchmark_group("normals");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("fill_normals_1M", |b| {
        b.iter(|| {
            fill_normals(5, 1, &mut out);
            black_box(out[17])
        })
    });
    g.finish();
}

criterion_group!(benches, bench_normals, bench_pixels, bench_pfr);
criterion_main!(benches);
