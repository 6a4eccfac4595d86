//! PNG export of a [`Scene`]: anti-aliased rasterisation with tiny-skia, text from a TrueType
//! font found on the system at run time.

use std::path::{Path, PathBuf};

use ab_glyph::{Font, FontVec, OutlineCurve};
use anyhow::Context;
use tiny_skia::{
    Color, FillRule, LineCap, LineJoin, Paint, PathBuilder, Pixmap, Stroke, StrokeDash, Transform,
};

use crate::scene::{marker_polygon, Anchor, Item, Rgb, Scene, Shape, WHITE};

/// A regular and (when found) a bold face for PNG text.
pub struct Fonts {
    regular: FontVec,
    bold: Option<FontVec>,
    /// The file the regular face was read from.
    pub path: PathBuf,
}

/// File names tried, in order of preference: (regular, bold).
const CANDIDATES: [(&str, &str); 7] = [
    ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf"),
    ("LiberationSans-Regular.ttf", "LiberationSans-Bold.ttf"),
    ("NotoSans-Regular.ttf", "NotoSans-Bold.ttf"),
    ("FreeSans.ttf", "FreeSansBold.ttf"),
    ("Arial.ttf", "Arial Bold.ttf"),
    ("arial.ttf", "arialbd.ttf"),
    ("Verdana.ttf", "Verdana Bold.ttf"),
];

fn font_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![
        PathBuf::from("/usr/share/fonts"),
        PathBuf::from("/usr/local/share/fonts"),
        PathBuf::from("/usr/X11R6/lib/X11/fonts"),
        PathBuf::from("/Library/Fonts"),
        PathBuf::from("/System/Library/Fonts"),
        PathBuf::from("C:\\Windows\\Fonts"),
    ];
    if let Some(home) = std::env::var_os("HOME") {
        let home = PathBuf::from(home);
        dirs.push(home.join(".local/share/fonts"));
        dirs.push(home.join(".fonts"));
        dirs.push(home.join("Library/Fonts"));
    }
    dirs
}

/// Finds `name` under `dir`, at most `depth` levels down, visiting entries in sorted order.
fn find_file(dir: &Path, name: &str, depth: usize) -> Option<PathBuf> {
    let direct = dir.join(name);
    if direct.is_file() {
        return Some(direct);
    }
    if depth == 0 {
        return None;
    }
    let mut subdirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    subdirs.sort();
    subdirs.iter().find_map(|d| find_file(d, name, depth - 1))
}

fn load(path: &Path) -> Option<FontVec> {
    let data = std::fs::read(path).ok()?;
    FontVec::try_from_vec(data).ok()
}

impl Fonts {
    /// The first usable font: `$SPANMATCH_FONT` (a .ttf/.otf path) if set, else a common sans
    /// font from the standard font directories. `None` when there is none.
    pub fn discover() -> Option<Fonts> {
        if let Some(p) = std::env::var_os("SPANMATCH_FONT") {
            let path = PathBuf::from(p);
            if let Some(regular) = load(&path) {
                return Some(Fonts {
                    regular,
                    bold: None,
                    path,
                });
            }
        }
        let dirs = font_dirs();
        for (reg, bold) in CANDIDATES {
            for dir in &dirs {
                if let Some(path) = find_file(dir, reg, 4) {
                    if let Some(regular) = load(&path) {
                        let bold = path.parent().map(|d| d.join(bold)).and_then(|b| load(&b));
                        return Some(Fonts {
                            regular,
                            bold,
                            path,
                        });
                    }
                }
            }
        }
        None
    }

    fn face(&self, bold: bool) -> &FontVec {
        if bold {
            self.bold.as_ref().unwrap_or(&self.regular)
        } else {
            &self.regular
        }
    }
}

fn color(c: Rgb, alpha: f64) -> Color {
    Color::from_rgba8(c.0, c.1, c.2, (alpha.clamp(0.0, 1.0) * 255.0).round() as u8)
}

fn paint(c: Rgb, alpha: f64) -> Paint<'static> {
    let mut p = Paint::default();
    p.set_color(color(c, alpha));
    p.anti_alias = true;
    p
}

fn poly_path(points: &[(f64, f64)], close: bool) -> Option<tiny_skia::Path> {
    let mut pb = PathBuilder::new();
    let (first, rest) = points.split_first()?;
    pb.move_to(first.0 as f32, first.1 as f32);
    for p in rest {
        pb.line_to(p.0 as f32, p.1 as f32);
    }
    if close {
        pb.close();
    }
    pb.finish()
}

/// Adds the outline of `text` to a path, in font units with y up, starting at the origin;
/// returns the advance width in font units.
fn text_path(font: &FontVec, text: &str, pb: &mut PathBuilder) -> f32 {
    let mut x = 0.0f32;
    let mut prev = None;
    for ch in text.chars() {
        let id = font.glyph_id(ch);
        if let Some(p) = prev {
            x += font.kern_unscaled(p, id);
        }
        if let Some(outline) = font.outline(id) {
            let mut last: Option<(f32, f32)> = None;
            for curve in &outline.curves {
                let start = match curve {
                    OutlineCurve::Line(a, _)
                    | OutlineCurve::Quad(a, _, _)
                    | OutlineCurve::Cubic(a, _, _, _) => *a,
                };
                let s = (start.x + x, start.y);
                if last.is_none_or(|l| (l.0 - s.0).abs() > 1e-3 || (l.1 - s.1).abs() > 1e-3) {
                    if last.is_some() {
                        pb.close();
                    }
                    pb.move_to(s.0, s.1);
                }
                let end = match curve {
                    OutlineCurve::Line(_, b) => {
                        pb.line_to(b.x + x, b.y);
                        *b
                    }
                    OutlineCurve::Quad(_, c, b) => {
                        pb.quad_to(c.x + x, c.y, b.x + x, b.y);
                        *b
                    }
                    OutlineCurve::Cubic(_, c1, c2, b) => {
                        pb.cubic_to(c1.x + x, c1.y, c2.x + x, c2.y, b.x + x, b.y);
                        *b
                    }
                };
                last = Some((end.x + x, end.y));
            }
            if last.is_some() {
                pb.close();
            }
        }
        x += font.h_advance_unscaled(id);
        prev = Some(id);
    }
    x
}

/// Renders `scene` to PNG bytes at `scale` device pixels per CSS pixel.
pub fn to_png(scene: &Scene, fonts: &Fonts, scale: f32) -> anyhow::Result<Vec<u8>> {
    let w = (scene.width as f32 * scale).ceil().max(1.0) as u32;
    let h = (scene.height as f32 * scale).ceil().max(1.0) as u32;
    let mut pm = Pixmap::new(w, h).context("cannot allocate the PNG canvas")?;
    pm.fill(color(WHITE, 1.0));
    let base = Transform::from_scale(scale, scale);
    for item in &scene.items {
        match item {
            Item::Line {
                points,
                color: c,
                width,
                dash,
            } => {
                let Some(path) = poly_path(points, false) else {
                    continue;
                };
                let stroke = Stroke {
                    width: *width as f32,
                    line_cap: if dash.is_some() {
                        LineCap::Butt
                    } else {
                        LineCap::Round
                    },
                    line_join: LineJoin::Round,
                    dash: dash
                        .as_ref()
                        .and_then(|d| StrokeDash::new(d.iter().map(|v| *v as f32).collect(), 0.0)),
                    ..Stroke::default()
                };
                pm.stroke_path(&path, &paint(*c, 1.0), &stroke, base, None);
            }
            Item::Polygon {
                points,
                fill,
                opacity,
            } => {
                if let Some(path) = poly_path(points, true) {
                    pm.fill_path(
                        &path,
                        &paint(*fill, *opacity),
                        FillRule::Winding,
                        base,
                        None,
                    );
                }
            }
            Item::Rect {
                x,
                y,
                w,
                h,
                fill,
                stroke,
            } => {
                let pts = [(*x, *y), (x + w, *y), (x + w, y + h), (*x, y + h)];
                let Some(path) = poly_path(&pts, true) else {
                    continue;
                };
                if let Some(f) = fill {
                    pm.fill_path(&path, &paint(*f, 1.0), FillRule::Winding, base, None);
                }
                if let Some((c, sw)) = stroke {
                    let st = Stroke {
                        width: *sw as f32,
                        ..Stroke::default()
                    };
                    pm.stroke_path(&path, &paint(*c, 1.0), &st, base, None);
                }
            }
            Item::Marker {
                x,
                y,
                shape,
                size,
                fill,
                stroke,
            } => {
                let path = if *shape == Shape::Circle {
                    PathBuilder::from_circle(*x as f32, *y as f32, (*size / 2.0) as f32)
                } else {
                    poly_path(&marker_polygon(*shape, *x, *y, *size), true)
                };
                let Some(path) = path else { continue };
                pm.fill_path(
                    &path,
                    &paint(fill.unwrap_or(WHITE), 1.0),
                    FillRule::Winding,
                    base,
                    None,
                );
                let st = Stroke {
                    width: 1.2,
                    line_join: LineJoin::Round,
                    ..Stroke::default()
                };
                pm.stroke_path(&path, &paint(*stroke, 1.0), &st, base, None);
            }
            Item::Text {
                x,
                y,
                text,
                size,
                anchor,
                rotate,
                bold,
                color: c,
            } => {
                let font = fonts.face(*bold);
                let upem = font.units_per_em().unwrap_or(1000.0);
                let mut pb = PathBuilder::new();
                let advance = text_path(font, text, &mut pb);
                let Some(path) = pb.finish() else { continue };
                let k = *size as f32 / upem;
                let dx = match anchor {
                    Anchor::Start => 0.0,
                    Anchor::Middle => -advance * k / 2.0,
                    Anchor::End => -advance * k,
                };
                // font units (y up) -> text-local px -> rotate about the anchor -> canvas.
                let t = Transform::from_row(k, 0.0, 0.0, -k, dx, 0.0)
                    .post_rotate(*rotate as f32)
                    .post_translate(*x as f32, *y as f32)
                    .post_scale(scale, scale);
                pm.fill_path(&path, &paint(*c, 1.0), FillRule::Winding, t, None);
            }
        }
    }
    pm.encode_png().context("cannot encode PNG")
}
