//! A small vector scene (lines, polygons, markers, text) drawn once and written twice: as inline
//! SVG for the HTML report and as a PNG through the rasteriser.

use std::fmt::Write as _;

/// An sRGB colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    /// `#rrggbb`.
    pub fn hex(self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.0, self.1, self.2)
    }
}

/// Black.
pub const BLACK: Rgb = Rgb(0, 0, 0);
/// White.
pub const WHITE: Rgb = Rgb(255, 255, 255);
/// Text and axis grey.
pub const DARK: Rgb = Rgb(51, 51, 51);
/// Secondary text grey.
pub const MID: Rgb = Rgb(110, 110, 110);
/// Grid line grey.
pub const GRID: Rgb = Rgb(226, 226, 226);

/// Horizontal alignment of a text item relative to its anchor point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// The text starts at the point.
    Start,
    /// The text is centred on the point.
    Middle,
    /// The text ends at the point.
    End,
}

/// Marker shapes, so that series differ by more than colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Filled circle.
    Circle,
    /// Square.
    Square,
    /// Triangle pointing up.
    TriangleUp,
    /// Diamond.
    Diamond,
    /// Triangle pointing down.
    TriangleDown,
}

/// One drawing primitive. Coordinates are CSS pixels, y down.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// An open polyline.
    Line {
        points: Vec<(f64, f64)>,
        color: Rgb,
        width: f64,
        dash: Option<Vec<f64>>,
    },
    /// A closed filled polygon.
    Polygon {
        points: Vec<(f64, f64)>,
        fill: Rgb,
        opacity: f64,
    },
    /// An axis-aligned rectangle, filled and/or stroked.
    Rect {
        x: f64,
        y: f64,
        w: f64,
        h: f64,
        fill: Option<Rgb>,
        stroke: Option<(Rgb, f64)>,
    },
    /// A marker centred on a point; `fill: None` draws it hollow (white inside).
    Marker {
        x: f64,
        y: f64,
        shape: Shape,
        size: f64,
        fill: Option<Rgb>,
        stroke: Rgb,
    },
    /// Text; `y` is the baseline; `rotate` in degrees about (x, y), clockwise.
    Text {
        x: f64,
        y: f64,
        text: String,
        size: f64,
        anchor: Anchor,
        rotate: f64,
        bold: bool,
        color: Rgb,
    },
}

/// A figure: a fixed-size canvas with a list of items drawn in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    /// Width in CSS pixels.
    pub width: f64,
    /// Height in CSS pixels.
    pub height: f64,
    /// Accessible title (SVG `<title>`).
    pub title: String,
    /// The items, back to front.
    pub items: Vec<Item>,
}

impl Scene {
    /// An empty scene.
    pub fn new(width: f64, height: f64, title: &str) -> Self {
        Scene {
            width,
            height,
            title: title.to_string(),
            items: Vec::new(),
        }
    }

    /// Adds a polyline.
    pub fn line(&mut self, points: Vec<(f64, f64)>, color: Rgb, width: f64, dash: Option<&[f64]>) {
        if points.len() >= 2 {
            self.items.push(Item::Line {
                points,
                color,
                width,
                dash: dash.map(|d| d.to_vec()),
            });
        }
    }

    /// Adds a filled polygon.
    pub fn polygon(&mut self, points: Vec<(f64, f64)>, fill: Rgb, opacity: f64) {
        if points.len() >= 3 {
            self.items.push(Item::Polygon {
                points,
                fill,
                opacity,
            });
        }
    }

    /// Adds a rectangle.
    pub fn rect(
        &mut self,
        x: f64,
        y: f64,
        w: f64,
        h: f64,
        fill: Option<Rgb>,
        stroke: Option<(Rgb, f64)>,
    ) {
        self.items.push(Item::Rect {
            x,
            y,
            w,
            h,
            fill,
            stroke,
        });
    }

    /// Adds a marker.
    pub fn marker(
        &mut self,
        x: f64,
        y: f64,
        shape: Shape,
        size: f64,
        fill: Option<Rgb>,
        stroke: Rgb,
    ) {
        self.items.push(Item::Marker {
            x,
            y,
            shape,
            size,
            fill,
            stroke,
        });
    }

    /// Adds a regular-weight text item.
    pub fn text(&mut self, x: f64, y: f64, text: &str, size: f64, anchor: Anchor, color: Rgb) {
        self.items.push(Item::Text {
            x,
            y,
            text: text.to_string(),
            size,
            anchor,
            rotate: 0.0,
            bold: false,
            color,
        });
    }

    /// Adds a text item with every option.
    #[allow(clippy::too_many_arguments)]
    pub fn text_full(
        &mut self,
        x: f64,
        y: f64,
        text: &str,
        size: f64,
        anchor: Anchor,
        rotate: f64,
        bold: bool,
        color: Rgb,
    ) {
        self.items.push(Item::Text {
            x,
            y,
            text: text.to_string(),
            size,
            anchor,
            rotate,
            bold,
            color,
        });
    }

    /// The scene as a standalone `<svg>` element (no XML prolog), deterministic.
    pub fn to_svg(&self) -> String {
        let mut s = String::new();
        let _ = write!(
            s,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" font-family=\"{FONT_STACK}\">\n<title>{t}</title>\n<rect x=\"0\" y=\"0\" width=\"{w}\" height=\"{h}\" fill=\"#ffffff\"/>\n",
            w = num(self.width),
            h = num(self.height),
            t = escape(&self.title),
        );
        for item in &self.items {
            write_item(&mut s, item);
        }
        s.push_str("</svg>");
        s
    }
}

/// The font family list used in SVG text.
pub const FONT_STACK: &str = "DejaVu Sans, Verdana, Helvetica, Arial, sans-serif";

fn write_item(s: &mut String, item: &Item) {
    match item {
        Item::Line {
            points,
            color,
            width,
            dash,
        } => {
            let _ = write!(
                s,
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"{}\" stroke-linejoin=\"round\" stroke-linecap=\"round\"",
                pts(points),
                color.hex(),
                num(*width)
            );
            if let Some(d) = dash {
                let d: Vec<String> = d.iter().map(|v| num(*v)).collect();
                let _ = write!(s, " stroke-dasharray=\"{}\"", d.join(" "));
            }
            s.push_str("/>\n");
        }
        Item::Polygon {
            points,
            fill,
            opacity,
        } => {
            let _ = writeln!(
                s,
                "<polygon points=\"{}\" fill=\"{}\" fill-opacity=\"{}\" stroke=\"none\"/>",
                pts(points),
                fill.hex(),
                num(*opacity)
            );
        }
        Item::Rect {
            x,
            y,
            w,
            h,
            fill,
            stroke,
        } => {
            let _ = write!(
                s,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"",
                num(*x),
                num(*y),
                num(*w),
                num(*h),
                fill.map_or_else(|| "none".to_string(), |c| c.hex())
            );
            if let Some((c, sw)) = stroke {
                let _ = write!(s, " stroke=\"{}\" stroke-width=\"{}\"", c.hex(), num(*sw));
            }
            s.push_str("/>\n");
        }
        Item::Marker {
            x,
            y,
            shape,
            size,
            fill,
            stroke,
        } => {
            let fill = fill.unwrap_or(WHITE).hex();
            let stroke = stroke.hex();
            match shape {
                Shape::Circle => {
                    let _ = writeln!(
                        s,
                        "<circle cx=\"{}\" cy=\"{}\" r=\"{}\" fill=\"{fill}\" stroke=\"{stroke}\" stroke-width=\"1.2\"/>",
                        num(*x),
                        num(*y),
                        num(size / 2.0)
                    );
                }
                _ => {
                    let _ = writeln!(
                        s,
                        "<polygon points=\"{}\" fill=\"{fill}\" stroke=\"{stroke}\" stroke-width=\"1.2\" stroke-linejoin=\"round\"/>",
                        pts(&marker_polygon(*shape, *x, *y, *size))
                    );
                }
            }
        }
        Item::Text {
            x,
            y,
            text,
            size,
            anchor,
            rotate,
            bold,
            color,
        } => {
            let a = match anchor {
                Anchor::Start => "start",
                Anchor::Middle => "middle",
                Anchor::End => "end",
            };
            let _ = write!(
                s,
                "<text x=\"{}\" y=\"{}\" font-size=\"{}\" text-anchor=\"{a}\" fill=\"{}\"",
                num(*x),
                num(*y),
                num(*size),
                color.hex()
            );
            if *bold {
                s.push_str(" font-weight=\"bold\"");
            }
            if *rotate != 0.0 {
                let _ = write!(
                    s,
                    " transform=\"rotate({} {} {})\"",
                    num(*rotate),
                    num(*x),
                    num(*y)
                );
            }
            let _ = writeln!(s, ">{}</text>", escape(text));
        }
    }
}

/// The vertices of a non-circular marker of the given overall size centred on (x, y).
pub fn marker_polygon(shape: Shape, x: f64, y: f64, size: f64) -> Vec<(f64, f64)> {
    let r = size / 2.0;
    match shape {
        Shape::Circle => {
            // 24-gon approximation (only used where a polygon is required).
            (0..24)
                .map(|i| {
                    let t = i as f64 * std::f64::consts::TAU / 24.0;
                    (x + r * t.cos(), y + r * t.sin())
                })
                .collect()
        }
        Shape::Square => {
            let r = r * 0.88;
            vec![
                (x - r, y - r),
                (x + r, y - r),
                (x + r, y + r),
                (x - r, y + r),
            ]
        }
        Shape::TriangleUp => {
            let r = r * 1.15;
            vec![
                (x, y - r),
                (x + r * 0.866, y + r * 0.5),
                (x - r * 0.866, y + r * 0.5),
            ]
        }
        Shape::TriangleDown => {
            let r = r * 1.15;
            vec![
                (x, y + r),
                (x - r * 0.866, y - r * 0.5),
                (x + r * 0.866, y - r * 0.5),
            ]
        }
        Shape::Diamond => {
            let r = r * 1.2;
            vec![(x, y - r), (x + r, y), (x, y + r), (x - r, y)]
        }
    }
}

/// A coordinate with two decimals, without a negative zero and without trailing zeros.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return "0".to_string();
    }
    let r = (v * 100.0).round() / 100.0;
    let r = if r == 0.0 { 0.0 } else { r };
    let mut t = format!("{r:.2}");
    while t.ends_with('0') {
        t.pop();
    }
    if t.ends_with('.') {
        t.pop();
    }
    t
}

fn pts(points: &[(f64, f64)]) -> String {
    let v: Vec<String> = points
        .iter()
        .map(|(x, y)| format!("{},{}", num(*x), num(*y)))
        .collect();
    v.join(" ")
}

/// Escapes text for XML/HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Estimated width in pixels of `text` at font size `size` in DejaVu Sans (the widest of the
/// usual sans fonts, so layouts leave enough room in the others).
pub fn text_width(text: &str, size: f64) -> f64 {
    let em: f64 = text
        .chars()
        .map(|c| match c {
            'i' | 'l' | 'j' | '.' | ',' | ':' | ';' | '\'' | '|' | '!' | 'I' => 0.29,
            'f' | 't' | 'r' | '(' | ')' | '[' | ']' | ' ' | '-' | '/' => 0.38,
            '0'..='9' => 0.64,
            'm' | 'w' | 'M' | 'W' | '—' | '%' => 0.92,
            'A'..='Z' => 0.70,
            _ => 0.60,
        })
        .sum();
    em * size
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_compact_and_never_negative_zero() {
        assert_eq!(num(1.0), "1");
        assert_eq!(num(1.5), "1.5");
        assert_eq!(num(-0.001), "0");
        assert_eq!(num(2.345), "2.35");
        assert_eq!(num(f64::NAN), "0");
    }

    #[test]
    fn text_is_escaped() {
        let mut s = Scene::new(10.0, 10.0, "a<b & \"c\"");
        s.text(1.0, 2.0, "x < y", 10.0, Anchor::Middle, BLACK);
        let svg = s.to_svg();
        assert!(svg.contains("<title>a&lt;b &amp; &quot;c&quot;</title>"));
        assert!(svg.contains(">x &lt; y</text>"));
        assert_eq!(svg.matches("<svg").count(), 1);
        assert!(svg.ends_with("</svg>"));
    }

    #[test]
    fn degenerate_primitives_are_dropped() {
        let mut s = Scene::new(10.0, 10.0, "t");
        s.line(vec![(0.0, 0.0)], BLACK, 1.0, None);
        s.polygon(vec![(0.0, 0.0), (1.0, 1.0)], BLACK, 0.5);
        assert!(s.items.is_empty());
    }
}
