//! Lossless coding of image sets at the variational bound: bits-back ANS (Townsend et al. 2019)
//! over the diffusion chain with the Bit-Swap ordering (Kingma et al. 2019), every item on ONE
//! constriction `AnsCoder` (DESIGN.md §4, last paragraph; the container is format/SPEC.md,
//! "Archive format (.ddpa)").
//!
//! # The chain code of one tile
//!
//! Levels ℓ = 0..K: level 0 is x_0 (pixels), level ℓ ≥ 1 is x_{τ_ℓ} on the grid of
//! [`coder::LevelGrid`] (δ_ℓ = 2^e_ℓ, e_ℓ = round(log2 √β'_ℓ) − `latent_bits`, so every level has
//! 2^latent_bits bins per std of its forward transition). Chain step i (0-based, as in
//! [`crate::schedule`]) joins level i+1 and level i. Encoding a tile x_0 (Bit-Swap):
//!
//! 1. pop x_{τ_1} from q(x_{τ_1} | x_0) = N(√ᾱ_{τ_1} x_0, 1 − ᾱ_{τ_1});
//!    push x_0 with the discretised Gaussian p_θ(x_0 | x_{τ_1}) (mean x̂_0, std √σ²_0; the
//!    codec's final step, coded pixels only: one plane for grey, none of the padding);
//! 2. for i = 1..K−1: pop x_{τ_{i+1}} from q(x_{τ_{i+1}} | x_{τ_i}) = N(√α'_i x_{τ_i}, β'_i);
//!    push x_{τ_i} with p_θ(x_{τ_i} | x_{τ_{i+1}}) = N(μ_θ, σ²_i);
//! 3. push x_{τ_K} with N(0, I).
//!
//! Within a vector operation the dimensions go in order 0..D; the decoder runs the exact
//! inverse in reverse order (pop x_T; for i = K−1..1 pop x_{τ_i} with p_θ, push x_{τ_{i+1}} back
//! with q; pop x_0, rebuild the tile's padding, push x_{τ_1} back), dimensions D−1..0.
//!
//! # Items, groups and the initial bits
//!
//! The tiles of all items, in item order, are coded in *groups* (a group is coded as one
//! vector: one network call per step for all its tiles). The encoder codes groups 0..G−1, the
//! decoder pops them in reverse. Group sizes are a function of the number of tiles already
//! coded, `min(max_group_tiles, max(1, done / 8))`. A group digs into the stack before its
//! pushes return the bits: after step 1 it is about (latent_bits + 2 − L_0) bits per dimension
//! down, and each later step pops a whole level (latent_bits + 2 bits per dimension) before it
//! pushes the one below, so the dip peaks near 2·(latent_bits + 2) − L_0 bits per dimension
//! (measured 6.8 per dimension of a CIFAR-10 image at latent_bits 2). Once a few items are on
//! the stack their bits cover that, so later (larger) groups cost no initial bits. With
//! `max_group_tiles = 1` (the default) every tile is its own group: the fast network is as fast
//! per tile at batch 1 as at 64 (bench/infer.md), so batching across items buys no speed here.
//!
//! The q pops read a scrambled quantile ([`coder::Stack`]): without it the popped latents are
//! not exact samples of q ("dirty bits", +0.14 bits/dim measured).
//!
//! Diagnostics: `BB_TRACE=1` prints, per chain step of every group, the bits per dimension
//! popped and pushed and the entropy of the q model (the pops should average it).
//!
//! The stack starts as `from_binary` of `init_words` pseudo-random words (splitmix64 of the
//! seed, SPEC); pops of the first tiles draw on them. The bottom `init_untouched` words were
//! never popped: they are left out of the file (the decoder regenerates them), so the file pays
//! exactly for the initial words the encoder consumed. After the last pop the decoder checks
//! that the stack is exactly the initial one.

pub mod archive;
pub mod coder;

use serde::Serialize;

use crate::bitstream::header::{abbreviate, hex};
use crate::codec::{step_outputs_tiles, TILE};
use crate::data::to_model_range;
use crate::diffusion::{Denoiser, Diffusion};
use crate::error::{format_err, Error, Result};
use crate::image_io::RasterImage;
use crate::model::Model;
use crate::schedule::{Schedule, Variance};
use crate::tiling::TileGrid;

pub use archive::{read_archive, write_archive, Archive, ArchiveHeader, ArchiveLimits, ItemInfo};
use coder::{LatentGaussian, LevelGrid, Stack};

/// Default bins per std of each level's forward transition, as a power of two.
/// Measured on the first 100 CIFAR-10 test images (K = 50, large): net 4.825 (2), 4.832 (4),
/// bound 4.833 bits/dim; the first item's dip into the initial words grows by 2·3072 bits per
/// step of this (20754 initial bits at 2, 33164 at 4, 57712 at 8).
pub const DEFAULT_LATENT_BITS: u32 = 2;
/// Latents are coded over [−2^RANGE_LOG2, 2^RANGE_LOG2].
pub const DEFAULT_RANGE_LOG2: u32 = 3;
/// Half-width of the q windows in stds.
pub const DEFAULT_WINDOW_SIGMAS: u32 = 7;
/// Divisor of the group-size rule.
pub const GROUP_DIVISOR: usize = 8;
const D: usize = 3 * TILE * TILE;

/// One image to archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub name: String,
    pub image: RasterImage,
}

/// What fixes an archive besides the items and the model.
#[derive(Clone, Debug)]
pub struct PackParams {
    pub schedule: Schedule,
    pub variance: Variance,
    /// log2 of the bins per std of each level's forward transition.
    pub latent_bits: u32,
    pub range_log2: u32,
    pub window_sigmas: u32,
    /// Most tiles per group (see the module docs); 1 = tile by tile.
    pub max_group_tiles: usize,
    pub seed: u64,
}

impl PackParams {
    /// Defaults with K steps of `spacing` ("dense" or "even").
    pub fn new(steps: usize, spacing: &str, variance: Variance) -> Result<Self> {
        Ok(PackParams {
            schedule: crate::codec::make_schedule(1000, steps, spacing)?,
            variance,
            latent_bits: DEFAULT_LATENT_BITS,
            range_log2: DEFAULT_RANGE_LOG2,
            window_sigmas: DEFAULT_WINDOW_SIGMAS,
            max_group_tiles: 1,
            seed: 0,
        })
    }
}

/// Per item: where its bits went.
#[derive(Clone, Debug, Serialize)]
pub struct ItemReport {
    pub name: String,
    pub dims: u64,
    pub tiles: u64,
    /// Stack bits after the item minus before (the real coder's net cost of the item).
    pub net_bits: f64,
    /// `net_bits / dims`.
    pub net_bpd: f64,
}

/// The encoder's account of an archive.
#[derive(Clone, Debug, Serialize)]
pub struct PackReport {
    pub items: usize,
    pub tiles: u64,
    pub dims: u64,
    pub steps: usize,
    pub archive_bytes: usize,
    /// Magic, version, header (item table included) and header CRC.
    pub header_bytes: usize,
    pub body_bytes: usize,
    /// Σ net bits of the items.
    pub net_bits: f64,
    /// Body bits − Σ net bits: what the initial words cost (the first items' dip into them).
    pub initial_bits: f64,
    /// Words of the initial stack the encoder popped into (init_words − init_untouched).
    pub initial_words_consumed: u32,
    pub archive_bpd: f64,
    pub net_bpd: f64,
    pub initial_bpd: f64,
    pub header_bpd: f64,
    pub groups: usize,
    pub network_calls: usize,
    pub pack_seconds: f64,
    pub per_item: Vec<ItemReport>,
}

/// What the decoder did.
#[derive(Clone, Debug, Serialize)]
pub struct UnpackReport {
    pub items: usize,
    pub tiles: u64,
    pub network_calls: usize,
    pub unpack_seconds: f64,
}

/// The archive's variance code (SPEC § A2; its own u8 field, not the stream's 2-bit one):
/// 0 small, 1 large, 2 optimal, 3 analytic, 4 learned.
fn variance_code(v: Variance) -> Result<u8> {
    Ok(match v {
        Variance::Small => 0,
        Variance::Large => 1,
        Variance::Optimal => 2,
        Variance::Analytic => 3,
        Variance::Learned => 4,
    })
}

fn variance_of(c: u8) -> Result<Variance> {
    Ok(match c {
        0 => Variance::Small,
        1 => Variance::Large,
        2 => Variance::Optimal,
        3 => Variance::Analytic,
        4 => Variance::Learned,
        _ => return Err(format_err(format!("unknown variance code {c} (expected 0..=4)"))),
    })
}

/// The initial stack words: word j = splitmix64 of `seed + (j + 1)·0x9E3779B97F4A7C15`.
///
/// Hand-written (not `rand`) because the SPEC defines these words exactly.
pub fn init_word_stream(seed: u64, n: usize) -> Vec<u64> {
    (0..n as u64)
        .map(|j| {
            let mut z = seed.wrapping_add((j + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        })
        .collect()
}

/// e_ℓ for ℓ = 1..K: round(log2 √β'_{ℓ−1}) − latent_bits, with the rounding decided by exact
/// comparisons of β' with powers of two (√β' ≥ 2^(e + ½) ⇔ β' ≥ 2^(2e + 1)), so that no libm
/// rounding can change it.
pub fn grid_exponents(s: &Schedule, latent_bits: u32) -> Vec<i8> {
    (0..s.steps())
        .map(|i| {
            let b = s.beta(i);
            let mut e: i32 = -60;
            while e < 10 && b >= 2f64.powi(2 * e + 1) {
                e += 1;
            }
            (e - latent_bits as i32).clamp(-100, 100) as i8
        })
        .collect()
}

/// Group sizes (tiles) for `tiles` tiles.
pub fn group_sizes(tiles: usize, max_group: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut done = 0;
    while done < tiles {
        let g = (done / GROUP_DIVISOR).clamp(1, max_group.max(1)).min(tiles - done);
        out.push(g);
        done += g;
    }
    out
}

/// One tile of one item.
#[derive(Clone, Copy)]
struct TileRef {
    item: usize,
    tile: usize,
}

/// Chain state shared by pack and unpack.
struct Chain<'a> {
    model: &'a dyn Denoiser,
    diff: Diffusion,
    grids: Vec<LevelGrid>,
    calls: usize,
}

impl Chain<'_> {
    fn k(&self) -> usize {
        self.diff.steps()
    }
    /// Level-ℓ values of bins.
    fn values(&self, level: usize, bins: &[i32]) -> Vec<f32> {
        let g = self.grids[level - 1];
        bins.iter().map(|&n| g.value(n)).collect()
    }
    /// ε at chain step i for n tiles, and p_θ's std per dimension for a learned variance.
    fn eps(&mut self, x: &[f32], n: usize, i: usize) -> Result<(Vec<f32>, Option<Vec<f32>>)> {
        self.calls += 1;
        step_outputs_tiles(self.model, &self.diff, x, n, n.max(1), i)
    }
    /// p_θ's std of dimension d at chain step i.
    fn std_at(&self, i: usize, sd: &Option<Vec<f32>>, d: usize) -> f64 {
        sd.as_ref().map_or_else(|| self.diff.sigma2(i).sqrt(), |s| s[d] as f64)
    }
    /// q(level i+1 | level i) of dimension d, given level i's values.
    fn q_model(&self, i: usize, prev: f32) -> LatentGaussian {
        let s = &self.diff.schedule;
        LatentGaussian::new(self.grids[i], s.alpha(i).sqrt() * prev as f64, s.beta(i).sqrt())
    }
}

/// Coded tile-local positions (one plane for grey, inside the image only), in coding order.
fn coded_positions(grid: &TileGrid, tile: usize, grey: bool) -> Vec<usize> {
    let t = TILE;
    let mut v = Vec::new();
    for c in 0..if grey { 1 } else { 3 } {
        for y in 0..t {
            for x in 0..t {
                if grid.inside(tile, y, x) {
                    v.push(c * t * t + y * t + x);
                }
            }
        }
    }
    v
}

/// Fills a tile's padding (edge replication, as [`TileGrid::to_tiles`]) and, for grey, planes
/// 1 and 2 from plane 0, given the coded positions.
fn fill_tile(grid: &TileGrid, tile: usize, grey: bool, buf: &mut [u8]) {
    let t = TILE;
    let (ty, tx) = (tile / grid.cols, tile % grid.cols);
    let hy = grid.height - ty * t; // rows inside this tile (≥ 1)
    let wx = grid.width - tx * t;
    for c in 0..if grey { 1 } else { 3 } {
        for y in 0..t {
            for x in 0..t {
                let (sy, sx) = (y.min(hy - 1), x.min(wx - 1));
                buf[c * t * t + y * t + x] = buf[c * t * t + sy * t + sx];
            }
        }
    }
    if grey {
        let (p0, rest) = buf.split_at_mut(t * t);
        rest[..t * t].copy_from_slice(p0);
        rest[t * t..].copy_from_slice(p0);
    }
}

struct Geometry {
    grids: Vec<TileGrid>,
    grey: Vec<bool>,
    tiles: Vec<TileRef>,
}

fn geometry(items: &[(u32, u32, u8)]) -> Geometry {
    let mut g = Geometry { grids: Vec::new(), grey: Vec::new(), tiles: Vec::new() };
    for (k, &(w, h, c)) in items.iter().enumerate() {
        let grid = TileGrid::new(w as usize, h as usize, TILE);
        for j in 0..grid.num_tiles() {
            g.tiles.push(TileRef { item: k, tile: j });
        }
        g.grids.push(grid);
        g.grey.push(c == 1);
    }
    g
}

fn make_chain<'a>(model: &'a Model, schedule: Schedule, variance: Variance, grid_exp: &[i8], range_log2: u32) -> Result<Chain<'a>> {
    variance_code(variance)?;
    crate::codec::check_learned(variance, model, Error::Parameter)?;
    let diff = Diffusion::with_tables(schedule, variance, model.variance_tables())?;
    let grids = grid_exp.iter().map(|&e| LevelGrid::new(e as i32, range_log2)).collect::<Result<Vec<_>>>()?;
    Ok(Chain { model, diff, grids, calls: 0 })
}

/// Encodes one group (tiles `x0_u8`, coded positions per tile) onto the stack.
fn encode_group(ch: &mut Chain, st: &mut Stack, x0_u8: &[u8], coded: &[Vec<usize>]) -> Result<()> {
    let n = coded.len();
    let k = ch.k();
    let x0: Vec<f32> = x0_u8.iter().map(|&v| to_model_range(v)).collect();
    // level 1 from q(x_{τ_1} | x_0)
    let mut prev_bins: Vec<i32> = x0.iter().map(|&v| st.pop_q(ch.grids[0], ch.q_model(0, v))).collect();
    let mut prev_x = ch.values(1, &prev_bins);
    let (eps, sd) = ch.eps(&prev_x, n, 0)?;
    let means = ch.diff.predict_x0(&prev_x, &eps, 0);
    for (t, pos) in coded.iter().enumerate() {
        for &j in pos {
            let d = t * D + j;
            st.push_pixel(x0_u8[d], means[d], ch.std_at(0, &sd, d) as f32)?;
        }
    }
    let trace = std::env::var_os("BB_TRACE").is_some();
    for i in 1..k {
        let b0 = st.bits();
        let next_bins: Vec<i32> = prev_x.iter().map(|&v| st.pop_q(ch.grids[i], ch.q_model(i, v))).collect();
        let b1 = st.bits();
        let next_x = ch.values(i + 1, &next_bins);
        let (eps, sd) = ch.eps(&next_x, n, i)?;
        let mu = ch.diff.p_mean(&next_x, &eps, i);
        let g = ch.grids[i - 1];
        for (d, (&b, &m)) in prev_bins.iter().zip(&mu).enumerate() {
            st.push_p(g, LatentGaussian::new(g, m as f64, ch.std_at(i, &sd, d)), b)?;
        }
        if trace {
            let nd = prev_bins.len() as f64;
            let h = (ch.diff.schedule.beta(i).sqrt() / ch.grids[i].delta()).log2() + 0.5 * (2.0 * std::f64::consts::PI * std::f64::consts::E).log2();
            eprintln!("step {i}: pop {:.4} push {:.4} net {:.4} bpd; H(q) {:.4}", (b0 - b1) / nd, (st.bits() - b1) / nd, (st.bits() - b0) / nd, h);
        }
        prev_bins = next_bins;
        prev_x = next_x;
    }
    let g = ch.grids[k - 1];
    let prior = LatentGaussian::new(g, 0.0, 1.0);
    for &b in &prev_bins {
        st.push_p(g, prior, b)?;
    }
    Ok(())
}

/// Decodes one group (the inverse of [`encode_group`]); returns the tiles' samples (padding and
/// grey planes filled).
fn decode_group(ch: &mut Chain, st: &mut Stack, geo: &Geometry, refs: &[TileRef]) -> Result<Vec<u8>> {
    let n = refs.len();
    let k = ch.k();
    let g = ch.grids[k - 1];
    let prior = LatentGaussian::new(g, 0.0, 1.0);
    let mut next_bins = vec![0i32; n * D];
    for b in next_bins.iter_mut().rev() {
        *b = st.pop_p(g, prior);
    }
    for i in (1..k).rev() {
        let next_x = ch.values(i + 1, &next_bins);
        let (eps, sd) = ch.eps(&next_x, n, i)?;
        let mu = ch.diff.p_mean(&next_x, &eps, i);
        let gp = ch.grids[i - 1];
        let mut prev_bins = vec![0i32; n * D];
        for (d, (b, &m)) in prev_bins.iter_mut().zip(&mu).enumerate().rev() {
            *b = st.pop_p(gp, LatentGaussian::new(gp, m as f64, ch.std_at(i, &sd, d)));
        }
        let prev_x = ch.values(i, &prev_bins);
        for (&b, &v) in next_bins.iter().zip(&prev_x).rev() {
            st.push_q(ch.grids[i], ch.q_model(i, v), b)?;
        }
        next_bins = prev_bins;
    }
    let x1 = ch.values(1, &next_bins);
    let (eps, sd) = ch.eps(&x1, n, 0)?;
    let means = ch.diff.predict_x0(&x1, &eps, 0);
    let mut out = vec![0u8; n * D];
    for (t, r) in refs.iter().enumerate().rev() {
        let grid = &geo.grids[r.item];
        let grey = geo.grey[r.item];
        let pos = coded_positions(grid, r.tile, grey);
        for &j in pos.iter().rev() {
            let d = t * D + j;
            out[d] = st.pop_pixel(means[d], ch.std_at(0, &sd, d) as f32);
        }
        fill_tile(grid, r.tile, grey, &mut out[t * D..(t + 1) * D]);
    }
    for (&b, &v) in next_bins.iter().zip(&out).rev() {
        st.push_q(ch.grids[0], ch.q_model(0, to_model_range(v)), b)?;
    }
    Ok(out)
}

/// Number of initial words the writer starts from: comfortably more than the first group can
/// pop (the untouched part costs nothing).
fn init_words_for(latent_bits: u32) -> u32 {
    (2048 + D * (latent_bits as usize + 24) / 64) as u32
}

/// Packs `items` into one archive. `progress(done, total)` counts network calls.
pub fn pack(model: &Model, items: &[Item], p: &PackParams, progress: &mut dyn FnMut(usize, usize)) -> Result<(Vec<u8>, PackReport)> {
    let start = std::time::Instant::now();
    if items.is_empty() {
        return Err(Error::Parameter("nothing to pack".into()));
    }
    if model.config().resolution != TILE || model.config().in_channels != 3 {
        return Err(Error::Parameter("bits-back archives need a 32×32 RGB model".into()));
    }
    if !(1..=16).contains(&p.window_sigmas) || p.range_log2 > 6 || !(1..=4096).contains(&p.max_group_tiles) {
        return Err(Error::Parameter("window_sigmas 1..=16, range_log2 ≤ 6, max_group_tiles 1..=4096".into()));
    }
    let grid_exp = grid_exponents(&p.schedule, p.latent_bits);
    let mut ch = make_chain(model, p.schedule.clone(), p.variance, &grid_exp, p.range_log2)?;
    let k = ch.k();
    // names: sanitized and unique
    let mut seen = std::collections::HashSet::new();
    let mut infos = Vec::with_capacity(items.len());
    for it in items {
        let base = archive::sanitize_name(&it.name);
        let mut name = base.clone();
        let mut j = 1;
        while !seen.insert(name.clone()) {
            name = format!("{base}~{j}");
            j += 1;
        }
        infos.push(ItemInfo {
            name,
            width: it.image.width,
            height: it.image.height,
            channels: it.image.channels,
        });
    }
    let geo = geometry(&infos.iter().map(|i| (i.width, i.height, i.channels)).collect::<Vec<_>>());
    let tiles_u8: Vec<Vec<u8>> = items.iter().zip(&geo.grids).map(|(it, g)| g.to_tiles(&it.image.to_rgb())).collect();
    let sizes = group_sizes(geo.tiles.len(), p.max_group_tiles);
    let total_calls = sizes.len() * k;
    let init_words = init_words_for(p.latent_bits);
    let init = init_word_stream(p.seed, init_words as usize);
    let mut st = Stack::from_binary(init, p.window_sigmas as f64);
    let mut item_bits = vec![0.0f64; items.len()];
    let mut at = 0;
    for (gi, &gs) in sizes.iter().enumerate() {
        let refs = &geo.tiles[at..at + gs];
        let mut x0 = Vec::with_capacity(gs * D);
        let mut coded = Vec::with_capacity(gs);
        for r in refs {
            x0.extend_from_slice(&tiles_u8[r.item][r.tile * D..(r.tile + 1) * D]);
            coded.push(coded_positions(&geo.grids[r.item], r.tile, geo.grey[r.item]));
        }
        let before = st.bits();
        encode_group(&mut ch, &mut st, &x0, &coded)?;
        let net = st.bits() - before;
        // a group's bits are shared by its items in proportion to their tiles
        for r in refs {
            item_bits[r.item] += net / gs as f64;
        }
        at += gs;
        progress((gi + 1) * k, total_calls);
    }
    let untouched = st.min_bulk().min(init_words as usize - 1);
    let net_bits: f64 = item_bits.iter().sum();
    let words = st.into_compressed();
    let body = words[untouched..].to_vec();
    let header = ArchiveHeader {
        model_sha256: model.sha256(),
        t_max: p.schedule.t_max() as u16,
        taus: p.schedule.taus().iter().map(|&t| t as u16).collect(),
        variance: variance_code(p.variance)?,
        grid_exp,
        range_log2: p.range_log2 as u8,
        window_sigmas: p.window_sigmas as u8,
        max_group_tiles: p.max_group_tiles as u16,
        seed: p.seed,
        init_words,
        init_untouched: untouched as u32,
        body_words: body.len() as u32,
        body_crc32: crc32fast::hash(&body.iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<u8>>()),
        pixels_crc32: {
            let mut crc = crc32fast::Hasher::new();
            items.iter().for_each(|it| crc.update(it.image.samples()));
            crc.finalize()
        },
        items: infos,
    };
    let bytes = write_archive(&Archive { header, body })?;
    let dims: u64 = items.iter().map(|it| it.image.width as u64 * it.image.height as u64 * if it.image.channels == 1 { 1 } else { 3 }).sum();
    let body_bytes = 8 * (words.len() - untouched);
    let header_bytes = bytes.len() - body_bytes;
    let per_item = items
        .iter()
        .zip(&item_bits)
        .zip(&geo.grids)
        .map(|((it, &b), g)| {
            let d = it.image.width as u64 * it.image.height as u64 * if it.image.channels == 1 { 1 } else { 3 };
            ItemReport { name: it.name.clone(), dims: d, tiles: g.num_tiles() as u64, net_bits: b, net_bpd: b / d as f64 }
        })
        .collect();
    let initial_bits = body_bytes as f64 * 8.0 - net_bits;
    let rep = PackReport {
        items: items.len(),
        tiles: geo.tiles.len() as u64,
        dims,
        steps: k,
        archive_bytes: bytes.len(),
        header_bytes,
        body_bytes,
        net_bits,
        initial_bits,
        initial_words_consumed: init_words - untouched as u32,
        archive_bpd: bytes.len() as f64 * 8.0 / dims as f64,
        net_bpd: net_bits / dims as f64,
        initial_bpd: initial_bits / dims as f64,
        header_bpd: header_bytes as f64 * 8.0 / dims as f64,
        groups: sizes.len(),
        network_calls: ch.calls,
        pack_seconds: start.elapsed().as_secs_f64(),
        per_item,
    };
    Ok((bytes, rep))
}

/// Reads an archive's header and checks it against the model and limits (no network work).
pub fn parse(bytes: &[u8], model: &Model, lim: &ArchiveLimits) -> Result<Archive> {
    let a = read_archive(bytes, lim)?;
    if a.header.model_sha256 != model.sha256() {
        return Err(Error::ModelMismatch(format!(
            "archive was made with model {}, loaded model is {}",
            hex(&a.header.model_sha256),
            model.sha256_hex()
        )));
    }
    Ok(a)
}

/// A human-readable summary of an archive (`ddpm-codec info set.ddpa`): its header fields, the
/// sizes of its parts and its items; parses (and checks) the whole file, decodes nothing.
pub fn info(bytes: &[u8], lim: &ArchiveLimits) -> Result<String> {
    use std::fmt::Write;
    let a = read_archive(bytes, lim)?;
    let h = &a.header;
    let dims: u64 = h.items.iter().map(|it| it.dims()).sum();
    let tiles: u64 = h.items.iter().map(|it| it.tiles()).sum();
    let header_bytes = bytes.len() - 8 * a.body.len();
    let mut s = String::new();
    let _ = writeln!(s, "ddpm-codec bits-back archive (.ddpa), version {}", archive::VERSION);
    let _ = writeln!(s, "  model sha256   : {}", hex(&h.model_sha256));
    let _ = writeln!(s, "  chain          : K = {} of T = {}, τ = {}", h.taus.len(), h.t_max, abbreviate(&h.taus));
    let v = variance_of(h.variance).map(|v| format!("{v:?}").to_lowercase()).unwrap_or_else(|_| "?".into());
    let _ = writeln!(s, "  variance       : {v} (code {})", h.variance);
    let _ = writeln!(s, "  latents        : range ±2^{}, window {} σ, groups of up to {} tiles, seed {}", h.range_log2, h.window_sigmas, h.max_group_tiles, h.seed);
    let _ = writeln!(s, "  items          : {} ({} tiles, {} dimensions), pixel CRC {:08x}", h.items.len(), tiles, dims, h.pixels_crc32);
    for it in h.items.iter().take(5) {
        let _ = writeln!(s, "    {} {}x{}x{}", it.name, it.width, it.height, it.channels);
    }
    if h.items.len() > 5 {
        let _ = writeln!(s, "    … {} more", h.items.len() - 5);
    }
    let _ = writeln!(
        s,
        "file: {} bytes ({} header, {} body words; {} initial words, {} regenerated): {:.4} bits/dim",
        bytes.len(),
        header_bytes,
        a.body.len(),
        h.init_words,
        h.init_untouched,
        bytes.len() as f64 * 8.0 / dims.max(1) as f64
    );
    Ok(s)
}

/// Unpacks every item (bit-exact, checked by the per-item CRCs and the restored initial stack).
pub fn unpack(model: &Model, bytes: &[u8], lim: &ArchiveLimits, progress: &mut dyn FnMut(usize, usize)) -> Result<(Vec<Item>, UnpackReport)> {
    let start = std::time::Instant::now();
    let a = parse(bytes, model, lim)?;
    let h = &a.header;
    if model.config().resolution != TILE || model.config().in_channels != 3 {
        return Err(Error::Parameter("bits-back archives need a 32×32 RGB model".into()));
    }
    let schedule = Schedule::respaced(h.t_max as usize, h.taus.iter().map(|&t| t as usize).collect())?;
    let mut ch = make_chain(model, schedule, variance_of(h.variance)?, &h.grid_exp, h.range_log2 as u32)?;
    let k = ch.k();
    let geo = geometry(&h.items.iter().map(|i| (i.width, i.height, i.channels)).collect::<Vec<_>>());
    let sizes = group_sizes(geo.tiles.len(), h.max_group_tiles as usize);
    let total_calls = sizes.len() * k;
    let untouched = h.init_untouched as usize;
    let init = init_word_stream(h.seed, h.init_words as usize);
    let mut words = Vec::with_capacity(untouched + a.body.len());
    words.extend_from_slice(&init[..untouched]);
    words.extend_from_slice(&a.body);
    let mut st = Stack::from_compressed(words, h.window_sigmas as f64)?;
    let mut tiles_u8: Vec<Vec<u8>> = geo.grids.iter().map(|g| vec![0u8; g.num_tiles() * D]).collect();
    let mut end = geo.tiles.len();
    for (done, &gs) in sizes.iter().rev().enumerate() {
        let refs = &geo.tiles[end - gs..end];
        let out = decode_group(&mut ch, &mut st, &geo, refs)?;
        for (t, r) in refs.iter().enumerate() {
            tiles_u8[r.item][r.tile * D..(r.tile + 1) * D].copy_from_slice(&out[t * D..(t + 1) * D]);
        }
        end -= gs;
        progress((done + 1) * k, total_calls);
    }
    if st.into_raw_parts() != Stack::from_binary(init, h.window_sigmas as f64).into_raw_parts() {
        return Err(Error::Checksum("the stack did not return to its initial words (corrupt archive or model/platform mismatch)".into()));
    }
    let mut items = Vec::with_capacity(h.items.len());
    let mut crc = crc32fast::Hasher::new();
    for ((info, grid), t) in h.items.iter().zip(&geo.grids).zip(&tiles_u8) {
        let img = RasterImage::from_rgb(info.width, info.height, info.channels, &grid.from_tiles(t))?;
        crc.update(img.samples());
        items.push(Item { name: info.name.clone(), image: img });
    }
    if crc.finalize() != h.pixels_crc32 {
        return Err(Error::Checksum("the decoded pixels do not match the archive's pixel CRC (corrupt archive or model/platform mismatch)".into()));
    }
    let rep = UnpackReport { items: items.len(), tiles: geo.tiles.len() as u64, network_calls: ch.calls, unpack_seconds: start.elapsed().as_secs_f64() };
    Ok((items, rep))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_variance_codes_round_trip() {
        for (v, c) in [
            (Variance::Small, 0),
            (Variance::Large, 1),
            (Variance::Optimal, 2),
            (Variance::Analytic, 3),
            (Variance::Learned, 4),
        ] {
            assert_eq!(variance_code(v).unwrap(), c);
            assert_eq!(variance_of(c).unwrap(), v);
        }
        assert!(matches!(variance_of(5), Err(Error::Format(_))));
    }
}
