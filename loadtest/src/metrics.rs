//! Scraping and reading the server's Prometheus text exposition (`GET /metrics`).
//!
//! Samples are keyed by name plus labels in a canonical form: labels sorted by name,
//! values quoted and escaped as in the exposition format, e.g.
//! `casecast_dropped_packets_total{reason="unroutable"}` or
//! `casecast_forward_latency_seconds_bucket{le="0.001"}`. Samples without labels are
//! keyed by their bare name.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;

use crate::http::Http;

/// RTP packets the server sent to subscribers.
pub const PACKETS_FORWARDED: &str = "casecast_rtp_packets_forwarded_total";
/// RTP bytes the server sent to subscribers.
pub const BYTES_FORWARDED: &str = "casecast_rtp_bytes_forwarded_total";
/// RTP packets the server received from publishers.
pub const PACKETS_RECEIVED: &str = "casecast_rtp_packets_received_total";
/// CPU time the server process used, in seconds.
pub const PROCESS_CPU_SECONDS: &str = "process_cpu_seconds_total";
/// Resident memory of the server process, in bytes.
pub const PROCESS_RSS_BYTES: &str = "process_resident_memory_bytes";
/// Histogram of the time from a frame's arrival to its copies being sent.
pub const FORWARD_LATENCY: &str = "casecast_forward_latency_seconds";

/// One parsed scrape: sample key (name plus canonical labels) to value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    values: BTreeMap<String, f64>,
}

/// One cumulative histogram bucket: how many observations were `<= le`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HistogramBucket {
    /// The bucket's upper bound (`f64::INFINITY` for `+Inf`).
    pub le: f64,
    /// Observations less than or equal to `le` (cumulative).
    pub count: f64,
}

/// GETs `{base_url}/metrics` (bounded by `timeout`) and parses it.
pub fn scrape_metrics(base_url: &str, token: &str, timeout: Duration) -> Result<Metrics> {
    let text = Http::new(base_url, timeout)?.get_text_authorized("/metrics", token)?;
    Ok(Metrics::parse(&text))
}

impl Metrics {
    /// Parses Prometheus text exposition. Comments, blank lines and lines that are
    /// not valid samples are skipped; timestamps are ignored. A key that appears twice
    /// keeps its last value.
    pub fn parse(text: &str) -> Metrics {
        let values = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(parse_sample)
            .collect();
        Metrics { values }
    }

    /// The value of a sample by its key (see the module docs for the key format).
    pub fn get(&self, key: &str) -> Option<f64> {
        self.values.get(key).copied()
    }

    /// How much a sample grew since `earlier`. A counter that went backwards (the
    /// server restarted) counts from zero. `None` if the sample is missing now; a
    /// sample missing in `earlier` counts from zero.
    pub fn delta(&self, earlier: &Metrics, key: &str) -> Option<f64> {
        let now = self.get(key)?;
        Some(counter_delta(now, earlier.get(key).unwrap_or(0.0)))
    }

    /// All samples, keyed by name plus canonical labels.
    pub fn as_map(&self) -> &BTreeMap<String, f64> {
        &self.values
    }

    /// Consumes the scrape into its map.
    pub fn into_map(self) -> BTreeMap<String, f64> {
        self.values
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the scrape had no samples.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The cumulative buckets of the histogram `name` (without the `_bucket` suffix),
    /// sorted by bound. Only buckets whose sole label is `le` are included.
    pub fn histogram(&self, name: &str) -> Vec<HistogramBucket> {
        let prefix = format!("{name}_bucket{{le=\"");
        let mut buckets: Vec<HistogramBucket> = self
            .values
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter_map(|(k, &count)| {
                let le = k[prefix.len()..].strip_suffix("\"}")?;
                Some(HistogramBucket {
                    le: parse_value(le)?,
                    count,
                })
            })
            .collect();
        buckets.sort_by(|a, b| a.le.total_cmp(&b.le));
        buckets
    }

    /// The histogram's buckets as observed between `earlier` and this scrape.
    pub fn histogram_delta(&self, earlier: &Metrics, name: &str) -> Vec<HistogramBucket> {
        let before = earlier.histogram(name);
        self.histogram(name)
            .into_iter()
            .map(|b| {
                let old = before
                    .iter()
                    .find(|o| o.le == b.le)
                    .map_or(0.0, |o| o.count);
                HistogramBucket {
                    le: b.le,
                    count: counter_delta(b.count, old),
                }
            })
            .collect()
    }
}

fn counter_delta(now: f64, before: f64) -> f64 {
    if now >= before { now - before } else { now }
}

/// Estimates the `q` quantile (0..=1) from cumulative buckets the way Prometheus'
/// `histogram_quantile` does: linear interpolation inside the bucket the rank falls
/// in, the first bucket starting at 0. A rank in the `+Inf` bucket yields the largest
/// finite bound. `None` without observations or for `q` outside 0..=1.
pub fn histogram_quantile(q: f64, buckets: &[HistogramBucket]) -> Option<f64> {
    if !(0.0..=1.0).contains(&q) || buckets.is_empty() {
        return None;
    }
    let mut sorted = buckets.to_vec();
    sorted.sort_by(|a, b| a.le.total_cmp(&b.le));
    // Cumulative counts must not decrease; scrapes are not atomic, so repair.
    let mut running = 0.0_f64;
    for b in &mut sorted {
        running = running.max(b.count);
        b.count = running;
    }
    let total = sorted.last()?.count;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let i = sorted.iter().position(|b| b.count >= rank)?;
    let bucket = sorted[i];
    if bucket.le.is_infinite() {
        return sorted[..i]
            .iter()
            .rev()
            .map(|b| b.le)
            .find(|le| le.is_finite());
    }
    let (lower, below) = match i {
        0 => (0.0_f64.min(bucket.le), 0.0),
        _ => (sorted[i - 1].le, sorted[i - 1].count),
    };
    let in_bucket = bucket.count - below;
    if in_bucket <= 0.0 {
        return Some(bucket.le);
    }
    Some(lower + (bucket.le - lower) * (rank - below) / in_bucket)
}

/// Parses `name{labels} value [timestamp]` into (canonical key, value).
fn parse_sample(line: &str) -> Option<(String, f64)> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(after_brace)?;
        labels = parsed;
        rest = after;
    }
    let value = parse_value(rest.split_whitespace().next()?)?;
    Some((canonical_key(name, labels), value))
}

/// Parses `a="x",b="y"}` (after the opening brace); returns the labels and the rest.
fn parse_labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Some((labels, rest));
        }
        let eq = s.find('=')?;
        let label = s[..eq].trim();
        if label.is_empty() {
            return None;
        }
        s = s[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((label.to_string(), value));
        s = s[end + 1..].trim_start();
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return None;
        }
    }
}

fn canonical_key(name: &str, mut labels: Vec<(String, String)>) -> String {
    if labels.is_empty() {
        return name.to_string();
    }
    labels.sort();
    let rendered: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            let escaped = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{escaped}\"")
        })
        .collect();
    format!("{name}{{{}}}", rendered.join(","))
}

/// Parses a sample value, including `+Inf`, `-Inf` and `NaN`.
fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP casecast_rtp_packets_forwarded_total RTP packets sent to subscribers
# TYPE casecast_rtp_packets_forwarded_total counter
casecast_rtp_packets_forwarded_total 12345
casecast_dropped_packets_total{reason="unroutable"} 3
casecast_participants{role="viewer"} 10
weird{b="x,y}",a="q\"uote\\"} 1.5e3 1700000000000
process_cpu_seconds_total 12.5
process_resident_memory_bytes 5.24288e7
# TYPE casecast_forward_latency_seconds histogram
casecast_forward_latency_seconds_bucket{le="0.0001"} 10
casecast_forward_latency_seconds_bucket{le="0.001"} 90
casecast_forward_latency_seconds_bucket{le="0.01"} 100
casecast_forward_latency_seconds_bucket{le="+Inf"} 100
casecast_forward_latency_seconds_sum 0.05
casecast_forward_latency_seconds_count 100
broken line
also{broken="x" 1
"#;

    #[test]
    fn parses_text() {
        let m = Metrics::parse(TEXT);
        assert_eq!(m.get(PACKETS_FORWARDED), Some(12345.0));
        assert_eq!(
            m.get(r#"casecast_dropped_packets_total{reason="unroutable"}"#),
            Some(3.0)
        );
        assert_eq!(m.get(r#"weird{a="q\"uote\\",b="x,y}"}"#), Some(1500.0));
        assert_eq!(m.get(PROCESS_RSS_BYTES), Some(52_428_800.0));
        assert_eq!(
            m.get(r#"casecast_forward_latency_seconds_bucket{le="+Inf"}"#),
            Some(100.0)
        );
        assert_eq!(m.get("broken"), None);
        assert_eq!(m.get("also"), None);
        assert_eq!(m.len(), 12);
        assert!(Metrics::parse("").is_empty());
    }

    #[test]
    fn special_values() {
        let m = Metrics::parse("a +Inf\nb -Inf\nc NaN\n");
        assert_eq!(m.get("a"), Some(f64::INFINITY));
        assert_eq!(m.get("b"), Some(f64::NEG_INFINITY));
        assert!(m.get("c").is_some_and(f64::is_nan));
    }

    #[test]
    fn deltas() {
        let before = Metrics::parse("c 10\nr 50\n");
        let after = Metrics::parse("c 25\nr 5\nn 7\n");
        assert_eq!(after.delta(&before, "c"), Some(15.0));
        assert_eq!(
            after.delta(&before, "r"),
            Some(5.0),
            "a reset counts from zero"
        );
        assert_eq!(after.delta(&before, "n"), Some(7.0));
        assert_eq!(after.delta(&before, "missing"), None);
    }

    #[test]
    fn histogram_buckets() {
        let m = Metrics::parse(TEXT);
        let h = m.histogram(FORWARD_LATENCY);
        assert_eq!(h.len(), 4);
        assert_eq!(
            h[0],
            HistogramBucket {
                le: 0.0001,
                count: 10.0
            }
        );
        assert_eq!(h[3].le, f64::INFINITY);
        assert!(m.histogram("nope").is_empty());

        let earlier = Metrics::parse(
            "casecast_forward_latency_seconds_bucket{le=\"0.0001\"} 4\n\
             casecast_forward_latency_seconds_bucket{le=\"0.001\"} 40\n",
        );
        let d = m.histogram_delta(&earlier, FORWARD_LATENCY);
        let counts: Vec<f64> = d.iter().map(|b| b.count).collect();
        assert_eq!(counts, vec![6.0, 50.0, 100.0, 100.0]);
    }

    fn b(le: f64, count: f64) -> HistogramBucket {
        HistogramBucket { le, count }
    }

    #[test]
    fn quantiles() {
        let h = [
            b(0.0001, 10.0),
            b(0.001, 90.0),
            b(0.01, 100.0),
            b(f64::INFINITY, 100.0),
        ];
        // Rank 50 falls in (0.0001, 0.001]: 40 of 80 observations in → halfway.
        let p50 = histogram_quantile(0.5, &h).unwrap();
        assert!((p50 - 0.00055).abs() < 1e-12, "{p50}");
        // Rank 99 falls in (0.001, 0.01]: 9 of 10 in.
        let p99 = histogram_quantile(0.99, &h).unwrap();
        assert!((p99 - 0.0091).abs() < 1e-12, "{p99}");
        // Rank 5 in the first bucket, which starts at 0.
        let p05 = histogram_quantile(0.05, &h).unwrap();
        assert!((p05 - 0.00005).abs() < 1e-12, "{p05}");
        let p100 = histogram_quantile(1.0, &h).unwrap();
        assert!((p100 - 0.01).abs() < 1e-12, "{p100}");
    }

    #[test]
    fn quantile_edge_cases() {
        assert_eq!(histogram_quantile(0.5, &[]), None);
        assert_eq!(
            histogram_quantile(0.5, &[b(1.0, 0.0), b(f64::INFINITY, 0.0)]),
            None
        );
        assert_eq!(histogram_quantile(1.5, &[b(1.0, 1.0)]), None);
        assert_eq!(histogram_quantile(-0.1, &[b(1.0, 1.0)]), None);
        // Everything above the last finite bound: report that bound.
        assert_eq!(
            histogram_quantile(0.5, &[b(0.1, 0.0), b(f64::INFINITY, 10.0)]),
            Some(0.1)
        );
        assert_eq!(histogram_quantile(0.5, &[b(f64::INFINITY, 10.0)]), None);
        // Unsorted and non-monotonic input is repaired.
        let h = [b(f64::INFINITY, 10.0), b(2.0, 10.0), b(1.0, 11.0)];
        assert_eq!(histogram_quantile(1.0, &h), Some(1.0));
    }
}
