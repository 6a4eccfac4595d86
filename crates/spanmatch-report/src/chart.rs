//! Axes, ticks, legends and palettes on top of [`Scene`].

use crate::scene::{text_width, Anchor, Rgb, Scene, Shape, DARK, GRID, MID};

/// Okabe–Ito colour-blind-safe palette without yellow (too pale on white) and black (reserved).
pub const OKABE_ITO: [Rgb; 6] = [
    Rgb(0, 114, 178),   // blue
    Rgb(230, 159, 0),   // orange
    Rgb(0, 158, 115),   // bluish green
    Rgb(213, 94, 0),    // vermillion
    Rgb(204, 121, 167), // reddish purple
    Rgb(86, 180, 233),  // sky blue
];

/// Marker shapes cycled alongside [`OKABE_ITO`].
pub const SHAPES: [Shape; 5] = [
    Shape::Circle,
    Shape::Square,
    Shape::TriangleUp,
    Shape::Diamond,
    Shape::TriangleDown,
];

/// Colour `i` of the categorical palette (cycling).
pub fn category(i: usize) -> Rgb {
    OKABE_ITO[i % OKABE_ITO.len()]
}

/// Viridis at `t` in [0, 1] (perceptually uniform, colour-blind safe).
pub fn viridis(t: f64) -> Rgb {
    const STOPS: [(u8, u8, u8); 11] = [
        (68, 1, 84),
        (72, 36, 117),
        (65, 68, 135),
        (53, 95, 141),
        (42, 120, 142),
        (33, 145, 140),
        (34, 168, 132),
        (68, 191, 112),
        (122, 209, 81),
        (189, 223, 38),
        (253, 231, 37),
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let f = t * (STOPS.len() - 1) as f64;
    let i = (f.floor() as usize).min(STOPS.len() - 2);
    let u = f - i as f64;
    let lerp = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * u).round() as u8;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    Rgb(lerp(a.0, b.0), lerp(a.1, b.1), lerp(a.2, b.2))
}

/// `n` colours for ordered categories (e.g. layers by depth): viridis from dark to yellow-green,
/// stopping before the pale yellow end.
pub fn sequential(i: usize, n: usize) -> Rgb {
    if n <= 1 {
        return viridis(0.35);
    }
    viridis(0.88 * i as f64 / (n - 1) as f64)
}

/// "Nice" tick positions covering [lo, hi], about `target` of them.
pub fn nice_ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo {
        return vec![lo];
    }
    let raw = (hi - lo) / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let step = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 2.5 {
        2.5
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    } * mag;
    let start = (lo / step).ceil() as i64;
    let end = (hi / step + 1e-9).floor() as i64;
    (start..=end).map(|k| k as f64 * step).collect()
}

/// Formats a tick value with just enough decimals for the step between ticks.
pub fn tick_label(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 || !step.is_finite() || step <= 0.0 {
        0
    } else {
        let d = (-step.log10() - 1e-9).ceil().max(0.0) as i32;
        let scaled = step * 10f64.powi(d);
        (d + i32::from((scaled - scaled.round()).abs() > 1e-6)) as usize
    };
    let s = format!("{v:.decimals$}");
    if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') {
        s[1..].to_string()
    } else {
        s
    }
}

/// A rectangular plot area with linear data ranges on both axes.
#[derive(Debug, Clone, Copy)]
pub struct Axes {
    /// Left edge of the plot area, px.
    pub left: f64,
    /// Top edge, px.
    pub top: f64,
    /// Width, px.
    pub width: f64,
    /// Height, px.
    pub height: f64,
    /// Data range on x.
    pub x: (f64, f64),
    /// Data range on y.
    pub y: (f64, f64),
}

impl Axes {
    /// Pixel x of data x.
    pub fn px(&self, x: f64) -> f64 {
        self.left + (x - self.x.0) / (self.x.1 - self.x.0) * self.width
    }
    /// Pixel y of data y.
    pub fn py(&self, y: f64) -> f64 {
        self.top + self.height - (y - self.y.0) / (self.y.1 - self.y.0) * self.height
    }
    /// Bottom edge, px.
    pub fn bottom(&self) -> f64 {
        self.top + self.height
    }
    /// Right edge, px.
    pub fn right(&self) -> f64 {
        self.left + self.width
    }

    /// Horizontal grid lines and y tick labels at `ticks` (data values with labels).
    pub fn y_axis(&self, scene: &mut Scene, ticks: &[(f64, String)], font: f64) {
        for (v, label) in ticks {
            let y = self.py(*v);
            scene.line(vec![(self.left, y), (self.right(), y)], GRID, 1.0, None);
            scene.line(vec![(self.left - 4.0, y), (self.left, y)], DARK, 1.0, None);
            scene.text(
                self.left - 7.0,
                y + font * 0.35,
                label,
                font,
                Anchor::End,
                DARK,
            );
        }
    }

    /// X tick marks and labels; labels are rotated 40° when they would overlap.
    /// Returns the height the labels take below the axis.
    pub fn x_axis(&self, scene: &mut Scene, ticks: &[(f64, String)], font: f64) -> f64 {
        let spacing = if ticks.len() > 1 {
            (self.px(ticks[1].0) - self.px(ticks[0].0)).abs()
        } else {
            self.width
        };
        let widest = ticks
            .iter()
            .map(|(_, l)| text_width(l, font))
            .fold(0.0, f64::max);
        let rotate = widest > spacing * 0.92;
        let y = self.bottom();
        for (v, label) in ticks {
            let x = self.px(*v);
            scene.line(vec![(x, y), (x, y + 4.0)], DARK, 1.0, None);
            if rotate {
                scene.text_full(
                    x + 3.0,
                    y + 10.0,
                    label,
                    font,
                    Anchor::End,
                    -40.0,
                    false,
                    DARK,
                );
            } else {
                scene.text(x, y + 7.0 + font, label, font, Anchor::Middle, DARK);
            }
        }
        if rotate {
            widest * 0.643 + font * 0.77 + 12.0
        } else {
            font + 10.0
        }
    }

    /// The left and bottom axis lines.
    pub fn frame(&self, scene: &mut Scene) {
        scene.line(
            vec![
                (self.left, self.top),
                (self.left, self.bottom()),
                (self.right(), self.bottom()),
            ],
            DARK,
            1.0,
            None,
        );
    }
}

/// How a legend entry is drawn.
#[derive(Debug, Clone)]
pub enum Key {
    /// A line sample with an optional marker (shape, filled).
    Line {
        color: Rgb,
        width: f64,
        dash: Option<Vec<f64>>,
        marker: Option<(Shape, bool)>,
    },
    /// A filled swatch.
    Swatch { color: Rgb, opacity: f64 },
    /// A heading without a sample.
    Heading,
}

/// Draws a legend with its top-left corner at (x, y); returns its (width, height).
pub fn legend(
    scene: &mut Scene,
    x: f64,
    y: f64,
    entries: &[(Key, String)],
    font: f64,
) -> (f64, f64) {
    let row = font * 1.55;
    let sample = 30.0;
    let mut yy = y + row * 0.5;
    let mut widest: f64 = 0.0;
    for (key, label) in entries {
        match key {
            Key::Line {
                color,
                width,
                dash,
                marker,
            } => {
                scene.line(
                    vec![(x, yy), (x + sample, yy)],
                    *color,
                    *width,
                    dash.as_deref(),
                );
                if let Some((shape, filled)) = marker {
                    scene.marker(
                        x + sample / 2.0,
                        yy,
                        *shape,
                        7.0,
                        filled.then_some(*color),
                        *color,
                    );
                }
            }
            Key::Swatch { color, opacity } => {
                scene.polygon(
                    vec![
                        (x, yy - font * 0.45),
                        (x + sample, yy - font * 0.45),
                        (x + sample, yy + font * 0.45),
                        (x, yy + font * 0.45),
                    ],
                    *color,
                    *opacity,
                );
            }
            Key::Heading => {}
        }
        let (tx, color, bold) = match key {
            Key::Heading => (x, DARK, true),
            _ => (x + sample + 8.0, DARK, false),
        };
        scene.text_full(
            tx,
            yy + font * 0.35,
            label,
            font,
            Anchor::Start,
            0.0,
            bold,
            color,
        );
        widest = widest.max(tx - x + text_width(label, font));
        yy += row;
    }
    (widest, row * entries.len() as f64)
}

/// A title (bold) and a subtitle (grey) at the top left.
pub fn titles(scene: &mut Scene, x: f64, title: &str, subtitle: &str) {
    scene.text_full(x, 22.0, title, 15.0, Anchor::Start, 0.0, true, DARK);
    if !subtitle.is_empty() {
        scene.text(x, 40.0, subtitle, 11.5, Anchor::Start, MID);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_interval_ticks() {
        let t = nice_ticks(0.0, 1.0, 5);
        assert_eq!(t.len(), 6);
        assert!((t[1] - 0.2).abs() < 1e-12);
        let labels: Vec<String> = t.iter().map(|v| tick_label(*v, 0.2)).collect();
        assert_eq!(labels, ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
        assert_eq!(tick_label(0.25, 0.25), "0.25");
        assert_eq!(tick_label(40.0, 20.0), "40");
    }

    #[test]
    fn count_ticks() {
        let t = nice_ticks(0.0, 37.0, 5);
        assert_eq!(t, vec![0.0, 10.0, 20.0, 30.0]);
        assert_eq!(nice_ticks(1.0, 1.0, 5), vec![1.0]);
    }

    #[test]
    fn viridis_ends() {
        assert_eq!(viridis(0.0), Rgb(68, 1, 84));
        assert_eq!(viridis(1.0), Rgb(253, 231, 37));
        assert_eq!(viridis(f64::NAN), Rgb(68, 1, 84));
    }
}
