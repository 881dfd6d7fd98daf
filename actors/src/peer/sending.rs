//! What a peer sends into the room: its tracks (with simulcast, every layer, for
//! the router to give each subscriber its own), keyframe requests to its encoder,
//! its mute and an operator's hold, its raised hand and chat.

use std::sync::Arc;
use std::time::Instant;

use str0m::media::{Direction, KeyframeRequestKind, MediaData, Mid, Rid};

use super::uplink::{Ceiling, Frame};
use super::{ParticipantEvent, PeerCore, PeerOutput, ToRoom};
use crate::ids::TrackId;
use crate::router::Layer;
use crate::{MediaKind, Published, TrackDesc};

/// A track the peer publishes.
#[derive(Debug)]
pub(super) struct Inbound {
    pub track: TrackDesc,
    pub published: bool,
    /// With simulcast, the layers seen, best first: by picture size once their
    /// keyframes have told it, else by their names.
    pub rids: Vec<(Rid, u64)>,
    /// The room's ceiling on it, if any (a commentator's video).
    pub ceiling: Option<Ceiling>,
    /// Its m-line's direction as the server sees it.
    pub dir: Direction,
}

/// Simulcast layer names from best to worst, as browsers and encoders use them
/// (until a layer's keyframe gives its picture size).
const RID_PREFERENCE: [&str; 7] = ["f", "h", "2", "m", "1", "l", "q"];

/// Rank of a simulcast layer name: lower is better; unknown names rank last.
fn rid_rank(rid: &Rid) -> usize {
    RID_PREFERENCE.iter().position(|r| *r == &**rid).unwrap_or(RID_PREFERENCE.len())
}

impl PeerCore {
    pub(super) fn media_in(&mut self, now: Instant, data: MediaData) {
        let Some(inbound) = self.inbound.get_mut(&data.mid) else {
            return;
        };
        if let Some(rid) = data.rid {
            let pixels = crate::resolution::of_keyframe(&data).map(|(w, h)| u64::from(w) * u64::from(h));
            match inbound.rids.iter_mut().find(|(r, _)| *r == rid) {
                Some((_, p)) => *p = pixels.unwrap_or(*p),
                None => inbound.rids.push((rid, pixels.unwrap_or(0))),
            }
            inbound.rids.sort_by_key(|(r, p)| (std::cmp::Reverse(*p), rid_rank(r)));
        }
        // With simulcast, operators see the best layer's rate and size.
        let counted = inbound.track.kind == MediaKind::Video
            && (data.rid.is_none() || data.rid == inbound.rids.first().map(|(r, _)| *r));
        if counted {
            self.stats.video_frame(&data);
        } else if inbound.track.kind == MediaKind::Audio {
            self.stats.audio(now, &data);
        }
        let packets = (**data.seq_range.end()).wrapping_sub(**data.seq_range.start()) + 1;
        self.metrics.rtp_packets_in.inc_by(packets);
        self.metrics.rtp_bytes_in.inc_by(data.data.len() as u64);
        if !inbound.published || self.held.get(&inbound.track.kind) == Some(&true) {
            return;
        }
        if let Some(c) = &mut inbound.ceiling
            && let Err(refused) = c.admit(data.rid, Frame::of(&data))
        {
            self.metrics.dropped.with_label_values(&[refused.reason()]).inc();
            return;
        }
        if counted {
            self.stats.video_frame_forwarded();
        }
        let track = inbound.track.id;
        // Every layer goes to the router, which gives each subscriber its own.
        if !data.contiguous {
            self.queue.push_back(PeerOutput::WantLayerKeyframe(track, data.rid));
        }
        self.queue.push_back(PeerOutput::Frame(track, Arc::new(data)));
    }

    /// The simulcast layers it sends, best first (`f,h,q`), if it sends several.
    pub(super) fn layers_in(&self) -> Option<String> {
        let rids = &self.inbound.values().find(|i| !i.rids.is_empty())?.rids;
        Some(rids.iter().map(|(r, _)| r.to_string()).collect::<Vec<_>>().join(","))
    }

    /// The video track it publishes, if any.
    pub fn published_video(&self) -> Option<TrackId> {
        self.inbound.values().find(|i| i.published && i.track.kind == MediaKind::Video).map(|i| i.track.id)
    }

    /// The room's answer to [`ToRoom::Publish`]: the track's source and ceiling,
    /// or why not.
    pub fn published(&mut self, now: Instant, mid: Mid, result: Result<Published, String>) {
        match result {
            Ok(p) => {
                let Some(i) = self.inbound.get_mut(&mid) else {
                    return;
                };
                i.track.source = p.source;
                i.published = true;
                if let Some(limit) = p.ceiling {
                    // Asked of its encoder and checked from now on.
                    i.ceiling = Some(Ceiling::new(limit));
                    self.next_uplink_check = Some(now);
                }
                let kind = i.track.kind;
                // Held before it published (a mute from an earlier session): the
                // room learns it now.
                if self.held.get(&kind) == Some(&true) {
                    self.tell_room(ToRoom::Mute { kind, muted: true });
                }
            }
            Err(e) => {
                tracing::info!(participant = %self.id, %mid, reason = %e, "track refused");
                // A peer that can take server offers is told to stop sending it
                // (an audio-only room negotiates no commentator video at all);
                // until then, or over WHIP, what arrives on the m-line is dropped.
                if let Some(i) = self.inbound.remove(&mid)
                    && self.opts.renegotiate
                {
                    let dir = if i.dir == Direction::SendRecv { Direction::SendOnly } else { Direction::Inactive };
                    self.neg.refuse(mid, dir);
                }
            }
        }
    }

    /// The room asks this publisher's peer for a keyframe of one layer of one of
    /// its tracks (`None`: of a single-layer track, or of every layer).
    pub fn request_keyframe(&mut self, track: TrackId, layer: Layer) {
        let Some((mid, rids)) = self.inbound.iter().find(|(_, i)| i.track.id == track).map(|(m, i)| (*m, i.rids.clone()))
        else {
            return;
        };
        let asked: Vec<Option<Rid>> = match layer {
            Some(rid) => vec![Some(rid)],
            None if rids.is_empty() => vec![None],
            None => rids.into_iter().map(|(r, _)| Some(r)).collect(),
        };
        let Some(mut w) = self.rtc.writer(mid) else {
            return;
        };
        for rid in asked {
            if let Err(e) = w.request_keyframe(rid, KeyframeRequestKind::Pli) {
                tracing::debug!(participant = %self.id, error = %e, "keyframe request failed");
            }
        }
    }

    /// The peer muted or unmuted what it sends of one kind. Only changes to what it
    /// publishes reach the room: a client cannot make the room repeat itself.
    pub fn set_muted(&mut self, kind: MediaKind, muted: bool) {
        let before = self.muted_now(kind);
        self.muted.insert(kind, muted);
        self.tell_room_if_changed(kind, before);
    }

    /// An operator holds (mutes) or releases what it sends of one kind. Held media
    /// is dropped here, so the peer cannot unmute itself; the room sees it muted,
    /// and the peer is told why.
    pub fn hold(&mut self, kind: MediaKind, held: bool) {
        let before = self.muted_now(kind);
        self.held.insert(kind, held);
        self.signal(ParticipantEvent::HeldByOperator { kind, held });
        self.tell_room_if_changed(kind, before);
        if !held && kind == MediaKind::Video {
            // Subscribers' decoders start again at a key frame.
            let tracks: Vec<TrackId> = self
                .inbound
                .values()
                .filter(|i| i.published && i.track.kind == MediaKind::Video)
                .map(|i| i.track.id)
                .collect();
            for t in tracks {
                self.want_keyframe(t);
            }
        }
    }

    /// Muted as the room sees it: by the peer or by an operator.
    fn muted_now(&self, kind: MediaKind) -> bool {
        self.muted.get(&kind) == Some(&true) || self.held.get(&kind) == Some(&true)
    }

    fn tell_room_if_changed(&mut self, kind: MediaKind, before: bool) {
        let publishes = self.inbound.values().any(|i| i.published && i.track.kind == kind);
        let now = self.muted_now(kind);
        if publishes && now != before {
            self.tell_room(ToRoom::Mute { kind, muted: now });
        }
    }

    /// The peer raises (true) or lowers (false) its hand. Only commentators may;
    /// changes only reach the room.
    pub fn raise_hand(&mut self, raised: bool) -> Result<(), String> {
        if self.opts.role != "commentator" {
            return Err(format!("only commentators raise a hand; this is a {} link", self.opts.role));
        }
        if self.hand_raised != raised {
            self.hand_raised = raised;
            self.tell_room(ToRoom::Hand(raised));
        }
        Ok(())
    }

    /// A chat line from the peer (cleaned and bounded by signaling). Commentators
    /// and operators may chat.
    pub fn chat(&mut self, text: String) -> Result<(), String> {
        if !matches!(self.opts.role, "commentator" | "operator") {
            return Err(format!("only commentators and operators can chat; this is a {} link", self.opts.role));
        }
        self.tell_room(ToRoom::Chat(text));
        Ok(())
    }
}

#[cfg(test)]
mod rid_tests {
    use super::*;

    #[test]
    fn simulcast_layers_rank_best_first() {
        let r = |s: &str| Rid::from(s);
        assert!(rid_rank(&r("h")) < rid_rank(&r("m")));
        assert!(rid_rank(&r("m")) < rid_rank(&r("q")));
        assert!(rid_rank(&r("f")) < rid_rank(&r("q")));
        assert_eq!(rid_rank(&r("zz")), RID_PREFERENCE.len());
    }
}
