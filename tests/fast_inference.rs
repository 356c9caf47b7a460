//! The fast inference path (`FastUNet`): parity with the candle U-Net and the PyTorch golden
//! vectors, and bit-exact determinism across batch composition, thread count and back-end.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use ddpm_codec::kernels::Backend;
use ddpm_codec::model::fast::FastUNet;
use ddpm_codec::model::{Config, Model};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny");

fn tiny() -> (HashMap<String, Tensor>, Config) {
    let t = candle_core::safetensors::load(format!("{DIR}/model.safetensors"), &Device::Cpu).unwrap();
    let t = t.into_iter().map(|(k, v)| (k, v.to_dtype(DType::F32).unwrap())).collect();
    let cfg: Config = serde_json::from_str(&std::fs::read_to_string(format!("{DIR}/config.json")).unwrap()).unwrap();
    (t, cfg)
}

fn golden() -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let g = candle_core::safetensors::load(format!("{DIR}/golden.safetensors"), &Device::Cpu).unwrap();
    let x = g["x"].flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let t = g["t"].to_vec1::<f32>().unwrap();
    let eps = g["eps"].flatten_all().unwrap().to_vec1::<f32>().unwrap();
    (x, t, eps)
}

/// Deterministic pseudo-random images (N(0,1)-ish).
fn images(n: usize, per: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n * per)
        .map(|_| {
            let mut acc = 0f32;
            for _ in 0..4 {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                acc += (s >> 40) as f32 / (1u64 << 24) as f32;
            }
            (acc - 2.0) * 1.7
        })
        .collect()
}

fn max_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn in_pool<R: Send>(k: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new().num_threads(k).build().unwrap().install(f)
}

#[test]
fn fast_matches_pytorch_golden_and_candle() {
    let (tensors, cfg) = tiny();
    let fast = FastUNet::from_tensors(&tensors, &cfg).unwrap();
    let model = Model::from_dir(std::path::Path::new(DIR)).unwrap();
    let (x, t, want) = golden();
    let per = x.len() / t.len();
    let (mut e_torch, mut e_candle) = (0f32, 0f32);
    for (i, &ti) in t.iter().enumerate() {
        let xi = &x[i * per..(i + 1) * per];
        let got = fast.eps(xi, 1, ti as usize).unwrap();
        e_torch = e_torch.max(max_err(&got, &want[i * per..(i + 1) * per]));
        let cand = model.eps_candle(xi, 1, ti as usize).unwrap();
        e_candle = e_candle.max(max_err(&got, &cand));
    }
    // Model::eps runs the fast path
    assert!(model.eps(&x[..per], 1, t[0] as usize).unwrap() == fast.eps(&x[..per], 1, t[0] as usize).unwrap());
    println!("max |fast - torch| = {e_torch:e}, max |fast - candle| = {e_candle:e}");
    assert!(e_torch < 1e-4, "fast vs PyTorch {e_torch}");
    assert!(e_candle < 1e-4, "fast vs candle {e_candle}");
}

#[test]
fn image_alone_equals_image_in_batch() {
    let (tensors, cfg) = tiny();
    let fast = FastUNet::from_tensors(&tensors, &cfg).unwrap();
    let per = cfg.in_channels * cfg.resolution * cfg.resolution;
    let xs = images(5, per, 7);
    let batch = fast.eps(&xs, 5, 321).unwrap();
    for i in 0..5 {
        let alone = fast.eps(&xs[i * per..(i + 1) * per], 1, 321).unwrap();
        assert!(alone == batch[i * per..(i + 1) * per], "image {i}: batch changes the output");
    }
    // the same image at another position among other images
    let mut xs2 = images(5, per, 99);
    xs2[3 * per..4 * per].copy_from_slice(&xs[..per]);
    let b2 = fast.eps(&xs2, 5, 321).unwrap();
    assert!(b2[3 * per..4 * per] == batch[..per]);
    // batch of 2 on 2 threads, and a single image on 2 threads (split rows)
    let b3 = in_pool(2, || fast.eps(&xs[..2 * per], 2, 321).unwrap());
    assert!(b3 == batch[..2 * per]);
}

#[test]
fn threads_and_backends_are_bit_identical() {
    let (tensors, cfg) = tiny();
    let fast = FastUNet::from_tensors(&tensors, &cfg).unwrap();
    let per = cfg.in_channels * cfg.resolution * cfg.resolution;
    let xs = images(5, per, 11);
    for &t in &[0usize, 17, 999] {
        let one = in_pool(1, || fast.eps(&xs, 5, t).unwrap());
        let two = in_pool(2, || fast.eps(&xs, 5, t).unwrap());
        assert!(one == two, "1 vs 2 threads differ at t={t}");
        let single1 = in_pool(1, || fast.eps(&xs[..per], 1, t).unwrap());
        let single2 = in_pool(2, || fast.eps(&xs[..per], 1, t).unwrap());
        assert!(single1 == single2 && single1 == one[..per]);
    }
    // every kernel back-end (AVX-512, AVX2, portable) gives the very same bits
    let a = fast.eps(&xs[..2 * per], 2, 500).unwrap();
    for be in Backend::available() {
        let other = FastUNet::with_backend(&tensors, &cfg, be).unwrap();
        let b = other.eps(&xs[..2 * per], 2, 500).unwrap();
        assert!(a == b, "{:?} and {be:?} back-ends differ (max {})", fast.backend(), max_err(&a, &b));
    }
}

/// A larger random model (the shipped config's shape, 4 levels, with the learned-variance
/// output of the session-6 trainer) agrees with candle too, on all six output channels.
#[test]
fn fast_matches_candle_on_small_config() {
    let cfg = Config {
        in_channels: 3,
        ch: 32,
        ch_mult: vec![1, 2, 2, 2],
        num_res_blocks: 1,
        attn_resolutions: vec![16],
        dropout: 0.0,
        resolution: 32,
        num_groups: 8,
        learn_sigma: true,
    };
    let vm = candle_nn::VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
    let net = ddpm_codec::model::UNet::new(&cfg, vb).unwrap();
    // perturb norms and biases (they init to trivial values)
    let mut tensors = HashMap::new();
    for (i, (k, v)) in vm.data().lock().unwrap().iter().enumerate() {
        if k.contains("norm") || k.ends_with("bias") {
            let r = Tensor::randn(0f32, 0.1, v.shape(), &Device::Cpu).unwrap();
            v.set(&(v.as_tensor() + r).unwrap()).unwrap();
        }
        let _ = i;
        tensors.insert(k.clone(), v.as_tensor().clone());
    }
    let fast = FastUNet::from_tensors(&tensors, &cfg).unwrap();
    let per = 3 * 32 * 32;
    let xs = images(2, per, 5);
    let xt = Tensor::from_slice(&xs, (2, 3, 32, 32), &Device::Cpu).unwrap();
    let want = net.forward(&xt, &[250.0, 250.0]).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let got = fast.predict(&xs, 2, 250).unwrap();
    assert_eq!(got.len(), want.len());
    assert_eq!(want.len(), 2 * 2 * per, "eps and v");
    let e = max_err(&got, &want);
    println!("small config: max |fast - candle| = {e:e}");
    assert!(e < 1e-4, "{e}");
}

/// The exact output bits on the tiny fixture. Streams depend on them: if this changes (a
/// kernel's arithmetic changed), streams written before will not decode; bump the format.
#[test]
fn fast_output_bits_are_pinned() {
    use sha2::Digest;
    let (tensors, cfg) = tiny();
    let (x, t, _) = golden();
    let per = x.len() / t.len();
    for be in Backend::available() {
        let fast = FastUNet::with_backend(&tensors, &cfg, be).unwrap();
        let mut hb = sha2::Sha256::new();
        for (i, &ti) in t.iter().enumerate() {
            for v in fast.eps(&x[i * per..(i + 1) * per], 1, ti as usize).unwrap() {
                hb.update(v.to_bits().to_le_bytes());
            }
        }
        let d: [u8; 32] = hb.finalize().into();
        let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
        println!("{be:?}: {hex}");
        assert_eq!(hex, PINNED, "FastUNet output bits changed ({be:?})");
    }
}

const PINNED: &str = "51f0671436c5e24b81a8798c74487f11dbb2d703dc23836b331abdb57aa8b0ec";
