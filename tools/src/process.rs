//! What the benchmarks read about processes from `/proc`: CPU time (of the server, of
//! PostgreSQL and of the benchmark itself) and memory (peak and current resident size).

/// CPU seconds (user + system) of the server, of every `postgres` process and of this process
/// (the benchmark's client, which shares the machine).
#[derive(Debug, Clone, Copy)]
pub struct Cpu {
    pub server: f64,
    pub postgres: f64,
    pub client: f64,
}

impl Cpu {
    /// Prints each process' share of one core from `self` to `after`, `secs` apart.
    pub fn print_shares(&self, after: &Self, secs: f64) {
        println!(
            "CPU during the drive: server {:.0}%, PostgreSQL {:.0}%, this client {:.0}% (of one core; 2 cores shared)",
            100.0 * (after.server - self.server) / secs,
            100.0 * (after.postgres - self.postgres) / secs,
            100.0 * (after.client - self.client) / secs
        );
    }
}

/// User + system CPU seconds of the server process, of all `postgres` processes and of this
/// one; `None` where `/proc` cannot be read.
pub fn cpu_seconds(server_pid: Option<u32>) -> Option<Cpu> {
    let server = server_pid.map_or(Some(0.0), |pid| process_cpu(&format!("/proc/{pid}/stat")))?;
    let client = process_cpu("/proc/self/stat")?;
    let mut postgres = 0.0;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let stat = entry.path().join("stat");
        if let Ok(text) = std::fs::read_to_string(&stat)
            && text.contains("(postgres)")
        {
            postgres += process_cpu(&stat.to_string_lossy()).unwrap_or(0.0);
        }
    }
    Some(Cpu {
        server,
        postgres,
        client,
    })
}

fn process_cpu(stat_path: &str) -> Option<f64> {
    let text = std::fs::read_to_string(stat_path).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

pub fn peak_rss(pid: u32) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .map(|line| line.trim_start_matches("VmHWM:").trim().to_owned())
}

/// Resident memory of a process now, in KiB.
pub fn rss_kib(pid: u32) -> Option<i64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}
