//! The game's pictures: inline SVG drawn for this project, one per item and
//! upgrade level, plus a "not owned" outline and a coin.
//!
//! Each picture is a string of SVG markup built from the item and level alone
//! (never from player input), so the view can set it as `inner_html`: a few
//! hundred bytes of text per picture cost far less wasm than one element per
//! shape would. Nothing is fetched and nothing depends on the device's fonts.
//!
//! How a level shows: the metal changes (iron, bronze, steel, gold, starlit),
//! one pip per level under the picture, and each item gains a feature at
//! levels 2, 3 and 4 (a gem, a rim, a bridle, ...) and a glow at level 5.

use shared::Item;

/// The metal of each level (1..=5): iron, bronze, steel, gold, starlit.
const METAL: [&str; 5] = ["#8d939c", "#c07a3a", "#cfd8e3", "#f2c200", "#7fe3ff"];
/// A darker shade of each metal for edges and shadows.
const SHADE: [&str; 5] = ["#5c6169", "#7e4a1e", "#8a97a8", "#a87f00", "#2a9cc4"];
const WOOD: &str = "#8a5a2b";
const LEATHER: &str = "#5a3418";
const RUBY: &str = "#d6203a";

/// The picture of `item` at `level` (0 = not owned: a dashed outline).
pub fn item_svg(item: Item, level: u8) -> String {
    let level = level.min(shared::rules::MAX_LEVEL);
    let body = match item {
        Item::Sword => sword(level),
        Item::Shield => shield(level),
        Item::Horse => horse(level),
        Item::Knife => knife(level),
    };
    frame(level, &body)
}

/// A gold coin, for gold and for the visit button.
pub fn coin_svg() -> String {
    format!(
        r#"<svg class="art coin" viewBox="0 0 48 48" aria-hidden="true" focusable="false"><circle cx="24" cy="24" r="18" fill="{}" stroke="{}" stroke-width="3"/><circle cx="24" cy="24" r="11" fill="none" stroke="{}" stroke-width="2"/><path d="M24 17v14M20 20h6a3 3 0 010 6h-4a3 3 0 000 6h6" fill="none" stroke="{}" stroke-width="2"/></svg>"#,
        METAL[3], SHADE[3], SHADE[3], SHADE[3]
    )
}

/// Wraps a drawing: the `svg` element, the glow of level 5, the level pips,
/// and the dashed look of an item not owned.
fn frame(level: u8, body: &str) -> String {
    let mut s = String::with_capacity(1024);
    s.push_str(&format!(
        r#"<svg class="art lv{level}" viewBox="0 0 48 56" aria-hidden="true" focusable="false" data-level="{level}">"#
    ));
    if level == 0 {
        s.push_str(r#"<g fill="none" stroke="currentColor" stroke-width="1.6" stroke-dasharray="3 2" opacity=".75">"#);
        s.push_str(body);
        s.push_str("</g>");
    } else {
        if level == 5 {
            s.push_str(
                r##"<circle class="glow" cx="24" cy="26" r="22" fill="#7fe3ff" opacity=".28"/>"##,
            );
        }
        s.push_str(r#"<g stroke="currentColor" stroke-width="1.4" stroke-linejoin="round">"#);
        s.push_str(body);
        s.push_str("</g>");
        let m = METAL[usize::from(level) - 1];
        let first = 24 - 4 * (i32::from(level) - 1);
        for i in 0..i32::from(level) {
            s.push_str(&format!(
                r#"<circle cx="{}" cy="52" r="2.6" fill="{m}" stroke="currentColor" stroke-width="1"/>"#,
                first + 8 * i
            ));
        }
    }
    s.push_str("</svg>");
    s
}

/// The fill of a part: its colour when owned, nothing in the outline.
fn fill(level: u8, colour: &str) -> &str {
    if level == 0 {
        "none"
    } else {
        colour
    }
}

fn metal(level: u8) -> (&'static str, &'static str) {
    let i = usize::from(level.clamp(1, 5)) - 1;
    (METAL[i], SHADE[i])
}

fn sword(level: u8) -> String {
    let (m, d) = metal(level);
    // The blade grows a little with each level.
    let tip = 8 - i32::from(level.saturating_sub(1));
    let guard = if level >= 2 { m } else { WOOD };
    let mut s = format!(
        r#"<path d="M21 33V{b}L24 {tip}L27 {b}V33Z" fill="{}"/><path d="M24 {t2}V32" fill="none" stroke="{}"/><rect x="14" y="32" width="20" height="4" rx="2" fill="{}"/><rect x="22" y="36" width="4" height="7" fill="{}"/><circle cx="24" cy="45" r="2.6" fill="{}"/>"#,
        fill(level, m),
        if level == 0 { "currentColor" } else { d },
        fill(level, guard),
        fill(level, LEATHER),
        fill(level, guard),
        b = tip + 5,
        t2 = tip + 4,
    );
    if level >= 3 {
        s.push_str(&format!(r#"<circle cx="24" cy="34" r="2" fill="{RUBY}"/>"#));
    }
    if level >= 4 {
        s.push_str(&format!(
            r#"<path d="M14 34l-3 3M34 34l3 3" fill="none" stroke="{d}" stroke-width="2"/>"#
        ));
    }
    s
}

fn shield(level: u8) -> String {
    let (m, d) = metal(level);
    let face = if level >= 3 { "#2d5fa8" } else { WOOD };
    let outline = "M10 6H38V22C38 33 31 40 24 45C17 40 10 33 10 22Z";
    let mut s = format!(r#"<path d="{outline}" fill="{}"/>"#, fill(level, face));
    if level == 0 || level == 1 {
        // Planks.
        s.push_str(r#"<path d="M19 6V42M29 6V42" fill="none"/>"#);
    }
    if level >= 2 {
        s.push_str(&format!(
            r#"<path d="{outline}" fill="none" stroke="{m}" stroke-width="3"/>"#
        ));
    }
    if level >= 3 {
        s.push_str(&format!(
            r#"<path d="M24 10V40M14 20H34" fill="none" stroke="{m}" stroke-width="3"/>"#
        ));
    }
    if level >= 4 {
        s.push_str(&format!(
            r#"<circle cx="24" cy="20" r="4.5" fill="{}" stroke="{d}"/>"#,
            METAL[3]
        ));
    }
    s
}

fn horse(level: u8) -> String {
    let (m, d) = metal(level);
    let coat = match level {
        0 | 1 => "#8b5a2b",
        2 => "#a0522d",
        3 => "#9aa3ad",
        4 => "#f3efe6",
        _ => "#2b2b3a",
    };
    let mut s = format!(
        r#"<path d="M29 5L33 11C38 17 41 27 39 43H21C21 36 24 32 21 29L12 33C8 34 5 31 7 27L17 15C20 10 24 7 29 5Z" fill="{}"/><path d="M29 5C34 12 36 22 35 36" fill="none" stroke="{}" stroke-width="3"/><circle cx="20" cy="19" r="1.8" fill="{}"/>"#,
        fill(level, coat),
        if level == 0 { "currentColor" } else { LEATHER },
        if level == 0 { "currentColor" } else { "#111" },
    );
    if level >= 2 {
        // Bridle.
        s.push_str(&format!(
            r#"<path d="M12 28L22 24L27 16" fill="none" stroke="{d}" stroke-width="2"/>"#
        ));
    }
    if level >= 3 {
        s.push_str(&format!(
            r#"<path d="M22 36H38V43H22Z" fill="{RUBY}"/><path d="M22 36H38" fill="none" stroke="{m}" stroke-width="2"/>"#
        ));
    }
    if level >= 4 {
        // Chanfron: armour on the face.
        s.push_str(&format!(
            r#"<path d="M16 17L25 11L27 16L15 26Z" fill="{m}" stroke="{d}"/>"#
        ));
    }
    if level >= 5 {
        s.push_str(&format!(
            r#"<path d="M29 5C30 1 34 0 36 2C34 3 32 4 31 7" fill="{RUBY}"/>"#
        ));
    }
    s
}

fn knife(level: u8) -> String {
    let (m, d) = metal(level);
    let handle = if level >= 3 { "#1f1f2b" } else { WOOD };
    let mut s = format!(
        r#"<g transform="rotate(35 24 26)"><path d="M21 30V12C21 9 24 6 27 6V30Z" fill="{}"/><rect x="19" y="30" width="10" height="3" rx="1.5" fill="{}"/><rect x="21" y="33" width="6" height="11" rx="2" fill="{}"/>"#,
        fill(level, m),
        fill(level, d),
        fill(level, handle),
    );
    if level >= 2 {
        s.push_str(&format!(
            r#"<path d="M24 10V28" fill="none" stroke="{d}"/>"#
        ));
    }
    if level >= 4 {
        s.push_str(&format!(
            r#"<circle cx="24" cy="44" r="2.2" fill="{}"/>"#,
            METAL[3]
        ));
    }
    s.push_str("</g>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_level_of_every_item_draws_a_different_picture() {
        for item in Item::ALL {
            let pictures: Vec<String> = (0..=5).map(|l| item_svg(item, l)).collect();
            for (i, a) in pictures.iter().enumerate() {
                for b in &pictures[i + 1..] {
                    assert_ne!(a, b, "{item}: two levels look the same");
                }
            }
        }
    }

    #[test]
    fn items_differ_from_each_other() {
        for l in 0..=5 {
            let all: Vec<String> = Item::ALL.iter().map(|i| item_svg(*i, l)).collect();
            for (i, a) in all.iter().enumerate() {
                assert!(
                    !all[i + 1..].contains(a),
                    "level {l}: two items look the same"
                );
            }
        }
    }

    #[test]
    fn not_owned_is_a_dashed_outline_without_fill_or_pips() {
        for item in Item::ALL {
            let svg = item_svg(item, 0);
            assert!(svg.contains("stroke-dasharray"));
            assert!(svg.contains(r#"data-level="0""#));
            assert!(!svg.contains(r#"cy="52""#), "no level pips");
            assert!(
                !svg.contains("fill=\"#"),
                "{item}: no colour when not owned"
            );
        }
    }

    #[test]
    fn one_pip_per_level() {
        for l in 1..=5u8 {
            let svg = item_svg(Item::Sword, l);
            assert_eq!(svg.matches(r#"cy="52""#).count(), usize::from(l));
        }
    }

    #[test]
    fn levels_above_the_maximum_draw_the_maximum() {
        assert_eq!(item_svg(Item::Horse, 9), item_svg(Item::Horse, 5));
    }

    #[test]
    fn pictures_are_self_contained_svg() {
        for item in Item::ALL {
            for l in 0..=5 {
                let svg = item_svg(item, l);
                assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
                assert!(svg.contains(r#"aria-hidden="true""#));
                assert!(!svg.contains("href"), "nothing fetched");
                assert_eq!(svg.matches("<g").count(), svg.matches("</g>").count());
            }
        }
        assert!(coin_svg().starts_with("<svg"));
    }
}
