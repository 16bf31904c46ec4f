//! Inline SVG charts: bars (requests per day) and a line (median time to decision per day).
//! Each is an image with a title and a description for screen readers, every mark carries its
//! own `<title>`, and the pages print the same numbers in a table beside it.

use super::html::esc;

const W: f64 = 720.0;
const H: f64 = 240.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 36.0;

/// One day's value: its label (a date), the value (`None`: nothing to show) and how to say it.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub label: String,
    pub value: Option<f64>,
    pub text: String,
}

/// The kind of mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bars,
    Line,
}

/// A round number at or above `max`, so the axis reads well (1, 2, 5 × 10ⁿ).
fn nice_ceiling(max: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(max.log10().floor());
    for step in [1.0, 2.0, 5.0, 10.0] {
        if step * mag >= max {
            return step * mag;
        }
    }
    10.0 * mag
}

fn fmt_num(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else if v.abs() < 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.1}")
    }
}

/// An SVG chart: `id` makes its title and description ids unique on the page; `unit` labels
/// the vertical axis.
pub fn chart(
    id: &str,
    title: &str,
    desc: &str,
    unit: &str,
    kind: Kind,
    points: &[Point],
) -> String {
    // At least one unit high, so tiny values do not stretch the axis into zeros.
    let max = nice_ceiling(
        points
            .iter()
            .filter_map(|p| p.value)
            .fold(0.0_f64, f64::max),
    )
    .max(1.0);
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let n = points.len().max(1) as f64;
    let slot = plot_w / n;
    let y = |v: f64| TOP + plot_h - (v / max) * plot_h;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" \
         role=\"img\" aria-labelledby=\"{id}-title {id}-desc\"><title id=\"{id}-title\">{}</title>\
         <desc id=\"{id}-desc\">{}</desc>",
        esc(title),
        esc(desc)
    );
    // Grid and vertical axis labels at 0, half and the top.
    for frac in [0.0, 0.5, 1.0] {
        let v = max * frac;
        let yy = y(v);
        s.push_str(&format!(
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"#c8c8c8\"/>\
             <text x=\"{}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"end\" fill=\"#333\">{}</text>",
            W - RIGHT,
            LEFT - 6.0,
            yy + 4.0,
            fmt_num(v)
        ));
    }
    s.push_str(&format!(
        "<text x=\"12\" y=\"{:.1}\" font-size=\"12\" fill=\"#333\" transform=\"rotate(-90 12 {:.1})\" text-anchor=\"middle\">{}</text>",
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0,
        esc(unit)
    ));
    // Horizontal labels: first, middle and last day.
    let mut labelled = vec![0, points.len().saturating_sub(1)];
    if points.len() > 2 {
        labelled.push(points.len() / 2);
    }
    labelled.dedup();
    let last = points.len().saturating_sub(1);
    for i in labelled {
        if let Some(p) = points.get(i) {
            // The first and last labels are held inside the picture.
            let (x, anchor) = match i {
                0 => (LEFT, "start"),
                i if i == last => (W - RIGHT, "end"),
                i => (LEFT + slot * (i as f64 + 0.5), "middle"),
            };
            s.push_str(&format!(
                "<text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"{anchor}\" fill=\"#333\">{}</text>",
                H - BOTTOM + 18.0,
                esc(&p.label)
            ));
        }
    }
    match kind {
        Kind::Bars => {
            let bw = (slot * 0.7).max(1.0);
            for (i, p) in points.iter().enumerate() {
                let v = p.value.unwrap_or(0.0);
                let top = y(v);
                s.push_str(&format!(
                    "<rect x=\"{:.1}\" y=\"{top:.1}\" width=\"{bw:.1}\" height=\"{:.1}\" fill=\"#1f3a5f\"><title>{}: {}</title></rect>",
                    LEFT + slot * i as f64 + (slot - bw) / 2.0,
                    (TOP + plot_h - top).max(0.0),
                    esc(&p.label),
                    esc(&p.text)
                ));
            }
        }
        Kind::Line => {
            let mut run: Vec<String> = Vec::new();
            let mut lines = String::new();
            let mut dots = String::new();
            for (i, p) in points.iter().enumerate() {
                let x = LEFT + slot * (i as f64 + 0.5);
                match p.value {
                    Some(v) => {
                        run.push(format!("{x:.1},{:.1}", y(v)));
                        dots.push_str(&format!(
                            "<circle cx=\"{x:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"#b35900\"><title>{}: {}</title></circle>",
                            y(v),
                            esc(&p.label),
                            esc(&p.text)
                        ));
                    }
                    None => {
                        if run.len() > 1 {
                            lines.push_str(&polyline(&run));
                        }
                        run.clear();
                    }
                }
            }
            if run.len() > 1 {
                lines.push_str(&polyline(&run));
            }
            s.push_str(&lines);
            s.push_str(&dots);
        }
    }
    s.push_str(&format!(
        "<line x1=\"{LEFT}\" x2=\"{LEFT}\" y1=\"{TOP}\" y2=\"{}\" stroke=\"#333\"/></svg>",
        TOP + plot_h
    ));
    s
}

fn polyline(points: &[String]) -> String {
    format!(
        "<polyline points=\"{}\" fill=\"none\" stroke=\"#b35900\" stroke-width=\"2\"/>",
        points.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(label: &str, v: Option<f64>) -> Point {
        Point {
            label: label.into(),
            value: v,
            text: format!("{v:?}"),
        }
    }

    #[test]
    fn axes_end_on_round_numbers() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(13.0), 20.0);
        assert_eq!(nice_ceiling(2.0), 2.0);
        assert_eq!(nice_ceiling(0.3), 0.5);
    }

    #[test]
    fn charts_are_labelled_images_with_one_mark_per_value() {
        let pts = [
            p("12-01", Some(3.0)),
            p("12-02", None),
            p("12-03", Some(1.0)),
        ];
        let bars = chart("v", "Requests <per> day", "d", "requests", Kind::Bars, &pts);
        assert!(bars.contains("role=\"img\""));
        assert!(bars.contains("aria-labelledby=\"v-title v-desc\""));
        assert!(bars.contains("Requests &lt;per&gt; day"));
        assert_eq!(bars.matches("<rect").count(), 3);
        let line = chart("m", "Median", "d", "hours", Kind::Line, &pts);
        assert_eq!(line.matches("<circle").count(), 2);
        assert_eq!(line.matches("<polyline").count(), 0, "no line across a gap");
    }
}
