//! The server's own CPU time and memory, in Prometheus text (Linux `/proc/self`).

/// `process_cpu_seconds_total` and `process_resident_memory_bytes`, or nothing if
/// `/proc` is not there.
pub fn render() -> String {
    let mut out = String::new();
    if let Some(cpu) = cpu_seconds() {
        out += &format!("# HELP process_cpu_seconds_total User and system CPU time spent.\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {cpu}\n");
    }
    if let Some(rss) = rss_bytes() {
        out += &format!("# HELP process_resident_memory_bytes Resident memory size.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {rss}\n");
    }
    out
}

fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the ")" that ends the command name; utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ is 100 on Linux
}

fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_own_process() {
        let t = super::render();
        assert!(t.contains("process_cpu_seconds_total "));
        assert!(t.contains("process_resident_memory_bytes "));
    }
}
