//! Golden parity: the Rust U-Net must reproduce the PyTorch network (train/model.py) on the
//! fixture written by train/golden.py, to 1e-4.

use candle_core::Device;
use ddpm_codec::model::Model;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny");

#[test]
fn rust_unet_matches_pytorch_golden_vectors() {
    let model = Model::from_dir(std::path::Path::new(DIR)).expect("load tiny model");
    let golden = candle_core::safetensors::load(format!("{DIR}/golden.safetensors"), &Device::Cpu).unwrap();
    let x = golden["x"].flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let t = golden["t"].to_vec1::<f32>().unwrap();
    let want = golden["eps"].flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let per = x.len() / t.len();
    let mut max_err = 0f32;
    for (i, &ti) in t.iter().enumerate() {
        let got = model.eps(&x[i * per..(i + 1) * per], 1, ti as usize).unwrap();
        for (a, b) in got.iter().zip(&want[i * per..(i + 1) * per]) {
            max_err = max_err.max((a - b).abs());
        }
    }
    println!("max |eps_rust - eps_torch| = {max_err:e}");
    assert!(max_err < 1e-4, "parity error {max_err}");
}

#[test]
fn model_identity_is_sha256_of_weights() {
    let model = Model::from_dir(std::path::Path::new(DIR)).unwrap();
    let bytes = std::fs::read(format!("{DIR}/model.safetensors")).unwrap();
    use sha2::Digest;
    let want: [u8; 32] = sha2::Sha256::digest(&bytes).into();
    assert_eq!(model.sha256(), want);
}

const SIGMA_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny_sigma");

/// A learned-variance network (`learn_sigma`, `train/golden.py --learn-sigma 1`): both paths
/// reproduce PyTorch's whole output (ε and v), and ε alone is the first planes, bit for bit.
#[test]
fn learned_variance_unet_matches_pytorch_and_eps_is_its_first_planes() {
    let mut model = Model::from_dir(std::path::Path::new(SIGMA_DIR)).expect("load tiny_sigma");
    assert!(model.learns_sigma());
    let golden = candle_core::safetensors::load(format!("{SIGMA_DIR}/golden.safetensors"), &Device::Cpu).unwrap();
    let x = golden["x"].flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let t = golden["t"].to_vec1::<f32>().unwrap();
    let want = golden["eps"].flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let per = x.len() / t.len();
    assert_eq!(want.len(), 2 * x.len(), "the fixture holds eps and v");
    for backend in [ddpm_codec::model::Backend::Fast, ddpm_codec::model::Backend::Candle] {
        model.set_backend(backend);
        let mut max_err = 0f32;
        for (i, &ti) in t.iter().enumerate() {
            let xi = &x[i * per..(i + 1) * per];
            let got = model.predict(xi, 1, ti as usize).unwrap();
            assert_eq!(got.len(), 2 * per);
            for (a, b) in got.iter().zip(&want[i * 2 * per..(i + 1) * 2 * per]) {
                max_err = max_err.max((a - b).abs());
            }
            let eps = model.eps(xi, 1, ti as usize).unwrap();
            assert_eq!(eps, got[..per], "{backend:?}: eps must be predict's first planes");
        }
        println!("{backend:?}: max |out_rust - out_torch| = {max_err:e}");
        assert!(max_err < 1e-4, "{backend:?}: parity error {max_err}");
    }
}
