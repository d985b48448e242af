//! Metrics read at each scrape: the process' CPU time, resident memory and open file
//! descriptors (from `/proc/self`, under the names every Prometheus client library uses, so
//! stock dashboards find them), the database pool's connections, the tile cache's contents
//! and builds (counted where a build happens, not on every hit, which stays free), and the log
//! lines dropped.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use sqlx::PgPool;

/// Clock ticks per second of `/proc/self/stat` (`USER_HZ`: 100 on every Linux architecture
/// geotrack builds for).
const TICKS_PER_SECOND: f64 = 100.0;

/// The collector; registered once per registry.
#[derive(Debug)]
pub struct ProcessMetrics {
    pub pool: PgPool,
    pub tiles: tiles::TileCache,
}

impl Collector for ProcessMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(seconds) = cpu_seconds() {
            let counter = ConstCounter::new(seconds);
            counter.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time spent, in seconds.",
                None,
                counter.metric_type(),
            )?)?;
        }
        let cache = self.tiles.stats();
        for (name, help, value) in [
            (
                "geotrack_tiles_hits",
                "Tiles served from the cache (counted per thread, summed at the scrape).",
                cache.hits,
            ),
            (
                "geotrack_tiles_built",
                "Tiles built from the database (cache misses, stale hits, uncached tiles).",
                cache.built,
            ),
            (
                "geotrack_tiles_evicted",
                "Tiles dropped from the cache to make room.",
                cache.evicted,
            ),
            (
                "geotrack_log_lines_dropped",
                "Log lines dropped because standard error was not read fast enough.",
                crate::log_sink::dropped_lines(),
            ),
        ] {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)?;
        }
        let count = |n: u64| i64::try_from(n).ok();
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size, in bytes.",
                resident_bytes(),
            ),
            ("process_open_fds", "Open file descriptors.", open_fds()),
            (
                "geotrack_db_pool_connections_in_use",
                "Database connections lent out of the pool.",
                Some(i64::from(self.pool.size()) - self.pool.num_idle() as i64),
            ),
            (
                "geotrack_db_pool_connections_idle",
                "Database connections open and idle in the pool.",
                i64::try_from(self.pool.num_idle()).ok(),
            ),
            (
                "geotrack_db_pool_connections_max",
                "The pool's largest number of connections.",
                Some(i64::from(self.pool.options().get_max_connections())),
            ),
            (
                "geotrack_tiles_cached",
                "Tiles in the cache (approximate).",
                count(cache.entries),
            ),
            (
                "geotrack_tiles_cached_bytes",
                "Bytes of the tiles in the cache, all encodings.",
                count(cache.bytes),
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(value) = value {
                let gauge = ConstGauge::new(value);
                gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
            }
        }
        Ok(())
    }
}

/// utime + stime of `/proc/self/stat`, in seconds.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / TICKS_PER_SECOND)
}

/// `VmRSS` of `/proc/self/status`, in bytes.
fn resident_bytes() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Entries of `/proc/self/fd`.
fn open_fds() -> Option<i64> {
    let count = std::fs::read_dir("/proc/self/fd").ok()?.count();
    i64::try_from(count).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_reads_itself() {
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(30) {
            std::hint::black_box(spin.elapsed());
        }
        assert!(cpu_seconds().is_some_and(|s| s > 0.0));
        assert!(resident_bytes().is_some_and(|b| b > 1024 * 1024));
        // At least stdin, stdout and stderr (other tests' files come and go meanwhile).
        assert!(open_fds().is_some_and(|n| n >= 3));
    }
}
