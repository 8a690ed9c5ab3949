//! One kind of chart, drawn with `plotters` to PNG and SVG: lines of (x, y) points
//! with a legend, a linear x axis and a linear or logarithmic y axis. Every plot of
//! `msnr plot` is a [`LineChart`]; what goes on each is decided in `plots.rs`.
//!
//! Text is drawn with `DejaVu Sans`, bundled in `assets/fonts/` (its license beside it)
//! and rasterised by `ab_glyph`, so a machine with no fonts and no fontconfig draws
//! the same PNG; the SVG names the font family and lets the viewer draw the text.

use std::ops::Range;
use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

/// `DejaVu Sans` (Bitstream Vera license, `assets/fonts/LICENSE`).
static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// Chart size in pixels (PNG) and user units (SVG).
pub const SIZE: (u32, u32) = (900, 540);

/// Tableau's ten colours: distinct for the few instances a sweep has.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// A thin, faint line (raw values under their smoothed curve).
    Faint,
    /// A solid line.
    Line,
    /// A solid line with a marker at each point (few points, e.g. metric evaluations).
    Marked,
}

/// One line of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend entry; `None` keeps it out of the legend.
    pub label: Option<String>,
    /// Colour index into the palette (series of one instance share it).
    pub color: usize,
    /// How it is drawn.
    pub style: Style,
    /// The points; non-finite ones (and non-positive ones on a log axis) are left out.
    pub points: Vec<(f64, f64)>,
}

/// A chart: title, axis names and lines.
#[derive(Debug, Clone, PartialEq)]
pub struct LineChart {
    /// Shown above the chart.
    pub title: String,
    /// The x axis name.
    pub x_label: String,
    /// The y axis name.
    pub y_label: String,
    /// A logarithmic y axis.
    pub log_y: bool,
    /// The lines, drawn in order.
    pub series: Vec<Series>,
}

impl LineChart {
    /// The points that can be drawn on this chart's axes, per series; on a log axis y is
    /// drawn as log10(y) on a linear axis whose labels show 10^v (plotters' own log axis
    /// leaves a range inside one decade without labels).
    fn drawable(&self) -> Vec<Vec<(f64, f64)>> {
        let ok = |&(x, y): &(f64, f64)| x.is_finite() && y.is_finite() && (!self.log_y || y > 0.0);
        let place = |(x, y): (f64, f64)| (x, if self.log_y { y.log10() } else { y });
        self.series.iter().map(|s| s.points.iter().copied().filter(ok).map(place).collect()).collect()
    }

    /// The x and y ranges (y in log10 on a log axis) covering every drawable point, padded so
    /// no point sits on the frame.
    #[must_use]
    pub fn ranges(&self) -> Option<(Range<f64>, Range<f64>)> {
        let all: Vec<(f64, f64)> = self.drawable().into_iter().flatten().collect();
        let (x0, x1) = bounds(all.iter().map(|p| p.0))?;
        let (y0, y1) = bounds(all.iter().map(|p| p.1))?;
        Some((pad(x0, x1), pad(y0, y1)))
    }

    /// Writes `<stem>.png` and `<stem>.svg` into `dir`.
    ///
    /// # Errors
    /// When there is nothing to draw, or a file cannot be written.
    pub fn save(&self, dir: &Path, stem: &str) -> Result<(), String> {
        let svg = self.to_svg()?;
        let svg_path = dir.join(format!("{stem}.svg"));
        std::fs::write(&svg_path, svg).map_err(|e| format!("{}: {e}", svg_path.display()))?;
        let png_path = dir.join(format!("{stem}.png"));
        self.to_png()?
            .save_with_format(&png_path, image::ImageFormat::Png)
            .map_err(|e| format!("{}: {e}", png_path.display()))
    }

    /// The chart as an SVG document.
    ///
    /// # Errors
    /// When there is nothing to draw.
    pub fn to_svg(&self) -> Result<String, String> {
        let mut text = String::new();
        {
            let root = SVGBackend::with_string(&mut text, SIZE).into_drawing_area();
            self.draw(&root)?;
            root.present().map_err(|e| e.to_string())?;
        }
        Ok(text)
    }

    /// The chart as an RGB image.
    ///
    /// # Errors
    /// When there is nothing to draw.
    pub fn to_png(&self) -> Result<image::RgbImage, String> {
        let mut buf = vec![0_u8; SIZE.0 as usize * SIZE.1 as usize * 3];
        {
            let root = BitMapBackend::with_buffer(&mut buf, SIZE).into_drawing_area();
            self.draw(&root)?;
            root.present().map_err(|e| e.to_string())?;
        }
        image::RgbImage::from_raw(SIZE.0, SIZE.1, buf).ok_or_else(|| "chart buffer has the wrong size".to_string())
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        register_font();
        let (x, y) = self.ranges().ok_or_else(|| format!("`{}`: nothing to draw", self.title))?;
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        self.draw_on(root, x, y)
    }

    fn draw_on<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        x: Range<f64>,
        y: Range<f64>,
    ) -> Result<(), String> {
        let (x_span, y_span) = (x.clone(), y.clone());
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(70)
            .build_cartesian_2d(x, y)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc(self.x_label.as_str())
            .y_desc(if self.log_y { format!("{} (log scale)", self.y_label) } else { self.y_label.clone() })
            .label_style(("sans-serif", 14))
            .x_label_formatter(&|v| tick(*v, &x_span))
            .y_label_formatter(&|v| if self.log_y { number(10_f64.powf(*v)) } else { tick(*v, &y_span) })
            .y_labels(8)
            .bold_line_style(RGBColor(215, 215, 215))
            .light_line_style(RGBColor(245, 245, 245))
            .draw()
            .map_err(|e| e.to_string())?;
        for (series, points) in self.series.iter().zip(self.drawable()) {
            let color = PALETTE[series.color % PALETTE.len()];
            let style = match series.style {
                Style::Faint => color.mix(0.3).stroke_width(1),
                Style::Line | Style::Marked => color.stroke_width(2),
            };
            let marked = series.style == Style::Marked;
            let drawn = chart.draw_series(LineSeries::new(points.clone(), style)).map_err(|e| e.to_string())?;
            if let Some(label) = &series.label {
                drawn
                    .label(label.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
            }
            if marked {
                chart
                    .draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))
                    .map_err(|e| e.to_string())?;
            }
        }
        if self.series.iter().any(|s| s.label.is_some()) {
            chart
                .configure_series_labels()
                .label_font(("sans-serif", 14))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.5))
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// Registers the bundled font as plotters' `sans-serif`, once.
fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bundled file is a valid TrueType font (a unit test draws text with it).
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// A tick label on a linear axis spanning `range`: as many decimals as a tenth of the span
/// needs, so neighbouring ticks never read the same, and 0 for rounding noise around zero.
#[must_use]
pub fn tick(v: f64, range: &Range<f64>) -> String {
    let step = (range.end - range.start).abs() / 10.0;
    if !(step > 0.0 && step.is_finite()) {
        return number(v);
    }
    if v.abs() < step * 1e-6 {
        return "0".into();
    }
    // -floor(log10(step)) of a finite positive step fits an i32 easily.
    #[allow(clippy::cast_possible_truncation)]
    let decimals = usize::try_from(-(step.log10().floor() as i32)).unwrap_or(0).min(12);
    if v.abs() >= 1e6 || v.abs() < 1e-4 {
        return format!("{v:.2e}");
    }
    format!("{v:.decimals$}")
}

/// An axis label: whole numbers without decimals, else three significant digits.
#[must_use]
pub fn number(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    if v.fract() == 0.0 && v.abs() < 1e9 {
        return format!("{v:.0}");
    }
    if (1e-3..1e5).contains(&v.abs()) {
        // floor(log10 |v|) is in -3..=4 here, so the cast is exact.
        #[allow(clippy::cast_possible_truncation)]
        let magnitude = v.abs().log10().floor() as i32;
        let decimals = usize::try_from(2 - magnitude).unwrap_or(0);
        return format!("{v:.decimals$}");
    }
    format!("{v:.2e}")
}

fn bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.fold(None, |acc, v| Some(acc.map_or((v, v), |(lo, hi): (f64, f64)| (lo.min(v), hi.max(v)))))
}

/// A range around `[lo, hi]` with 5% room each side (a unit either side of a single value).
fn pad(lo: f64, hi: f64) -> Range<f64> {
    let room = if hi > lo { (hi - lo) * 0.05 } else { lo.abs().max(1.0) * 0.05 };
    (lo - room)..(hi + room)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(log_y: bool, points: Vec<(f64, f64)>) -> LineChart {
        LineChart {
            title: "loss <&> \"q\"".into(),
            x_label: "step".into(),
            y_label: "loss".into(),
            log_y,
            series: vec![Series { label: Some("w=constant".into()), color: 0, style: Style::Marked, points }],
        }
    }

    #[test]
    fn log_axis_drops_non_positive_and_non_finite_points() {
        let c = chart(true, vec![(0.0, 0.0), (1.0, 0.5), (2.0, f64::NAN), (3.0, 2.0)]);
        assert_eq!(c.drawable(), vec![vec![(1.0, 0.5_f64.log10()), (3.0, 2.0_f64.log10())]]);
        let (x, y) = c.ranges().unwrap();
        assert!(x.start < 1.0 && x.end > 3.0);
        assert!(y.start < 0.5_f64.log10() && y.end > 2.0_f64.log10() && y.end < 0.35, "{y:?}");
        assert!(chart(true, vec![(0.0, -1.0)]).ranges().is_none(), "nothing drawable");
    }

    #[test]
    fn axis_numbers_are_short() {
        assert_eq!(number(2000.0), "2000");
        assert_eq!(number(0.1234), "0.123");
        assert_eq!(number(12.5), "12.5");
        assert_eq!(number(3e-5), "3.00e-5");
        assert_eq!(tick(81.15, &(80.85..81.25)), "81.15");
        assert_eq!(tick(6.94e-18, &(-0.05..0.05)), "0");
        assert_eq!(tick(1200.0, &(0.0..2000.0)), "1200");
        assert_eq!(tick(0.26, &(0.0..1.0)), "0.3", "a tenth of the span is 0.1: one decimal");
    }

    #[test]
    fn one_point_still_has_a_range() {
        let (x, y) = chart(false, vec![(200.0, 7.0)]).ranges().unwrap();
        assert!(x.start < 200.0 && x.end > 200.0 && y.start < 7.0 && y.end > 7.0);
    }

    #[test]
    fn draws_text_with_the_bundled_font_into_png_and_escaped_svg() {
        let c = chart(false, vec![(0.0, 1.0), (10.0, 0.5), (20.0, 0.25)]);
        let svg = c.to_svg().unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
        assert!(svg.contains("w=constant") && svg.contains("loss &lt;&amp;&gt;"), "legend and escaped title");
        let png = c.to_png().unwrap();
        assert_eq!(png.dimensions(), SIZE);
        // The title's glyphs are drawn: dark pixels in the caption band, which is empty otherwise.
        let dark =
            (0..SIZE.0).flat_map(|x| (0..30).map(move |y| (x, y))).filter(|&(x, y)| png.get_pixel(x, y).0[0] < 100);
        assert!(dark.count() > 50, "the caption has text");
        let none = chart(false, vec![]).to_svg().unwrap_err();
        assert!(none.contains("nothing to draw"), "{none}");
    }
}
