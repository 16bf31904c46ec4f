//! The digest's chart as a PNG: requests per day as bars, the median time to a decision per day
//! as a line. Pixels drawn here and encoded with the pure-Rust `png` crate: no fonts, no system
//! libraries. The image carries no text; the message says what the axes are
//! ([`super::digest::Digest::chart_caption`]).

use super::digest::DayPoint;

/// Image width in pixels.
pub const WIDTH: u32 = 720;
/// Image height in pixels.
pub const HEIGHT: u32 = 240;
/// Empty space around the plot, in pixels.
pub const MARGIN: u32 = 20;

/// Background.
pub const BACKGROUND: [u8; 3] = [255, 255, 255];
/// Request bars.
pub const BAR: [u8; 3] = [74, 144, 217];
/// The median time-to-decision line and its points.
pub const LINE: [u8; 3] = [232, 116, 59];
const AXIS: [u8; 3] = [150, 150, 150];
const GRID: [u8; 3] = [232, 232, 232];

/// The chart could not be encoded.
#[derive(Debug, thiserror::Error)]
#[error("chart could not be encoded as PNG: {0}")]
pub struct ChartError(#[from] png::EncodingError);

/// Where things are drawn, so tests can check the picture against the numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Per bucket: (left x, width, top y) of its bar; the bar reaches down to `baseline`.
    pub bars: Vec<(u32, u32, u32)>,
    /// Per bucket: the line's point (centre x, y), when the bucket had decisions.
    pub points: Vec<Option<(u32, u32)>>,
    /// The y of the x axis.
    pub baseline: u32,
    /// The tallest bar's height in pixels (the plot's height).
    pub plot_height: u32,
}

/// Computes the layout of `days` in the image.
pub fn layout(days: &[DayPoint]) -> Layout {
    let plot_w = WIDTH - 2 * MARGIN;
    let plot_h = HEIGHT - 2 * MARGIN;
    let baseline = HEIGHT - MARGIN;
    let n = days.len().max(1) as u32;
    let slot = plot_w / n;
    let bar_w = (slot * 3 / 5).max(1);
    let max_req = days.iter().map(|d| d.requests).max().unwrap_or(0).max(1);
    let max_med = days
        .iter()
        .filter_map(|d| d.median_decision_ms)
        .max()
        .unwrap_or(0)
        .max(1);
    let mut bars = Vec::with_capacity(days.len());
    let mut points = Vec::with_capacity(days.len());
    for (i, d) in days.iter().enumerate() {
        let left = MARGIN + i as u32 * slot + (slot - bar_w) / 2;
        let h = ((d.requests as f64 / max_req as f64) * plot_h as f64).round() as u32;
        bars.push((left, bar_w, baseline - h));
        let centre = MARGIN + i as u32 * slot + slot / 2;
        points.push(d.median_decision_ms.map(|m| {
            let h = ((m.max(0) as f64 / max_med as f64) * plot_h as f64).round() as u32;
            (centre, baseline - h)
        }));
    }
    Layout {
        bars,
        points,
        baseline,
        plot_height: plot_h,
    }
}

struct Canvas {
    px: Vec<u8>,
}

impl Canvas {
    fn new() -> Self {
        let mut px = Vec::with_capacity((WIDTH * HEIGHT * 3) as usize);
        for _ in 0..WIDTH * HEIGHT {
            px.extend_from_slice(&BACKGROUND);
        }
        Self { px }
    }

    fn set(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x < 0 || y < 0 || x >= WIDTH as i64 || y >= HEIGHT as i64 {
            return;
        }
        let i = ((y as u32 * WIDTH + x as u32) * 3) as usize;
        self.px[i..i + 3].copy_from_slice(&c);
    }

    fn rect(&mut self, x0: u32, y0: u32, x1: u32, y1: u32, c: [u8; 3]) {
        for y in y0..y1 {
            for x in x0..x1 {
                self.set(x as i64, y as i64, c);
            }
        }
    }

    /// A line `thick` pixels wide (Bresenham with a square pen).
    fn line(&mut self, (x0, y0): (u32, u32), (x1, y1): (u32, u32), thick: i64, c: [u8; 3]) {
        let (mut x, mut y) = (x0 as i64, y0 as i64);
        let (x1, y1) = (x1 as i64, y1 as i64);
        let dx = (x1 - x).abs();
        let dy = -(y1 - y).abs();
        let sx = if x < x1 { 1 } else { -1 };
        let sy = if y < y1 { 1 } else { -1 };
        let mut err = dx + dy;
        let r = thick / 2;
        loop {
            for oy in -r..=r {
                for ox in -r..=r {
                    self.set(x + ox, y + oy, c);
                }
            }
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }
}

/// Draws the chart and encodes it as an 8-bit RGB PNG of [`WIDTH`] × [`HEIGHT`].
pub fn render(days: &[DayPoint]) -> Result<Vec<u8>, ChartError> {
    let l = layout(days);
    let mut c = Canvas::new();
    for q in 1..=4 {
        let y = l.baseline - l.plot_height * q / 4;
        c.rect(MARGIN, y, WIDTH - MARGIN, y + 1, GRID);
    }
    for &(left, w, top) in &l.bars {
        c.rect(left, top, left + w, l.baseline, BAR);
    }
    c.rect(MARGIN, l.baseline, WIDTH - MARGIN, l.baseline + 1, AXIS);
    for pair in l.points.windows(2) {
        if let [Some(a), Some(b)] = pair {
            c.line(*a, *b, 3, LINE);
        }
    }
    for p in l.points.iter().flatten() {
        c.rect(
            p.0.saturating_sub(3),
            p.1.saturating_sub(3),
            p.0 + 4,
            p.1 + 4,
            LINE,
        );
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, WIDTH, HEIGHT);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header()?;
        w.write_image_data(&c.px)?;
        w.finish()?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let dec = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut r = dec.read_info().unwrap();
        let mut buf = vec![0; r.output_buffer_size().unwrap()];
        let info = r.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    fn pixel(px: &[u8], x: u32, y: u32) -> [u8; 3] {
        let i = ((y * WIDTH + x) * 3) as usize;
        [px[i], px[i + 1], px[i + 2]]
    }

    /// Height of the bar-coloured run going up from just above the axis at column `x`.
    fn bar_height(px: &[u8], x: u32, baseline: u32) -> u32 {
        (0..baseline)
            .take_while(|k| pixel(px, x, baseline - 1 - k) == BAR)
            .count() as u32
    }

    #[test]
    fn bars_have_the_heights_of_the_numbers() {
        let days: Vec<DayPoint> = [4u64, 2, 0, 1]
            .iter()
            .enumerate()
            .map(|(i, &n)| DayPoint {
                start_ms: i as i64 * 86_400_000,
                requests: n,
                median_decision_ms: None,
            })
            .collect();
        let png = render(&days).unwrap();
        let (w, h, px) = decode(&png);
        assert_eq!((w, h), (WIDTH, HEIGHT));
        let l = layout(&days);
        let heights: Vec<u32> = l
            .bars
            .iter()
            .map(|&(left, _, _)| bar_height(&px, left + 1, l.baseline))
            .collect();
        assert_eq!(heights[0], l.plot_height);
        assert_eq!(heights, vec![200, 100, 0, 50]);
    }

    #[test]
    fn the_median_line_is_drawn_where_decisions_were_made() {
        let days = [
            DayPoint {
                start_ms: 0,
                requests: 1,
                median_decision_ms: Some(3_600_000),
            },
            DayPoint {
                start_ms: 1,
                requests: 1,
                median_decision_ms: Some(7_200_000),
            },
            DayPoint {
                start_ms: 2,
                requests: 1,
                median_decision_ms: None,
            },
        ];
        let (_, _, px) = decode(&render(&days).unwrap());
        let l = layout(&days);
        let (x0, y0) = l.points[0].unwrap();
        let (x1, y1) = l.points[1].unwrap();
        assert_eq!(l.baseline - y1, l.plot_height);
        assert_eq!(l.baseline - y0, l.plot_height / 2);
        assert_eq!(pixel(&px, x0, y0), LINE);
        assert_eq!(pixel(&px, x1, y1), LINE);
        assert_eq!(pixel(&px, (x0 + x1) / 2, (y0 + y1) / 2), LINE);
        assert_eq!(l.points[2], None);
    }
}
