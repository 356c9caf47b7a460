//! Shared plumbing of the figure examples: model loading, image ↔ tiles, grids.
#![allow(dead_code)]

use std::path::Path;

use ddpm_codec::data::{model_to_u8, u8_to_model};
use ddpm_codec::image_io::{self, RasterImage};
use ddpm_codec::tiling::TileGrid;
use ddpm_codec::Result;

/// An image as model-range tiles, with its grid.
pub struct Tiled {
    pub grid: TileGrid,
    pub tiles: Vec<f32>,
}

pub fn load_tiled(path: &Path) -> Result<Tiled> {
    let img = image_io::read_image(path)?;
    let grid = TileGrid::new(img.width as usize, img.height as usize, 32);
    Ok(Tiled { grid, tiles: u8_to_model(&grid.to_tiles(&img.to_rgb())) })
}

/// Tiles back to an interleaved RGB image of the grid's size.
pub fn untile(grid: &TileGrid, tiles: &[f32]) -> Vec<u8> {
    grid.from_tiles(&model_to_u8(tiles))
}

/// Writes equally sized RGB images (interleaved) as a grid with `cols` columns and 2-px gaps.
pub fn write_grid(images: &[Vec<u8>], w: usize, h: usize, cols: usize, path: &Path) -> Result<()> {
    // to NCHW for sample::grid_png
    let mut nchw = Vec::with_capacity(images.len() * w * h * 3);
    for im in images {
        for c in 0..3 {
            nchw.extend((0..w * h).map(|p| im[p * 3 + c]));
        }
    }
    ddpm_codec::sample::grid_png(&nchw, images.len(), 3, h, w, cols, path)
}

pub fn parse_list<T: std::str::FromStr>(s: &str) -> Vec<T> {
    s.split(',').filter_map(|v| v.trim().parse().ok()).collect()
}

#[allow(unused)]
pub fn raster(w: usize, h: usize, rgb: Vec<u8>) -> Result<RasterImage> {
    RasterImage::new(w as u32, h as u32, 3, rgb)
}
