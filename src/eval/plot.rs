//! Figures: the rate–distortion plot (bpp against PSNR and against RMSE) and the progressive
//! strip (reconstructions at a few prefixes, one PNG row).
//!
//! Drawn with plotters into an in-memory RGB buffer (bitmap backend) and written as PNG with the
//! `image` crate; text uses DejaVu Sans embedded in the binary (assets/fonts, Bitstream Vera
//! licence), so no system font library is needed to build or run.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::error::{Error, Result};
use crate::eval::rd::{Curve, OURS};
use crate::image_io::RasterImage;

static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

fn ensure_font() {
    REGISTER.call_once(|| {
        // the embedded file is a valid TTF; a failure would only lose the text
        let _ = register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

fn perr(e: impl std::fmt::Display) -> Error {
    Error::Image(format!("plot: {e}"))
}

/// One line on the RD plot.
#[derive(Debug, Clone)]
pub struct PlotSeries {
    pub label: String,
    pub color: (u8, u8, u8),
    pub dashed: bool,
    /// Whether to mark the points.
    pub markers: bool,
    /// (bpp, PSNR dB, RMSE); PSNR may be +∞ (exact), RMSE 0.
    pub points: Vec<(f64, f64, f64)>,
}

/// Series of the RD plot from curves: ours actual (solid) and ideal (dashed) per reconstruction,
/// each classical codec (solid with markers).
pub fn series_from_curves(curves: &[Curve]) -> Vec<PlotSeries> {
    let mut v = Vec::new();
    for c in curves {
        let pts = |ideal: bool| -> Vec<(f64, f64, f64)> {
            // in curve order (prefixes, or settings from low to high quality), not sorted by rate
            c.rows
                .iter()
                .map(|r| (if ideal { r.ideal_bpp.unwrap_or(f64::NAN) } else { r.actual_bpp }, r.psnr, r.rmse))
                .filter(|p| p.0.is_finite())
                .collect()
        };
        if c.name == OURS {
            let (color, tag) = if c.recon == "ddim" { ((128, 0, 160), "DDIM") } else { ((20, 60, 200), "one-step") };
            v.push(PlotSeries { label: format!("ours {tag}, actual"), color, dashed: false, markers: false, points: pts(false) });
            if c.rows.iter().all(|r| r.ideal_bpp.is_some()) {
                v.push(PlotSeries { label: format!("ours {tag}, ideal"), color, dashed: true, markers: false, points: pts(true) });
            }
        } else {
            let color = match c.name.as_str() {
                "jpeg" => (210, 40, 40),
                "webp" => (20, 150, 60),
                "webp-near-lossless" => (120, 160, 20),
                "jpeg-xl" => (230, 130, 0),
                _ => (90, 90, 90),
            };
            v.push(PlotSeries { label: c.name.clone(), color, dashed: false, markers: true, points: pts(false) });
        }
    }
    v
}

/// Lower edge of the log RMSE axis; exact points (RMSE 0) are drawn on it.
const RMSE_FLOOR: f64 = 0.1;

/// Writes the two-panel RD plot (left: bpp vs PSNR; right: bpp vs RMSE on a log axis with a
/// reference line at RMSE 0.95; exact points sit on the lower edge).
pub fn rd_plot(path: &Path, title: &str, series: &[PlotSeries]) -> Result<()> {
    ensure_font();
    let (w, h) = (1500u32, 640u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(perr)?;
        let root = root.titled(title, ("sans-serif", 22)).map_err(perr)?;
        let panels = root.split_evenly((1, 2));
        let all = series.iter().flat_map(|s| s.points.iter());
        let xmax = all.clone().map(|p| p.0).fold(0.0f64, f64::max).max(0.5) * 1.03;
        let finite_psnr: Vec<f64> = all.clone().map(|p| p.1).filter(|v| v.is_finite()).collect();
        let pmin = finite_psnr.iter().copied().fold(f64::INFINITY, f64::min);
        let pmax = finite_psnr.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let (pmin, pmax) = if pmin.is_finite() { ((pmin - 2.0).floor(), (pmax + 2.0).ceil()) } else { (0.0, 60.0) };
        let rmax = all.clone().map(|p| p.2).fold(1.0f64, f64::max) * 1.3;

        // left: PSNR
        let mut chart = ChartBuilder::on(&panels[0])
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(55)
            .build_cartesian_2d(0f64..xmax, pmin..pmax)
            .map_err(perr)?;
        chart
            .configure_mesh()
            .x_desc("bits per pixel (whole files)")
            .y_desc("PSNR (dB, of the mean MSE)")
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 17))
            .draw()
            .map_err(perr)?;
        for s in series {
            let pts: Vec<(f64, f64)> = s.points.iter().filter(|p| p.1.is_finite()).map(|p| (p.0, p.1)).collect();
            draw_series(&mut chart, s, pts)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(perr)?;

        // right: RMSE, log axis
        let mut chart = ChartBuilder::on(&panels[1])
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(55)
            .build_cartesian_2d(0f64..xmax, (RMSE_FLOOR..rmax).log_scale())
            .map_err(perr)?;
        chart
            .configure_mesh()
            .x_desc("bits per pixel (whole files)")
            .y_desc("RMSE (0-255, of the mean MSE; lossless at the bottom edge)")
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 17))
            .draw()
            .map_err(perr)?;
        chart
            .draw_series(DashedLineSeries::new(
                vec![(0.0, 0.95), (xmax, 0.95)],
                4,
                6,
                ShapeStyle { color: RGBColor(90, 90, 90).mix(0.8), filled: false, stroke_width: 1 },
            ))
            .map_err(perr)?
            .label("RMSE 0.95 (DDPM paper, 1.78 bits/dim ideal)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RGBColor(90, 90, 90)));
        for s in series {
            let pts: Vec<(f64, f64)> = s.points.iter().map(|p| (p.0, p.2.max(RMSE_FLOOR))).collect();
            draw_series(&mut chart, s, pts)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(perr)?;
        root.present().map_err(perr)?;
    }
    let img = image::RgbImage::from_raw(w, h, buf).ok_or_else(|| perr("buffer size"))?;
    img.save_with_format(path, image::ImageFormat::Png)?;
    Ok(())
}

fn draw_series<DB: DrawingBackend, CT: plotters::coord::CoordTranslate<From = (f64, f64)>>(
    chart: &mut ChartContext<'_, DB, CT>,
    s: &PlotSeries,
    pts: Vec<(f64, f64)>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let color = RGBColor(s.color.0, s.color.1, s.color.2);
    let style = ShapeStyle { color: color.to_rgba(), filled: false, stroke_width: 2 };
    let legend_dashed = s.dashed;
    if s.dashed {
        chart.draw_series(DashedLineSeries::new(pts.clone(), 7, 5, style)).map_err(perr)?
    } else {
        chart.draw_series(LineSeries::new(pts.clone(), style)).map_err(perr)?
    }
    .label(s.label.clone())
    .legend(move |(x, y)| {
        let st = ShapeStyle { color: color.to_rgba(), filled: false, stroke_width: 2 };
        if legend_dashed {
            PathElement::new(vec![(x, y), (x + 7, y)], st)
        } else {
            PathElement::new(vec![(x, y), (x + 20, y)], st)
        }
    });
    if s.markers {
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 3, ShapeStyle { color: color.to_rgba(), filled: true, stroke_width: 1 })))
            .map_err(perr)?;
    }
    Ok(())
}

/// Writes reconstructions as one PNG row (2-pixel white gaps), each scaled up by `scale`
/// (nearest neighbour). All frames must have one size.
pub fn strip_png(path: &Path, frames: &[RasterImage], scale: u32) -> Result<()> {
    const GAP: u32 = 2;
    let first = frames.first().ok_or_else(|| Error::Parameter("no frames for the strip".into()))?;
    let (fw, fh) = (first.width * scale.max(1), first.height * scale.max(1));
    let n = frames.len() as u32;
    let total_w = n * fw + (n - 1) * GAP;
    if (total_w as u64) * (fh as u64) > 1 << 28 {
        return Err(Error::LimitsExceeded(format!("strip of {total_w}x{fh} pixels is too large")));
    }
    let mut out = image::RgbImage::from_pixel(total_w, fh, image::Rgb([255, 255, 255]));
    for (j, f) in frames.iter().enumerate() {
        if (f.width, f.height) != (first.width, first.height) {
            return Err(Error::Parameter("strip frames differ in size".into()));
        }
        let rgb = f.to_rgb();
        let ox = j as u32 * (fw + GAP);
        for y in 0..fh {
            for x in 0..fw {
                let s = (((y / scale.max(1)) * f.width + x / scale.max(1)) * 3) as usize;
                out.put_pixel(ox + x, y, image::Rgb([rgb[s], rgb[s + 1], rgb[s + 2]]));
            }
        }
    }
    out.save_with_format(path, image::ImageFormat::Png)?;
    Ok(())
}
