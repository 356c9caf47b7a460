//! Cutting images into model-sized tiles (edge-replicated padding) and putting them back.

/// How an image of `width`×`height` maps onto `tile`×`tile` tiles, row-major.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileGrid {
    pub width: usize,
    pub height: usize,
    pub tile: usize,
    pub cols: usize,
    pub rows: usize,
}

impl TileGrid {
    pub fn new(width: usize, height: usize, tile: usize) -> Self {
        let cols = width.div_ceil(tile);
        let rows = height.div_ceil(tile);
        Self { width, height, tile, cols, rows }
    }

    pub fn num_tiles(&self) -> usize {
        self.cols * self.rows
    }

    /// Dimensions of one tile (3 planes).
    pub fn tile_dims(&self) -> usize {
        3 * self.tile * self.tile
    }

    /// Interleaved RGB (row-major) → tiles, each 3 planes of tile×tile (NCHW), edges replicated.
    pub fn to_tiles(&self, rgb: &[u8]) -> Vec<u8> {
        assert_eq!(rgb.len(), self.width * self.height * 3);
        let t = self.tile;
        let mut out = vec![0u8; self.num_tiles() * self.tile_dims()];
        for ty in 0..self.rows {
            for tx in 0..self.cols {
                let base = (ty * self.cols + tx) * self.tile_dims();
                for y in 0..t {
                    let sy = (ty * t + y).min(self.height - 1);
                    for x in 0..t {
                        let sx = (tx * t + x).min(self.width - 1);
                        let s = (sy * self.width + sx) * 3;
                        for c in 0..3 {
                            out[base + c * t * t + y * t + x] = rgb[s + c];
                        }
                    }
                }
            }
        }
        out
    }

    /// Tiles (NCHW) → interleaved RGB, padding cropped.
    pub fn from_tiles(&self, tiles: &[u8]) -> Vec<u8> {
        assert_eq!(tiles.len(), self.num_tiles() * self.tile_dims());
        let t = self.tile;
        let mut out = vec![0u8; self.width * self.height * 3];
        for y in 0..self.height {
            for x in 0..self.width {
                let base = ((y / t) * self.cols + x / t) * self.tile_dims();
                let (iy, ix) = (y % t, x % t);
                for c in 0..3 {
                    out[(y * self.width + x) * 3 + c] = tiles[base + c * t * t + iy * t + ix];
                }
            }
        }
        out
    }

    /// Whether tile-local position (y, x) of tile `i` lies inside the image (not padding).
    pub fn inside(&self, i: usize, y: usize, x: usize) -> bool {
        let (ty, tx) = (i / self.cols, i % self.cols);
        ty * self.tile + y < self.height && tx * self.tile + x < self.width
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_round_trip_odd_sizes() {
        for (w, h) in [(1, 1), (32, 32), (33, 31), (70, 5), (64, 96)] {
            let g = TileGrid::new(w, h, 32);
            let rgb: Vec<u8> = (0..w * h * 3).map(|i| (i * 31 % 251) as u8).collect();
            let tiles = g.to_tiles(&rgb);
            assert_eq!(tiles.len(), g.num_tiles() * 3072);
            assert_eq!(g.from_tiles(&tiles), rgb, "{w}x{h}");
        }
    }

    #[test]
    fn padding_replicates_edges() {
        let g = TileGrid::new(2, 1, 32);
        let tiles = g.to_tiles(&[10, 20, 30, 40, 50, 60]);
        // red plane, row 5, column 9: replicated from pixel (0, 1)
        assert_eq!(tiles[5 * 32 + 9], 40);
        assert!(g.inside(0, 0, 1) && !g.inside(0, 0, 2) && !g.inside(0, 1, 0));
    }
}
