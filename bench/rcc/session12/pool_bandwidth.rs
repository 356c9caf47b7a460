use ddpm_codec::kernels::{score, Backend};
use ddpm_codec::rcc::pool;
use std::time::Instant;
fn main() {
    let p = pool::pool();
    let be = Backend::detect();
    println!("{be:?}");
    for &g in &[1usize, 4, 16, 64] {
        let lin = vec![0.1f32; g * 64];
        let quad = vec![0.01f32; g * 64];
        let kmax = vec![64usize; g];
        for &(name, rows) in &[("L2-ish 2^10", 1usize << 10), ("8MiB 2^15", 1 << 15), ("pool 2^19", 1 << 19)] {
            let mut out = vec![0f32; g * 1024];
            let reps = ((1usize << 22) / rows / g).max(1);
            let t = Instant::now();
            for _ in 0..reps {
                let mut r = 0;
                while r < rows {
                    let panel = &p[pool::index(r, 0)..pool::index(r, 0) + 64 * 16];
                    let jj = r % 1024;
                    score::panel_scores(be, g, &lin, &quad, &kmax, panel, &mut out[jj..], 1024);
                    r += 16;
                }
            }
            let dt = t.elapsed().as_secs_f64();
            let elems = (reps * rows * 64 * g) as f64;
            let bytes = (reps * rows * 64 * 4) as f64;
            println!("g={g:3} {name:12}: {:.2} Gelem·chunk/s, {:.1} GB/s pool  (sum {})", elems / dt / 1e9, bytes / dt / 1e9, out[5]);
        }
    }
}
