//! PNG line charts of training metrics over steps.

use anyhow::{Context, Result};
use plotters::prelude::*;
use std::path::Path;
use std::sync::OnceLock;

const FONT_PATHS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/Library/Fonts/Arial.ttf",
];

/// plotters draws text only with a registered font; take the first system font found.
fn ensure_font() -> Result<()> {
    static FONT: OnceLock<bool> = OnceLock::new();
    let ok = *FONT.get_or_init(|| {
        let custom = std::env::var("AHA_FONT").ok();
        for p in custom.iter().map(String::as_str).chain(FONT_PATHS) {
            if let Ok(bytes) = std::fs::read(p) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    });
    anyhow::ensure!(
        ok,
        "no TrueType font found for chart labels (set AHA_FONT=/path/to/font.ttf)"
    );
    Ok(())
}

const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
];

/// Draw one or more named series (x, y) as lines into a PNG.
pub fn line_chart(
    path: &Path,
    title: &str,
    y_label: &str,
    series: &[(&str, Vec<(f64, f64)>)],
) -> Result<()> {
    ensure_font()?;
    let points: Vec<&(f64, f64)> = series
        .iter()
        .flat_map(|(_, s)| s.iter())
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    anyhow::ensure!(!points.is_empty(), "nothing to plot for {title}");
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &&(x, y) in &points {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.05).max(1e-6);
    let root = BitMapBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc(y_label)
        .label_style(("sans-serif", 14))
        .draw()?;
    for (i, (name, s)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let s: Vec<(f64, f64)> = s
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        chart
            .draw_series(LineSeries::new(s, color.stroke_width(2)))?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    if series.len() > 1 {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()?;
    }
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_png() {
        if ensure_font().is_err() {
            eprintln!("skipped: no system font for chart labels");
            return;
        }
        let dir = std::env::temp_dir().join(format!("aha-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("reward.png");
        let s: Vec<(f64, f64)> = (0..20)
            .map(|i| (i as f64, (i as f64 / 5.0).sin()))
            .collect();
        line_chart(
            &p,
            "reward",
            "mean reward",
            &[("reward", s.clone()), ("accuracy", s)],
        )
        .unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(&bytes[..4], b"\x89PNG");
        assert!(line_chart(&p, "empty", "y", &[("x", vec![])]).is_err());
    }
}
