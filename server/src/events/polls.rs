//! Polls that count: a poll sent to viewers is kept with its event; each viewer's
//! vote is received once (a second vote from the same viewer changes it), and the
//! operators see the counts live.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use super::*;

/// A poll with its counts.
#[derive(Debug, Clone, Serialize)]
pub struct PollResult {
    /// Its id (in the timed metadata the watch page reads).
    pub id: String,
    /// The question.
    pub question: String,
    /// The options, in order.
    pub options: Vec<String>,
    /// Votes per option, in the same order.
    pub counts: Vec<u64>,
    /// Votes in all.
    pub total: u64,
    /// Unix seconds.
    pub created_at: i64,
}

/// Viewer ids seen voting from each client address, per poll: a script making up
/// ids counts as a few voters, not thousands (as the viewer count does).
#[derive(Default)]
pub struct Voters(Mutex<HashMap<(String, std::net::IpAddr), HashSet<String>>>);

impl Voters {
    /// Whether `viewer` from `address` may vote in `poll` (at most `per_address`
    /// viewers from one address).
    pub fn admit(&self, poll: &str, address: std::net::IpAddr, viewer: &str, per_address: usize) -> bool {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let set = m.entry((poll.to_string(), address)).or_default();
        set.contains(viewer) || (set.len() < per_address && set.insert(viewer.to_string()))
    }
}

impl Events {
    /// Keeps a poll sent to event `event`'s viewers.
    pub(super) async fn add_poll(&self, id: &str, event: &str, question: &str, options: &[String]) -> Result<()> {
        sqlx::query("INSERT INTO polls (id, event_id, question, options, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(id)
            .bind(event)
            .bind(question)
            .bind(serde_json::to_string(options).map_err(|e| e.to_string())?)
            .bind(unix_now())
            .execute(self.db.pool())
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Records `viewer`'s vote for option `choice` of poll `poll` of event `event`
    /// (replacing their earlier vote). `Ok(false)`: no such poll or option.
    pub(super) async fn vote(&self, event: &str, poll: &str, viewer: &str, choice: usize) -> Result<bool> {
        let options: Option<String> = sqlx::query_scalar("SELECT options FROM polls WHERE id = $1 AND event_id = $2")
            .bind(poll)
            .bind(event)
            .fetch_optional(self.db.pool())
            .await
            .map_err(|e| e.to_string())?;
        let Some(options) = options else { return Ok(false) };
        let n = serde_json::from_str::<Vec<String>>(&options).map(|o| o.len()).unwrap_or(0);
        if choice >= n {
            return Ok(false);
        }
        // One row per viewer and poll: an upsert both databases take.
        sqlx::query(
            "INSERT INTO poll_votes (poll_id, viewer, choice, at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (poll_id, viewer) DO UPDATE SET choice = excluded.choice, at = excluded.at",
        )
        .bind(poll)
        .bind(viewer)
        .bind(choice as i64)
        .bind(unix_now())
        .execute(self.db.pool())
        .await
        .map_err(|e| e.to_string())?;
        Ok(true)
    }

    /// Event `event`'s polls, newest first, with their counts.
    pub(super) async fn poll_results(&self, event: &str) -> Result<Vec<PollResult>> {
        let rows = sqlx::query("SELECT id, question, options, created_at FROM polls WHERE event_id = $1 ORDER BY created_at DESC, id LIMIT 20")
            .bind(event)
            .fetch_all(self.db.pool())
            .await
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for r in rows {
            let get = |e: sqlx::Error| e.to_string();
            let id: String = r.try_get("id").map_err(get)?;
            let options: Vec<String> = serde_json::from_str(&r.try_get::<String, _>("options").map_err(get)?).unwrap_or_default();
            let counts_rows: Vec<(i64, i64)> =
                sqlx::query_as("SELECT choice, COUNT(*) FROM poll_votes WHERE poll_id = $1 GROUP BY choice")
                    .bind(&id)
                    .fetch_all(self.db.pool())
                    .await
                    .map_err(|e| e.to_string())?;
            let mut counts = vec![0u64; options.len()];
            for (choice, n) in counts_rows {
                if let Some(c) = counts.get_mut(choice as usize) {
                    *c = n as u64;
                }
            }
            out.push(PollResult {
                total: counts.iter().sum(),
                id,
                question: r.try_get("question").map_err(get)?,
                options,
                counts,
                created_at: r.try_get("created_at").map_err(get)?,
            });
        }
        Ok(out)
    }
}

/// `GET /api/events/{id}/polls`: the event's polls with their counts, newest first.
pub(crate) async fn polls(req: HttpRequest, id: web::Path<String>, st: web::Data<AppState>) -> HttpResponse {
    op!(req, st, Some(&id));
    if st.events.event(&id).is_none() {
        return no_event(&id);
    }
    match st.events.poll_results(&id).await {
        Ok(list) => HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(list),
        Err(m) => internal(m),
    }
}
