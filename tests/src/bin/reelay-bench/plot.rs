//! A curve drawn as an SVG line chart with `plotters`: one line with point marks per series,
//! axes labelled with their units, x on a log scale when the points grow by factors.

use std::ops::Range;
use std::path::Path;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;

/// One named line of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// What to draw: a title, the axes' labels (with units) and the series.
#[derive(Debug, Clone)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// x on a logarithmic scale (points 1, 10, 100…).
    pub log_x: bool,
    pub series: Vec<Series>,
}

const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

/// Draws `chart` into the SVG file `path`.
pub fn draw(chart: &Chart, path: &Path) -> anyhow::Result<()> {
    let points = chart.series.iter().flat_map(|s| s.points.iter());
    let (mut x_min, mut x_max, mut y_max) = (f64::MAX, f64::MIN, 0.0_f64);
    for &(x, y) in points {
        x_min = x_min.min(x);
        x_max = x_max.max(x);
        y_max = y_max.max(y);
    }
    anyhow::ensure!(x_min <= x_max, "no points to draw in {}", chart.title);
    let y_range = 0.0..if y_max > 0.0 { y_max * 1.3 } else { 1.0 };
    if chart.log_x {
        anyhow::ensure!(
            x_min > 0.0,
            "a log x axis needs positive x in {}",
            chart.title
        );
        let x_range = (x_min / 1.5)..(x_max * 1.5);
        render(chart, path, x_range.log_scale(), y_range)
    } else {
        let pad = ((x_max - x_min) * 0.05).max(1.0);
        render(chart, path, (x_min - pad).max(0.0)..(x_max + pad), y_range)
    }
}

fn render<X>(chart: &Chart, path: &Path, x: X, y: Range<f64>) -> anyhow::Result<()>
where
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
{
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut plot = ChartBuilder::on(&root)
        .caption(&chart.title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(x, y)?;
    plot.configure_mesh()
        // Only the labelled lines: a log axis's minor lines crowd each decade's end.
        .light_line_style(TRANSPARENT)
        .x_desc(chart.x_label.as_str())
        .y_desc(chart.y_label.as_str())
        .x_label_formatter(&|v| number(*v))
        .y_label_formatter(&|v| number(*v))
        .draw()?;
    for (index, series) in chart.series.iter().enumerate() {
        let color = COLORS[index % COLORS.len()];
        plot.draw_series(LineSeries::new(
            series.points.iter().copied(),
            color.stroke_width(2),
        ))?
        .label(series.name.as_str())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        plot.draw_series(
            series
                .points
                .iter()
                .map(|&point| Circle::new(point, 4, color.filled())),
        )?;
    }
    plot.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// A tick label: 1, 10, 1k, 50k, 1M; fractions with up to 2 decimals.
fn number(value: f64) -> String {
    let abs = value.abs();
    if abs >= 1e6 {
        format!("{}M", trim(value / 1e6))
    } else if abs >= 1e3 {
        format!("{}k", trim(value / 1e3))
    } else {
        trim(value)
    }
}

fn trim(value: f64) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(log_x: bool) -> Chart {
        Chart {
            title: "restart time against stored jobs".into(),
            x_label: "stored jobs (log scale)".into(),
            y_label: "time to serving (ms)".into(),
            log_x,
            series: vec![
                Series {
                    name: "after SIGTERM".into(),
                    points: vec![(10_000.0, 40.0), (100_000.0, 120.0), (1_000_000.0, 900.0)],
                },
                Series {
                    name: "after SIGKILL".into(),
                    points: vec![(10_000.0, 50.0), (100_000.0, 150.0), (1_000_000.0, 1500.0)],
                },
            ],
        }
    }

    #[test]
    fn a_plot_of_known_points_is_an_svg_with_its_labels() {
        for log_x in [true, false] {
            let dir = tempfile::tempdir().expect("dir");
            let path = dir.path().join("restart.svg");
            draw(&chart(log_x), &path).expect("draw");
            let svg = std::fs::read_to_string(&path).expect("read");
            assert!(svg.starts_with("<svg"), "{svg:.100}");
            for text in [
                "restart time against stored jobs",
                "stored jobs (log scale)",
                "time to serving (ms)",
                "after SIGTERM",
                "after SIGKILL",
            ] {
                assert!(svg.contains(text), "{text} missing from the SVG");
            }
            // One point mark per point of each series.
            assert_eq!(svg.matches("<circle").count(), 6, "{svg}");
        }
    }

    #[test]
    fn a_chart_without_points_is_an_error() {
        let dir = tempfile::tempdir().expect("dir");
        let mut empty = chart(true);
        empty.series.clear();
        assert!(draw(&empty, &dir.path().join("empty.svg")).is_err());
        let mut zero = chart(true);
        zero.series[0].points[0].0 = 0.0;
        assert!(draw(&zero, &dir.path().join("zero.svg")).is_err());
    }

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(number(1.0), "1");
        assert_eq!(number(50_000.0), "50k");
        assert_eq!(number(5_000_000.0), "5M");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(1_500.0), "1.5k");
    }
}
