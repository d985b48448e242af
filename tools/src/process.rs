//! What the benchmarks read about processes from `/proc`: CPU time (of the server, of
//! PostgreSQL and of the benchmark itself, and the machine's idle and stolen time) and memory
//! (peak and current resident size).
//!
//! Stolen time is what the hypervisor gave other guests while this one had work to run: on a
//! shared VM it varies from day to day and from minute to minute, and a latency measured while
//! it is high says more about the host than about the server, so the benches print it.

/// CPU seconds (user + system) of the server, of every `postgres` process and of this process
/// (the benchmark's client, which shares the machine), and the machine's idle and stolen
/// seconds, summed over its cores.
#[derive(Debug, Clone, Copy)]
pub struct Cpu {
    pub server: f64,
    pub postgres: f64,
    pub client: f64,
    pub idle: f64,
    pub stolen: f64,
}

impl Cpu {
    /// Prints each process' share of one core from `self` to `after`, `secs` apart.
    pub fn print_shares(&self, after: &Self, secs: f64) {
        println!(
            "CPU during the drive: server {:.0}%, PostgreSQL {:.0}%, this client {:.0}% (of one core; 2 cores shared); {}",
            100.0 * (after.server - self.server) / secs,
            100.0 * (after.postgres - self.postgres) / secs,
            100.0 * (after.client - self.client) / secs,
            self.machine(after, secs)
        );
    }

    /// The machine's idle and stolen time from `self` to `after`, `secs` apart, as shares of
    /// one core.
    pub fn machine(&self, after: &Self, secs: f64) -> String {
        format!(
            "the machine idle {:.0}%, stolen by the hypervisor {:.0}%",
            100.0 * (after.idle - self.idle) / secs,
            100.0 * (after.stolen - self.stolen) / secs
        )
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
    let (idle, stolen) = machine_seconds(&std::fs::read_to_string("/proc/stat").ok()?)?;
    Some(Cpu {
        server,
        postgres,
        client,
        idle,
        stolen,
    })
}

/// Idle (with I/O wait) and stolen seconds of all cores, from `/proc/stat`'s first line:
/// `cpu user nice system idle iowait irq softirq steal ...`, in ticks of 1/100 s.
fn machine_seconds(stat: &str) -> Option<(f64, f64)> {
    let mut fields = stat.lines().next()?.strip_prefix("cpu ")?.split_whitespace();
    let mut ticks = [0.0; 8];
    for tick in &mut ticks {
        *tick = fields.next()?.parse().ok()?;
    }
    Some(((ticks[3] + ticks[4]) / 100.0, ticks[7] / 100.0))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_and_stolen_time_come_from_the_first_line() {
        let stat = "cpu  4705 150 1120 16250 520 0 29 830 0 0\ncpu0 2350 75 560 8125 260 0 15 415 0 0\n";
        assert_eq!(machine_seconds(stat), Some((167.7, 8.3)));
        assert_eq!(machine_seconds("cpu0 1 2 3\n"), None);
        assert_eq!(machine_seconds("cpu  1 2 3\n"), None);
    }
}
