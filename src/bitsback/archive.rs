//! The `.ddpa` archive container: exactly format/SPEC.md, "Archive format (.ddpa)".
//!
//! [`read_archive`] takes hostile bytes: every length is checked against the input and the
//! [`ArchiveLimits`] before anything sized by it is allocated, the header CRC is checked before
//! any field is interpreted, and no input panics.

use crate::error::{format_err, Error, Result};

/// File magic.
pub const MAGIC: &[u8; 4] = b"DDPA";
/// Format version.
pub const VERSION: u8 = 3;
/// Longest item name (bytes).
pub const MAX_NAME_BYTES: usize = 255;
/// Tile edge of the archive (the model's input).
pub const TILE: u32 = 32;

/// Reader limits (defaults: the SPEC's table). A writer must not exceed the defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveLimits {
    pub max_header_bytes: usize,
    pub max_items: usize,
    pub max_item_pixels: u64,
    pub max_total_tiles: u64,
    pub max_steps: usize,
    pub max_body_words: usize,
    pub max_init_words: usize,
}

impl Default for ArchiveLimits {
    fn default() -> Self {
        ArchiveLimits {
            max_header_bytes: 64 << 20,
            max_items: 1 << 20,
            max_item_pixels: 1 << 26,
            max_total_tiles: 1 << 22,
            max_steps: 10_000,
            max_body_words: 1 << 27,
            max_init_words: 1 << 20,
        }
    }
}

/// Geometry of one item (an image).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemInfo {
    /// Output name (no path separators); `unpack` writes `<name>.png`.
    pub name: String,
    pub width: u32,
    pub height: u32,
    /// 1 grey, 3 RGB, 4 RGBA (alpha opaque, not coded).
    pub channels: u8,
}

impl ItemInfo {
    /// Number of 32×32 tiles.
    pub fn tiles(&self) -> u64 {
        (self.width as u64).div_ceil(TILE as u64) * (self.height as u64).div_ceil(TILE as u64)
    }
    /// Coded dimensions: pixels × (1 for grey, else 3).
    pub fn dims(&self) -> u64 {
        self.width as u64 * self.height as u64 * if self.channels == 1 { 1 } else { 3 }
    }
}

/// Everything in the header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveHeader {
    pub model_sha256: [u8; 32],
    pub t_max: u16,
    /// τ_1..τ_K.
    pub taus: Vec<u16>,
    /// 0 small, 1 large, 2 optimal, 3 analytic, 4 learned.
    pub variance: u8,
    /// e_ℓ for levels ℓ = 1..K: δ_ℓ = 2^e_ℓ.
    pub grid_exp: Vec<i8>,
    pub range_log2: u8,
    pub window_sigmas: u8,
    /// Largest group of tiles coded as one vector (1..=4096).
    pub max_group_tiles: u16,
    pub seed: u64,
    pub init_words: u32,
    pub init_untouched: u32,
    pub body_words: u32,
    pub body_crc32: u32,
    /// CRC-32 of every item's decoded interleaved samples, concatenated in item order.
    pub pixels_crc32: u32,
    pub items: Vec<ItemInfo>,
}

/// A parsed archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Archive {
    pub header: ArchiveHeader,
    /// The stored stack words (64-bit, bottom first), `body_words` of them.
    pub body: Vec<u64>,
}

/// Whether a name is acceptable (SPEC: 1..=255 bytes of UTF-8, no control characters, no `/`,
/// `\`, `:`, not starting with `.`).
pub fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= MAX_NAME_BYTES
        && !n.starts_with('.')
        && !n.chars().any(|c| c.is_control() || matches!(c, '/' | '\\' | ':'))
}

/// Makes a valid name from anything (writer side): disallowed characters become `_`, a leading
/// `.` becomes `_`, long names are cut at a character boundary, an empty name becomes `item`.
pub fn sanitize_name(n: &str) -> String {
    let mut s: String = n.chars().map(|c| if c.is_control() || matches!(c, '/' | '\\' | ':') { '_' } else { c }).collect();
    if s.starts_with('.') {
        s.replace_range(0..1, "_");
    }
    while s.len() > MAX_NAME_BYTES - 8 {
        s.pop();
    }
    if s.is_empty() {
        s.push_str("item");
    }
    s
}

fn put_u16(b: &mut Vec<u8>, v: u16) {
    b.extend_from_slice(&v.to_le_bytes());
}
fn put_u32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_le_bytes());
}

/// Serialises an archive (validating it against the default limits and the SPEC's rules).
pub fn write_archive(a: &Archive) -> Result<Vec<u8>> {
    let h = &a.header;
    let mut f = Vec::new();
    f.extend_from_slice(&h.model_sha256);
    put_u16(&mut f, h.t_max);
    put_u16(&mut f, h.taus.len() as u16);
    if h.taus.len() > u16::MAX as usize || h.grid_exp.len() != h.taus.len() || h.items.len() > u32::MAX as usize {
        return Err(Error::Parameter("archive header: inconsistent lengths".into()));
    }
    for &t in &h.taus {
        put_u16(&mut f, t);
    }
    f.push(h.variance);
    f.extend(h.grid_exp.iter().map(|&e| e as u8));
    f.push(h.range_log2);
    f.push(h.window_sigmas);
    put_u16(&mut f, h.max_group_tiles);
    f.extend_from_slice(&h.seed.to_le_bytes());
    put_u32(&mut f, h.init_words);
    put_u32(&mut f, h.init_untouched);
    put_u32(&mut f, h.body_words);
    put_u32(&mut f, h.body_crc32);
    put_u32(&mut f, h.pixels_crc32);
    put_u32(&mut f, h.items.len() as u32);
    // geometry as runs of equal (width, height, channels)
    let mut runs: Vec<(u32, &ItemInfo)> = Vec::new();
    for it in &h.items {
        match runs.last_mut() {
            Some((c, r)) if (r.width, r.height, r.channels) == (it.width, it.height, it.channels) => *c += 1,
            _ => runs.push((1, it)),
        }
    }
    put_u32(&mut f, runs.len() as u32);
    for (c, r) in &runs {
        put_u32(&mut f, *c);
        put_u32(&mut f, r.width);
        put_u32(&mut f, r.height);
        f.push(r.channels);
    }
    match numbered(&h.items) {
        Some((prefix, start, digits)) => {
            f.push(1);
            f.push(prefix.len() as u8);
            f.extend_from_slice(prefix.as_bytes());
            put_u32(&mut f, start);
            f.push(digits);
        }
        None => {
            // names, front-coded against the previous name
            f.push(0);
            let mut prev: &str = "";
            for it in &h.items {
                let shared = common_prefix(prev, &it.name);
                let suffix = &it.name.as_bytes()[shared..];
                if suffix.len() > 255 {
                    return Err(Error::Parameter("item name too long".into()));
                }
                f.push(shared as u8);
                f.push(suffix.len() as u8);
                f.extend_from_slice(suffix);
                prev = &it.name;
            }
        }
    }
    let mut out = Vec::with_capacity(13 + f.len() + 8 * a.body.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    put_u32(&mut out, f.len() as u32);
    out.extend_from_slice(&f);
    let crc = crc32fast::hash(&out);
    put_u32(&mut out, crc);
    for &w in &a.body {
        out.extend_from_slice(&w.to_le_bytes());
    }
    // the writer's output must be what the reader accepts
    let back = read_archive(&out, &ArchiveLimits::default())?;
    if back != *a {
        return Err(format_err("internal: archive does not read back identically"));
    }
    Ok(out)
}

/// The numbered name scheme (prefix, start, digits) if every name i is
/// `prefix + decimal(start + i)` zero-padded to `digits` (1..=10) digits.
fn numbered(items: &[ItemInfo]) -> Option<(String, u32, u8)> {
    let first = &items.first()?.name;
    let digits = first.bytes().rev().take_while(|b| b.is_ascii_digit()).count().min(10);
    if digits == 0 {
        return None;
    }
    let prefix = &first[..first.len() - digits];
    if prefix.len() > 255 {
        return None;
    }
    let start: u64 = first[first.len() - digits..].parse().ok()?;
    if start + items.len() as u64 - 1 > u32::MAX as u64 {
        return None;
    }
    let ok = items.iter().enumerate().all(|(i, it)| it.name == numbered_name(prefix, start as u32 + i as u32, digits as u8));
    ok.then(|| (prefix.to_string(), start as u32, digits as u8))
}

/// `prefix` followed by `v` in decimal, zero-padded to `digits` digits.
pub fn numbered_name(prefix: &str, v: u32, digits: u8) -> String {
    format!("{prefix}{v:0width$}", width = digits as usize)
}

/// Length in bytes of the common prefix of two names, at a character boundary, at most 255.
fn common_prefix(a: &str, b: &str) -> usize {
    let mut n = 0;
    for ((i, ca), cb) in a.char_indices().zip(b.chars()) {
        if ca != cb || i + ca.len_utf8() > 255 {
            break;
        }
        n = i + ca.len_utf8();
    }
    n
}

/// A bounds-checked cursor over the header fields.
struct Cur<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len()).ok_or_else(|| format_err("header fields run past header_len"))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self) -> Result<u64> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }
}

fn limit(what: &str, got: u64, max: u64) -> Result<()> {
    if got > max {
        return Err(Error::LimitsExceeded(format!("{what} {got} exceeds the reader's limit {max}")));
    }
    Ok(())
}

/// Parses and validates an archive (SPEC "Reading order"). Never panics.
pub fn read_archive(bytes: &[u8], lim: &ArchiveLimits) -> Result<Archive> {
    if bytes.len() < 4 {
        if MAGIC.starts_with(bytes) {
            return Err(format_err("truncated header"));
        }
        return Err(format_err("bad magic (not a .ddpa archive)"));
    }
    if &bytes[..4] != MAGIC {
        return Err(format_err("bad magic (not a .ddpa archive)"));
    }
    if bytes.len() < 9 {
        return Err(format_err("truncated header"));
    }
    if bytes[4] != VERSION {
        return Err(format_err(format!("archive version {} is not supported (this reader reads version {VERSION})", bytes[4])));
    }
    let hlen = u32::from_le_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) as usize;
    if hlen < 80 {
        return Err(format_err(format!("header_len {hlen} below the minimum 80")));
    }
    limit("header_len", hlen as u64, lim.max_header_bytes as u64)?;
    let hend = 9 + hlen;
    if bytes.len() < hend + 4 {
        return Err(format_err("truncated header"));
    }
    let crc = u32::from_le_bytes([bytes[hend], bytes[hend + 1], bytes[hend + 2], bytes[hend + 3]]);
    if crc32fast::hash(&bytes[..hend]) != crc {
        return Err(Error::Checksum("archive header CRC mismatch".into()));
    }
    let mut c = Cur { b: &bytes[9..hend], at: 0 };
    let mut model_sha256 = [0u8; 32];
    model_sha256.copy_from_slice(c.take(32)?);
    let t_max = c.u16()?;
    let k = c.u16()? as usize;
    if t_max == 0 || k == 0 || k > t_max as usize {
        return Err(format_err(format!("chain of {k} steps over t_max {t_max}: need 1 ≤ K ≤ t_max")));
    }
    limit("num_steps", k as u64, lim.max_steps as u64)?;
    let tb = c.take(2 * k)?;
    let taus: Vec<u16> = tb.chunks_exact(2).map(|p| u16::from_le_bytes([p[0], p[1]])).collect();
    if taus[0] < 1 || taus.windows(2).any(|w| w[0] >= w[1]) || taus[k - 1] != t_max {
        return Err(format_err("taus must be strictly increasing from ≥ 1 to t_max"));
    }
    let variance = c.u8()?;
    if variance > 4 {
        return Err(format_err(format!("variance code {variance}")));
    }
    let grid_exp: Vec<i8> = c.take(k)?.iter().map(|&b| b as i8).collect();
    let range_log2 = c.u8()?;
    if range_log2 > 6 {
        return Err(format_err(format!("range_log2 {range_log2} > 6")));
    }
    for &e in &grid_exp {
        let shift = range_log2 as i32 - e as i32;
        if !(1..=24).contains(&shift) {
            return Err(format_err(format!("grid exponent {e} with range_log2 {range_log2}: 2^{shift} bins per side, need 1..=24")));
        }
    }
    let window_sigmas = c.u8()?;
    if !(1..=16).contains(&window_sigmas) {
        return Err(format_err(format!("window_sigmas {window_sigmas} outside 1..=16")));
    }
    let max_group_tiles = c.u16()?;
    if !(1..=4096).contains(&max_group_tiles) {
        return Err(format_err(format!("max_group_tiles {max_group_tiles} outside 1..=4096")));
    }
    let seed = c.u64()?;
    let init_words = c.u32()?;
    let init_untouched = c.u32()?;
    let body_words = c.u32()?;
    let body_crc32 = c.u32()?;
    let pixels_crc32 = c.u32()?;
    if init_words == 0 || init_untouched >= init_words {
        return Err(format_err("need 0 ≤ init_untouched < init_words"));
    }
    limit("init_words", init_words as u64, lim.max_init_words as u64)?;
    limit("body_words", body_words as u64, lim.max_body_words as u64)?;
    let n = c.u32()? as usize;
    if n == 0 {
        return Err(format_err("archive with no items"));
    }
    limit("item_count", n as u64, lim.max_items as u64)?;
    // geometry first: the tile limit bounds the item table before any name is built
    let runs = c.u32()? as usize;
    if runs == 0 || runs > n {
        return Err(format_err(format!("{runs} geometry runs for {n} items")));
    }
    let mut geoms = Vec::with_capacity(n);
    let mut total_tiles = 0u64;
    for _ in 0..runs {
        let count = c.u32()? as usize;
        let (w, hh, ch) = (c.u32()?, c.u32()?, c.u8()?);
        if count == 0 || geoms.len() + count > n {
            return Err(format_err("geometry run counts do not add up to item_count"));
        }
        if w == 0 || hh == 0 || !matches!(ch, 1 | 3 | 4) {
            return Err(format_err(format!("item geometry {w}x{hh}x{ch}")));
        }
        if let Some(&(pw, ph, pc)) = geoms.last() {
            if (pw, ph, pc) == (w, hh, ch) {
                return Err(format_err("consecutive geometry runs must differ"));
            }
        }
        limit("item pixels", w as u64 * hh as u64, lim.max_item_pixels)?;
        let t = (w as u64).div_ceil(TILE as u64) * (hh as u64).div_ceil(TILE as u64);
        total_tiles = total_tiles.saturating_add(t.saturating_mul(count as u64));
        limit("total tiles", total_tiles, lim.max_total_tiles)?;
        geoms.extend(std::iter::repeat_n((w, hh, ch), count));
    }
    if geoms.len() != n {
        return Err(format_err("geometry run counts do not add up to item_count"));
    }
    let mut names: Vec<String> = Vec::with_capacity(n);
    let mut seen = std::collections::HashSet::with_capacity(n);
    match c.u8()? {
        0 => {
            for _ in 0..n {
                let shared = c.u8()? as usize;
                let sl = c.u8()? as usize;
                let suffix = c.take(sl)?;
                let prev = names.last().map(|s| s.as_bytes()).unwrap_or(b"");
                if shared > prev.len() {
                    return Err(format_err("name shares more bytes than the previous name has"));
                }
                let mut nb = Vec::with_capacity(shared + sl);
                nb.extend_from_slice(&prev[..shared]);
                nb.extend_from_slice(suffix);
                let name = String::from_utf8(nb).map_err(|_| format_err("item name is not UTF-8"))?;
                if !valid_name(&name) {
                    return Err(format_err(format!("invalid item name {name:?}")));
                }
                if !seen.insert(name.clone()) {
                    return Err(format_err(format!("duplicate item name {name:?}")));
                }
                names.push(name);
            }
        }
        1 => {
            let pl = c.u8()? as usize;
            let prefix = std::str::from_utf8(c.take(pl)?).map_err(|_| format_err("name prefix is not UTF-8"))?;
            let start = c.u32()?;
            let digits = c.u8()?;
            if !(1..=10).contains(&digits) || start as u64 + n as u64 - 1 > u32::MAX as u64 {
                return Err(format_err("numbered names: digits 1..=10 and start + item_count − 1 ≤ 2^32 − 1"));
            }
            for i in 0..n {
                let name = numbered_name(prefix, start + i as u32, digits);
                if !valid_name(&name) {
                    return Err(format_err(format!("invalid item name {name:?}")));
                }
                names.push(name);
            }
            // zero-padded decimals of distinct numbers are distinct: no duplicates
        }
        k => return Err(format_err(format!("names_kind {k}"))),
    }
    let mut items = Vec::with_capacity(n);
    for (name, (w, hh, ch)) in names.into_iter().zip(geoms) {
        items.push(ItemInfo { name, width: w, height: hh, channels: ch });
    }
    if c.at != hlen {
        return Err(format_err("header bytes left over after the item table"));
    }
    let body_at = hend + 4;
    let rest = bytes.len() - body_at;
    let want = body_words as usize * 8;
    if rest < want {
        return Err(format_err(format!("truncated body: {rest} bytes of {want}")));
    }
    if rest > want {
        return Err(format_err("trailing bytes after the body"));
    }
    let body_bytes = &bytes[body_at..];
    if crc32fast::hash(body_bytes) != body_crc32 {
        return Err(Error::Checksum("archive body CRC mismatch".into()));
    }
    let body: Vec<u64> = body_bytes
        .chunks_exact(8)
        .map(|p| u64::from_le_bytes([p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]]))
        .collect();
    if body.last() == Some(&0) {
        return Err(format_err("body ends in a zero word"));
    }
    Ok(Archive {
        header: ArchiveHeader {
            model_sha256,
            t_max,
            taus,
            variance,
            grid_exp,
            range_log2,
            window_sigmas,
            max_group_tiles,
            seed,
            init_words,
            init_untouched,
            body_words,
            body_crc32,
            pixels_crc32,
            items,
        },
        body,
    })
}
