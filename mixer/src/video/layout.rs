//! Continuous-presence layouts and who goes in which pane.
//!
//! Every layout is an `n x n` grid of cells, some of which are merged into
//! large panes at the top-left. Panes come out large first, then the small
//! ones row by row, and [`assign`] fills them in that order from the speaker
//! order, so "pane 0" is always where the active speaker is. For a receiver
//! that sees a presentation in its layout, pane 0 holds the presentation
//! and the people fill the panes after it ([`assign_with_presentation`]).

use std::fmt;
use std::str::FromStr;

use super::frame::Rect;
use crate::audio::ParticipantId;
use crate::error::Error;

/// A concrete layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Layout {
    /// One pane: the active speaker full screen.
    Grid1x1,
    Grid2x2,
    Grid3x3,
    Grid4x4,
    Grid5x5,
    /// One large pane (2x2 cells of a 3x3 grid) and 5 small.
    OnePlus5,
    /// One large pane (3x3 cells of a 4x4 grid) and 7 small.
    OnePlus7,
    /// Two large panes side by side (top half of a 4x4 grid) and 8 small.
    TwoPlus8,
    /// One large pane (2x2 cells of a 5x5 grid) and 21 small.
    OnePlus21,
}

impl Layout {
    pub const ALL: [Layout; 9] = [
        Layout::Grid1x1,
        Layout::Grid2x2,
        Layout::Grid3x3,
        Layout::Grid4x4,
        Layout::Grid5x5,
        Layout::OnePlus5,
        Layout::OnePlus7,
        Layout::TwoPlus8,
        Layout::OnePlus21,
    ];

    /// Grid size and the large panes as (column, row, span in cells).
    fn shape(self) -> (u32, &'static [(u32, u32, u32)]) {
        match self {
            Layout::Grid1x1 => (1, &[]),
            Layout::Grid2x2 => (2, &[]),
            Layout::Grid3x3 => (3, &[]),
            Layout::Grid4x4 => (4, &[]),
            Layout::Grid5x5 => (5, &[]),
            Layout::OnePlus5 => (3, &[(0, 0, 2)]),
            Layout::OnePlus7 => (4, &[(0, 0, 3)]),
            Layout::TwoPlus8 => (4, &[(0, 0, 2), (2, 0, 2)]),
            Layout::OnePlus21 => (5, &[(0, 0, 2)]),
        }
    }

    /// How many panes the layout has.
    pub fn pane_count(self) -> usize {
        let (n, large) = self.shape();
        let covered: u32 = large.iter().map(|&(_, _, s)| s * s).sum();
        (n * n - covered) as usize + large.len()
    }

    /// How many large (speaker) panes lead the list: 0 for plain grids, whose
    /// first pane is no bigger than the rest.
    pub fn large_panes(self) -> usize {
        self.shape().1.len()
    }

    /// The panes on a `canvas_w x canvas_h` canvas: large first, then small
    /// in reading order. Edges sit on even pixels so chroma lines up, and
    /// the panes tile the (even part of the) canvas without gaps.
    pub fn panes(self, canvas_w: u32, canvas_h: u32) -> Vec<Rect> {
        let (n, large) = self.shape();
        let edge = |i: u32, total: u32| -> u32 {
            let e = (u64::from(i) * u64::from(total) / u64::from(n)) as u32;
            e & !1
        };
        let cell = |col: u32, row: u32, span: u32| -> Rect {
            let (x0, x1) = (edge(col, canvas_w), edge(col + span, canvas_w));
            let (y0, y1) = (edge(row, canvas_h), edge(row + span, canvas_h));
            Rect::new(x0, y0, x1 - x0, y1 - y0)
        };
        let in_large = |col: u32, row: u32| {
            large
                .iter()
                .any(|&(c, r, s)| col >= c && col < c + s && row >= r && row < r + s)
        };
        let mut panes: Vec<Rect> = large.iter().map(|&(c, r, s)| cell(c, r, s)).collect();
        for row in 0..n {
            for col in 0..n {
                if !in_large(col, row) {
                    panes.push(cell(col, row, 1));
                }
            }
        }
        panes
    }

    /// The layout `auto` picks for `visible` participants to show (the
    /// viewer not counted): the smallest that fits, preferring a large
    /// speaker pane once there are more than four.
    pub fn auto_for(visible: usize) -> Layout {
        match visible {
            0 | 1 => Layout::Grid1x1,
            2..=4 => Layout::Grid2x2,
            5 | 6 => Layout::OnePlus5,
            7 | 8 => Layout::OnePlus7,
            9 => Layout::Grid3x3,
            10 => Layout::TwoPlus8,
            11..=16 => Layout::Grid4x4,
            17..=22 => Layout::OnePlus21,
            _ => Layout::Grid5x5,
        }
    }

    /// The layout `auto` picks when pane 0 holds a presentation and
    /// `visible` participants (the viewer not counted) share the other
    /// panes: one large pane for the slides and enough small ones for the
    /// people, up to 21 of them (beyond, the least recent speakers drop
    /// out). With nobody else to show, the presentation fills the screen.
    pub fn auto_with_presentation(visible: usize) -> Layout {
        match visible {
            0 => Layout::Grid1x1,
            1..=5 => Layout::OnePlus5,
            6 | 7 => Layout::OnePlus7,
            _ => Layout::OnePlus21,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Layout::Grid1x1 => "1x1",
            Layout::Grid2x2 => "2x2",
            Layout::Grid3x3 => "3x3",
            Layout::Grid4x4 => "4x4",
            Layout::Grid5x5 => "5x5",
            Layout::OnePlus5 => "1+5",
            Layout::OnePlus7 => "1+7",
            Layout::TwoPlus8 => "2+8",
            Layout::OnePlus21 => "1+21",
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Layout {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let wanted = s.trim().to_ascii_lowercase();
        Layout::ALL
            .into_iter()
            .find(|l| l.name() == wanted)
            .ok_or_else(|| Error::UnknownLayout(s.to_string()))
    }
}

/// What a receiver asked for: a fixed layout, or `auto` (by participant
/// count). Kept apart from [`Layout`] so that a view always has a concrete
/// layout with known panes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LayoutChoice {
    #[default]
    Auto,
    Fixed(Layout),
}

impl LayoutChoice {
    /// The concrete layout for a viewer who has `visible` others to see.
    pub fn resolve(self, visible: usize) -> Layout {
        match self {
            LayoutChoice::Auto => Layout::auto_for(visible),
            LayoutChoice::Fixed(l) => l,
        }
    }

    /// The concrete layout for a viewer who has `visible` others to see
    /// besides a presentation in pane 0. A fixed layout stays as it is: the
    /// presentation takes its large pane, or a plain grid's first pane.
    pub fn resolve_with_presentation(self, visible: usize) -> Layout {
        match self {
            LayoutChoice::Auto => Layout::auto_with_presentation(visible),
            LayoutChoice::Fixed(l) => l,
        }
    }
}

impl From<Layout> for LayoutChoice {
    fn from(l: Layout) -> Self {
        LayoutChoice::Fixed(l)
    }
}

impl fmt::Display for LayoutChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayoutChoice::Auto => f.write_str("auto"),
            LayoutChoice::Fixed(l) => l.fmt(f),
        }
    }
}

impl FromStr for LayoutChoice {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        if s.trim().eq_ignore_ascii_case("auto") {
            Ok(LayoutChoice::Auto)
        } else {
            s.parse().map(LayoutChoice::Fixed)
        }
    }
}

/// Who goes in which pane of `layout` for `viewer`.
///
/// `speaker_order` is most recent speaker first (the bridge's
/// active-speaker history, everyone who may be shown). Nobody sees
/// themselves: the viewer is taken out first, so a viewer who is the active
/// speaker sees the previous speaker in the large pane. The rest fill the
/// panes by recency; panes left over are `None` (black). Duplicates in
/// `speaker_order` count once, at their first (most recent) place.
pub fn assign(
    layout: Layout,
    speaker_order: &[ParticipantId],
    viewer: Option<ParticipantId>,
) -> Vec<Option<ParticipantId>> {
    fill(Vec::new(), layout.pane_count(), speaker_order, viewer)
}

/// Like [`assign`], but pane 0 is kept for the presentation (its occupant
/// is `None`) and the people fill the panes after it, in the same order: the
/// active speaker goes to the second pane, which in a 2+8 layout is the
/// other large one.
pub fn assign_with_presentation(
    layout: Layout,
    speaker_order: &[ParticipantId],
    viewer: Option<ParticipantId>,
) -> Vec<Option<ParticipantId>> {
    fill(vec![None], layout.pane_count(), speaker_order, viewer)
}

/// `out` (panes already taken) filled up to `panes` from the speaker order.
fn fill(
    mut out: Vec<Option<ParticipantId>>,
    panes: usize,
    speaker_order: &[ParticipantId],
    viewer: Option<ParticipantId>,
) -> Vec<Option<ParticipantId>> {
    out.truncate(panes);
    for &id in speaker_order {
        if out.len() == panes {
            break;
        }
        if Some(id) == viewer || out.contains(&Some(id)) {
            continue;
        }
        out.push(Some(id));
    }
    out.resize(panes, None);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[u64]) -> Vec<ParticipantId> {
        v.iter().map(|&i| ParticipantId(i)).collect()
    }

    #[test]
    fn video_layout_pane_counts_and_tiling() {
        let expected = [1, 4, 9, 16, 25, 6, 8, 10, 22];
        for (layout, count) in Layout::ALL.into_iter().zip(expected) {
            assert_eq!(layout.pane_count(), count, "{layout}");
            for (w, h) in [(1280, 720), (640, 360), (320, 180), (642, 362)] {
                let panes = layout.panes(w, h);
                assert_eq!(panes.len(), count, "{layout}");
                let area: u64 = panes.iter().map(Rect::area).sum();
                assert_eq!(
                    area,
                    u64::from(w & !1) * u64::from(h & !1),
                    "{layout} tiles"
                );
                for p in &panes {
                    assert!(p.x % 2 == 0 && p.y % 2 == 0 && p.w % 2 == 0 && p.h % 2 == 0);
                    assert!(p.x + p.w <= w && p.y + p.h <= h);
                }
                // Large panes first and strictly larger than the small ones.
                let large = layout.large_panes();
                if large > 0 {
                    assert!(panes[large - 1].area() > panes[large].area(), "{layout}");
                }
            }
        }
        assert_eq!(
            Layout::OnePlus5.panes(1280, 720)[0],
            Rect::new(0, 0, 852, 480)
        );
        assert_eq!(
            Layout::Grid2x2.panes(640, 360)[3],
            Rect::new(320, 180, 320, 180)
        );
    }

    #[test]
    fn video_layout_names_round_trip() {
        for layout in Layout::ALL {
            assert_eq!(layout.to_string().parse::<Layout>().unwrap(), layout);
            let choice = LayoutChoice::Fixed(layout);
            assert_eq!(choice.to_string().parse::<LayoutChoice>().unwrap(), choice);
        }
        assert_eq!("AUTO".parse::<LayoutChoice>().unwrap(), LayoutChoice::Auto);
        assert_eq!(LayoutChoice::Auto.to_string(), "auto");
        assert!(matches!(
            "3+3".parse::<Layout>(),
            Err(Error::UnknownLayout(_))
        ));
        assert!("auto".parse::<Layout>().is_err());
    }

    #[test]
    fn video_auto_fits_everyone_it_can() {
        for n in 0..=25 {
            let l = Layout::auto_for(n);
            assert!(l.pane_count() >= n.max(1), "{n} -> {l}");
        }
        assert_eq!(LayoutChoice::Auto.resolve(3), Layout::Grid2x2);
        assert_eq!(LayoutChoice::Auto.resolve(40), Layout::Grid5x5);
    }

    #[test]
    fn video_auto_with_presentation_has_a_large_pane_and_room_for_people() {
        assert_eq!(Layout::auto_with_presentation(0), Layout::Grid1x1);
        for n in 1..=21 {
            let l = Layout::auto_with_presentation(n);
            assert_eq!(l.large_panes(), 1, "{n} -> {l}");
            assert!(l.pane_count() > n, "{n} -> {l}");
        }
        assert_eq!(Layout::auto_with_presentation(5), Layout::OnePlus5);
        assert_eq!(Layout::auto_with_presentation(6), Layout::OnePlus7);
        assert_eq!(Layout::auto_with_presentation(40), Layout::OnePlus21);
        assert_eq!(
            LayoutChoice::Fixed(Layout::Grid3x3).resolve_with_presentation(2),
            Layout::Grid3x3
        );
    }

    #[test]
    fn video_assign_with_presentation_keeps_pane_0() {
        let order = ids(&[5, 3, 9]);
        let some = |v: &[u64]| ids(v).into_iter().map(Some).collect::<Vec<_>>();
        let mut want = vec![None];
        want.extend(some(&[3, 9]));
        want.extend([None; 3]);
        // The speaker (the viewer here) is left out; the rest follow pane 0.
        assert_eq!(
            assign_with_presentation(Layout::OnePlus5, &order, Some(ParticipantId(5))),
            want
        );
        let mut want = vec![None];
        want.extend(some(&[5, 3, 9]));
        assert_eq!(
            assign_with_presentation(Layout::Grid2x2, &order, None),
            want
        );
        // A single pane holds only the presentation.
        assert_eq!(
            assign_with_presentation(Layout::Grid1x1, &order, None),
            vec![None]
        );
    }

    #[test]
    fn video_assign_speaker_large_and_never_self() {
        let order = ids(&[5, 3, 9, 1, 2]);
        // An onlooker sees the active speaker in the large pane.
        assert_eq!(
            assign(Layout::OnePlus5, &order, Some(ParticipantId(7))),
            vec![
                Some(ParticipantId(5)),
                Some(ParticipantId(3)),
                Some(ParticipantId(9)),
                Some(ParticipantId(1)),
                Some(ParticipantId(2)),
                None
            ]
        );
        // The active speaker sees the previous speaker there, and not themselves.
        let own = assign(Layout::OnePlus5, &order, Some(ParticipantId(5)));
        assert_eq!(own[0], Some(ParticipantId(3)));
        assert!(!own.contains(&Some(ParticipantId(5))));
        // Too many for the panes: the least recent drop out.
        assert_eq!(
            assign(Layout::Grid2x2, &order, None),
            ids(&[5, 3, 9, 1]).into_iter().map(Some).collect::<Vec<_>>()
        );
        // Duplicates count once.
        assert_eq!(
            assign(Layout::Grid1x1, &ids(&[4, 4]), Some(ParticipantId(4))),
            vec![None]
        );
    }
}
