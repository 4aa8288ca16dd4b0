//! The sweep's plot (SVG, plotters): p50 and p99 latency (top) and goodput (bottom)
//! against offered load, with the overload step marked. plotters' SVG backend writes
//! text as `<text>` elements and lays it out with its built-in font metrics, so no
//! system font is needed.

use std::path::Path;

use plotters::prelude::*;

use crate::sweep::{StepPoint, SweepResult};

pub fn write(path: &Path, result: &SweepResult) -> Result<(), String> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let mut points: Vec<StepPoint> = result.steps.iter().map(|s| s.point).collect();
    if let Some(o) = &result.overload {
        points.push(StepPoint::of(&o.load));
    }
    draw(path, &points, &result.database)
        .map_err(|e| format!("plotting {}: {e}", path.display()))?;
    println!("  wrote {}", path.display());
    Ok(())
}

fn draw(
    path: &Path,
    points: &[StepPoint],
    database: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (900, 700)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(350);
    let x_max = points.iter().map(|p| p.offered_per_s).fold(1.0, f64::max) * 1.05;
    let latency_max = points
        .iter()
        .map(|p| p.p99_ms)
        .fold(1.0, f64::max)
        .min(60_000.0)
        * 1.1;
    let goodput_max = points
        .iter()
        .map(|p| p.goodput_per_s)
        .fold(1.0, f64::max)
        .max(x_max)
        * 1.05;

    let mut latency = ChartBuilder::on(&top)
        .caption(
            format!("ApproveTransfer latency vs offered load ({database})"),
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, 0.0..latency_max)?;
    latency
        .configure_mesh()
        .x_desc("offered (transfers/s)")
        .y_desc("latency (ms)")
        .draw()?;
    latency
        .draw_series(LineSeries::new(
            points.iter().map(|p| (p.offered_per_s, p.p50_ms)),
            &BLUE,
        ))?
        .label("p50")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    latency
        .draw_series(LineSeries::new(
            points.iter().map(|p| (p.offered_per_s, p.p99_ms)),
            &RED,
        ))?
        .label("p99")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    latency.draw_series(
        points
            .iter()
            .map(|p| Circle::new((p.offered_per_s, p.p99_ms), 3, RED.filled())),
    )?;
    latency
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;

    let mut goodput = ChartBuilder::on(&bottom)
        .caption("goodput (SUCCEEDED/s) vs offered load", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, 0.0..goodput_max)?;
    goodput
        .configure_mesh()
        .x_desc("offered (transfers/s)")
        .y_desc("SUCCEEDED/s")
        .draw()?;
    goodput
        .draw_series(LineSeries::new(
            [(0.0, 0.0), (x_max, x_max)],
            BLACK.mix(0.3),
        ))?
        .label("goodput = offered")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.3)));
    goodput
        .draw_series(LineSeries::new(
            points.iter().map(|p| (p.offered_per_s, p.goodput_per_s)),
            &GREEN,
        ))?
        .label("goodput")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN));
    goodput.draw_series(
        points
            .iter()
            .map(|p| Circle::new((p.offered_per_s, p.goodput_per_s), 3, GREEN.filled())),
    )?;
    goodput
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plot_is_an_svg_with_its_labels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sweep.svg");
        let points = [
            StepPoint {
                offered_per_s: 100.0,
                goodput_per_s: 100.0,
                p50_ms: 5.0,
                p99_ms: 9.0,
            },
            StepPoint {
                offered_per_s: 200.0,
                goodput_per_s: 150.0,
                p50_ms: 30.0,
                p99_ms: 90.0,
            },
        ];
        draw(&path, &points, "sqlite").unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100.min(svg.len())]);
        assert!(svg.contains("offered (transfers/s)"));
        assert!(svg.contains("p99"));
        assert!(svg.contains("<polyline"));
    }
}
