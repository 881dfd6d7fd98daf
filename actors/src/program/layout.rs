//! Where each source goes in the program: the layouts (`pip`, `surgery_only`,
//! `side_by_side`, `grid`), which video input is which source, the name labels and
//! the slate's text. Pure except for [`Layout::apply`], which sets the compositor's
//! pads and the text overlays.

use gstreamer as gst;
use gstreamer::prelude::*;

use super::{ProgramOptions, Slate};

/// How the program arranges its sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutKind {
    /// The surgery feed alone.
    SurgeryOnly,
    /// The feed full frame, commentators as tiles along the bottom.
    Pip,
    /// The feed on the left two thirds, commentators stacked on the right.
    SideBySide,
    /// Everyone in an equal grid, the feed first.
    Grid,
}

impl std::str::FromStr for LayoutKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "surgery_only" => Ok(LayoutKind::SurgeryOnly),
            "pip" => Ok(LayoutKind::Pip),
            "side_by_side" => Ok(LayoutKind::SideBySide),
            "grid" => Ok(LayoutKind::Grid),
            _ => Err(format!("unknown layout {s:?}; use surgery_only, pip, side_by_side or grid")),
        }
    }
}

/// A rectangle on the program and whether it is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Place {
    pub(super) x: i32,
    pub(super) y: i32,
    pub(super) w: i32,
    pub(super) h: i32,
    pub(super) z: u32,
    pub(super) visible: bool,
}

/// The video inputs and where each goes. Pure: `places` computes, `apply` sets the
/// compositor pads.
pub(super) struct Layout {
    pub(super) width: u32,
    pub(super) height: u32,
    pub(super) kind: LayoutKind,
    /// Compositor pads with whether they carry the feed and whose they are, in
    /// arrival order.
    pub(super) inputs: Vec<(Option<gst::Pad>, bool, Option<String>)>,
    /// Video tracks the server bound (`track_bound`) whose picture has not arrived.
    pub(super) pending: Vec<Binding>,
    /// Participants who left.
    pub(super) away: std::collections::HashSet<String>,
    /// Participants whose camera is off.
    pub(super) camera_off: std::collections::HashSet<String>,
    /// The participant shown large instead of the feed.
    pub(super) main: Option<String>,
    /// Display names by participant, for the labels.
    pub(super) names: std::collections::HashMap<String, String>,
    /// The name-label overlays (`textoverlay`s after the compositor).
    pub(super) labels: Vec<gst::Element>,
    /// The operator shows the labels (on by default).
    pub(super) show_labels: bool,
    /// The slate's text overlay.
    pub(super) slate: Option<gst::Element>,
    /// The operator's slate, shown instead of every source.
    pub(super) operator_slate: Option<Slate>,
}

/// A video track the server bound to one of the program's m-lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Binding {
    pub(super) mid: String,
    pub(super) feed: bool,
    pub(super) participant: String,
}

/// A name label: its text and the bottom-left corner it is drawn from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Label {
    pub(super) text: String,
    pub(super) x: i32,
    pub(super) bottom: i32,
}

/// How many name labels the program draws: one per commentator it can show, and
/// one for a commentator made the main source.
pub(super) fn label_count(o: &ProgramOptions) -> usize {
    o.commentator_slots + 1
}

impl Layout {
    pub(super) fn new(width: u32, height: u32) -> Self {
        Layout {
            width,
            height,
            kind: LayoutKind::Pip,
            inputs: Vec::new(),
            pending: Vec::new(),
            away: Default::default(),
            camera_off: Default::default(),
            main: None,
            names: Default::default(),
            labels: Vec::new(),
            show_labels: true,
            slate: None,
            operator_slate: None,
        }
    }

    /// What the slate says, if the program shows no live feed where it should: before
    /// the feed first comes, and after it drops (over its last frame) until it
    /// returns. Nothing while a commentator is the main source.
    pub(super) fn slate_text(&self) -> Option<&'static str> {
        if let Some(s) = self.operator_slate {
            return Some(s.text());
        }
        let commentator_main = self.main.as_ref().is_some_and(|m| {
            self.inputs.iter().any(|(_, feed, who)| !feed && who.as_ref() == Some(m))
                && !self.away.contains(m)
                && !self.camera_off.contains(m)
        });
        if commentator_main {
            return None;
        }
        match self.inputs.iter().rev().find(|(_, feed, _)| *feed) {
            None => Some("Waiting for the surgery feed"),
            Some((_, _, Some(who))) if self.away.contains(who) => Some("Surgery feed interrupted \u{2014} back shortly"),
            Some(_) => None,
        }
    }

    /// A bound track: given to a picture that arrived without one, else kept for
    /// the next picture.
    pub(super) fn bind(&mut self, b: Binding) {
        if let Some(input) = self.inputs.iter_mut().rev().find(|(_, _, who)| who.is_none()) {
            (input.1, input.2) = (b.feed, Some(b.participant));
        } else {
            self.pending.push(b);
        }
    }

    /// Whose a newly decoded picture is: the binding of its m-line, or else the
    /// oldest one waiting. webrtcbin 1.22 names the m-line of a stream right only
    /// for the streams in the SDP; when the SFU reuses an m-line for a new track (a
    /// returning feed), the new stream's pad reports the first m-line instead.
    pub(super) fn take_binding(&mut self, mid: Option<&str>) -> Option<Binding> {
        let i = self.pending.iter().position(|b| Some(b.mid.as_str()) == mid).or((!self.pending.is_empty()).then_some(0))?;
        Some(self.pending.remove(i))
    }

    /// A label for every visible input that is not the surgery feed, at the
    /// bottom-left of its place.
    pub(super) fn label_places(&self, places: &[Place]) -> Vec<Label> {
        let margin = (self.height / 90).max(4) as i32;
        self.inputs
            .iter()
            .zip(places)
            .filter(|((_, feed, _), p)| p.visible && !feed)
            .filter_map(|((_, _, who), p)| {
                let text = self.names.get(who.as_ref()?)?.trim();
                (!text.is_empty()).then(|| Label { text: text.to_string(), x: p.x + margin, bottom: p.y + p.h - margin })
            })
            .collect()
    }

    /// Where each input goes. Only the newest feed is shown (a returning feed
    /// replaces the frozen last frame of the old one).
    pub(super) fn places(&self) -> Vec<Place> {
        let (w, h) = (self.width as i32, self.height as i32);
        let newest_feed = self.inputs.iter().rposition(|(_, feed, _)| *feed);
        // Commentators who left or turned their camera off are not shown.
        let showing = |who: &Option<String>| who.as_ref().is_none_or(|p| !self.away.contains(p) && !self.camera_off.contains(p));
        // The main source: the chosen participant's newest input, else the feed.
        let chosen = self
            .main
            .as_ref()
            .and_then(|m| self.inputs.iter().rposition(|(_, _, p)| p.as_ref() == Some(m)))
            .filter(|&i| showing(&self.inputs[i].2));
        let main = chosen.or(newest_feed);
        let hidden = Place { x: 0, y: 0, w: 16, h: 9, z: 0, visible: false };
        // Everyone else who is current: the commentators, and the feed when it is
        // not the main source (older feed inputs are frozen and stay hidden).
        let commentators: Vec<usize> = (0..self.inputs.len())
            .filter(|&i| Some(i) != main)
            .filter(|&i| if self.inputs[i].1 { Some(i) == newest_feed } else { showing(&self.inputs[i].2) })
            .collect();
        let newest_feed = main;
        let mut out = vec![hidden; self.inputs.len()];
        if self.operator_slate.is_some() {
            // The operator's slate: nothing but its words on black.
            return out;
        }
        let full = Place { x: 0, y: 0, w, h, z: 1, visible: true };
        match self.kind {
            LayoutKind::SurgeryOnly => {
                if let Some(f) = newest_feed {
                    out[f] = full;
                }
            }
            LayoutKind::Pip => {
                if let Some(f) = newest_feed {
                    out[f] = full;
                }
                let (tw, margin) = (w / 5, w / 80);
                let th = tw * 9 / 16;
                for (n, &i) in commentators.iter().enumerate().take(4) {
                    let n = n as i32;
                    out[i] = Place { x: margin + n * (tw + margin), y: h - th - margin, w: tw, h: th, z: 2, visible: true };
                }
            }
            LayoutKind::SideBySide => {
                let (fw, fh) = (w * 2 / 3, w * 2 / 3 * 9 / 16);
                if let Some(f) = newest_feed {
                    out[f] = Place { x: 0, y: (h - fh) / 2, w: fw, h: fh, z: 1, visible: true };
                }
                let (tw, th) = (w - fw, (w - fw) * 9 / 16);
                for (n, &i) in commentators.iter().enumerate().take(3) {
                    out[i] = Place { x: fw, y: n as i32 * th, w: tw, h: th, z: 2, visible: true };
                }
            }
            LayoutKind::Grid => {
                let order: Vec<usize> = newest_feed.into_iter().chain(commentators.iter().copied().take(8)).collect();
                let n = order.len().max(1) as i32;
                let cols = (1..=3).find(|c| c * c >= n).unwrap_or(3);
                let rows = (n + cols - 1) / cols;
                let (cw, ch) = (w / cols, h / rows);
                for (k, &i) in order.iter().enumerate() {
                    let k = k as i32;
                    out[i] = Place { x: (k % cols) * cw, y: (k / cols) * ch, w: cw, h: ch, z: 1, visible: true };
                }
            }
        }
        out
    }

    /// Sets every compositor pad to its place and the labels to match (live: the
    /// output never stops).
    pub(super) fn apply(&self) {
        let places = self.places();
        if let Some(slate) = &self.slate {
            match self.slate_text() {
                Some(text) => {
                    slate.set_property("text", text);
                    // The operator's slate in the middle; the feed's state at the top,
                    // over its last frame.
                    slate.set_property_from_str("valignment", if self.operator_slate.is_some() { "center" } else { "top" });
                    slate.set_property("silent", false);
                }
                None => slate.set_property("silent", true),
            }
        }
        let mut labels = self.label_places(&places).into_iter().filter(|_| self.show_labels);
        for overlay in &self.labels {
            match labels.next() {
                Some(l) => {
                    overlay.set_property("text", &l.text);
                    overlay.set_property("deltax", l.x);
                    overlay.set_property("deltay", l.bottom - self.height as i32);
                    overlay.set_property("silent", false);
                }
                None => overlay.set_property("silent", true),
            }
        }
        for ((pad, _, _), p) in self.inputs.iter().zip(places) {
            let Some(pad) = pad else { continue };
            // Even sizes (4:2:0 video): the branch scales the input to exactly the
            // pad's size, once per source frame, so the compositor does not.
            let (w, h) = (p.w & !1, p.h & !1);
            pad.set_property("xpos", p.x);
            pad.set_property("ypos", p.y);
            pad.set_property("width", w);
            pad.set_property("height", h);
            pad.set_property("zorder", p.z);
            pad.set_property("alpha", if p.visible { 1.0f64 } else { 0.0 });
            // A hidden input keeps its last size: the compositor skips it.
            if p.visible && w >= 2 && h >= 2 {
                set_tile_size(pad, w, h);
            }
        }
    }
}

/// Sets the size the branch feeding compositor pad `pad` scales to: its `tile`
/// capsfilter, found through the pad's peer (the branch bin's ghost pad).
fn set_tile_size(pad: &gst::Pad, width: i32, height: i32) {
    let Some(bin) = pad.peer().and_then(|p| p.parent_element()).and_then(|e| e.downcast::<gst::Bin>().ok()) else { return };
    let Some(tile) = bin.by_name("tile") else { return };
    let current = tile.property::<gst::Caps>("caps");
    let Some(s) = current.structure(0) else { return };
    if s.get::<i32>("width").ok() == Some(width) && s.get::<i32>("height").ok() == Some(height) {
        return;
    }
    let mut caps = current.copy();
    if let Some(s) = caps.make_mut().structure_mut(0) {
        s.set("width", width);
        s.set("height", height);
    }
    tile.set_property("caps", caps);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_place_the_feed_and_the_commentators() {
        let mut l = Layout::new(1280, 720);
        l.inputs = vec![(None, true, Some("enc".into())), (None, false, Some("a".into())), (None, false, Some("b".into()))];
        let p = l.places();
        assert_eq!((p[0].w, p[0].h, p[0].visible), (1280, 720, true), "pip: feed full frame");
        assert!(p[1].visible && p[1].w == 256 && p[1].y + p[1].h <= 720 && p[1].z > p[0].z);
        l.kind = LayoutKind::SurgeryOnly;
        let p = l.places();
        assert!(p[0].visible && !p[1].visible && !p[2].visible);
        l.kind = LayoutKind::SideBySide;
        let p = l.places();
        assert_eq!((p[0].x, p[0].w), (0, 853));
        assert!(p[1].x >= 853 && p[2].y >= p[1].y + p[1].h);
        l.kind = LayoutKind::Grid;
        let p = l.places();
        assert_eq!((p[0].w, p[0].h), (640, 360), "three sources: a 2×2 grid");
        assert_eq!((p[2].x, p[2].y), (0, 360));
        // A returning feed replaces the old one.
        l.inputs.push((None, true, Some("enc2".into())));
        l.kind = LayoutKind::Pip;
        let p = l.places();
        assert!(!p[0].visible && p[3].visible && p[3].w == 1280);
        // A commentator as the main source: full frame, the feed becomes a tile.
        l.main = Some("b".into());
        let p = l.places();
        assert_eq!(p[2].w, 1280);
        assert!(p[3].visible && p[3].w == 256, "the feed is a tile now");
        assert!(!p[0].visible, "the frozen old feed stays hidden");
        assert!("grid".parse::<LayoutKind>().is_ok() && "mosaic".parse::<LayoutKind>().is_err());
        // The main commentator turns the camera off: the feed is main again; back on,
        // the commentator is main again.
        l.camera_off.insert("b".into());
        let p = l.places();
        assert!(!p[2].visible && p[3].w == 1280);
        l.camera_off.clear();
        assert_eq!(l.places()[2].w, 1280);
        // A commentator who leaves leaves the layout; the next one moves up.
        l.main = None;
        l.away.insert("a".into());
        let p = l.places();
        assert!(!p[1].visible, "a left");
        assert!(p[2].visible && p[2].x == 16, "b takes the first tile");
        // A feed that leaves keeps its last frame, under the slate's words.
        assert_eq!(l.slate_text(), None);
        l.away.insert("enc2".into());
        assert!(l.places()[3].visible);
        assert!(l.slate_text().is_some_and(|t| t.contains("interrupted")));
        // Not while a commentator is the main source.
        l.main = Some("b".into());
        assert_eq!(l.slate_text(), None);
        assert_eq!(Layout::new(1280, 720).slate_text(), Some("Waiting for the surgery feed"));
        // The operator's slate hides every source (and so every label) and says its
        // words, whoever is the main source; off again, the layout comes back.
        l.operator_slate = Some(Slate::Brb);
        assert!(l.places().iter().all(|p| !p.visible));
        assert!(l.slate_text().is_some_and(|t| t.contains("right back")));
        l.operator_slate = None;
        assert!(l.places()[2].visible);
        assert_eq!(Slate::parse("starting"), Ok(Some(Slate::Starting)));
        assert_eq!(Slate::parse("off"), Ok(None));
        assert!(Slate::parse("banner").is_err());
    }

    #[test]
    fn pictures_take_the_binding_of_their_m_line_or_the_oldest_waiting() {
        let mut l = Layout::new(1280, 720);
        let b = |mid: &str, feed, who: &str| Binding { mid: mid.into(), feed, participant: who.into() };
        l.bind(b("video1", true, "enc"));
        l.bind(b("video3", false, "ada"));
        assert_eq!(l.take_binding(Some("video3")), Some(b("video3", false, "ada")), "by m-line");
        // A reused m-line's stream may report another m-line: the oldest binding.
        assert_eq!(l.take_binding(Some("audio0")), Some(b("video1", true, "enc")));
        assert_eq!(l.take_binding(Some("video5")), None);
        // A picture that came first gets the binding when it comes.
        l.inputs.push((None, false, None));
        l.bind(b("video5", false, "bo"));
        assert_eq!((l.inputs[0].1, l.inputs[0].2.as_deref()), (false, Some("bo")));
        assert!(l.pending.is_empty());
    }

    #[test]
    fn labels_follow_the_commentators_tiles() {
        let mut l = Layout::new(1280, 720);
        l.inputs = vec![(None, true, Some("enc".into())), (None, false, Some("a".into())), (None, false, Some("b".into()))];
        l.names = [("enc", "Feed"), ("a", "Dr. Ada"), ("b", "  ")].map(|(k, v)| (k.to_string(), v.to_string())).into();
        let p = l.places();
        let labels = l.label_places(&p);
        assert_eq!(labels.len(), 1, "the feed has no label, a blank name none either: {labels:?}");
        assert_eq!(labels[0].text, "Dr. Ada");
        assert!(labels[0].x > p[1].x && labels[0].x < p[1].x + 20);
        assert!(labels[0].bottom < p[1].y + p[1].h && labels[0].bottom > p[1].y + p[1].h - 20);
        l.kind = LayoutKind::SurgeryOnly;
        assert!(l.label_places(&l.places()).is_empty(), "hidden tiles have no label");
        // A commentator made the main source keeps a label, at the frame's bottom-left.
        l.kind = LayoutKind::Pip;
        l.main = Some("a".into());
        let labels = l.label_places(&l.places());
        assert_eq!(labels.len(), 1);
        assert!(labels[0].x < 20 && labels[0].bottom > 700);
    }
}
