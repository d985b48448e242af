//! How often requests reach one shard writer, which decides whether lingering for a fuller
//! batch can pay.
//!
//! Lingering gathers more requests into one transaction, but only if another request arrives
//! within the linger time. At a lower rate it gathers nothing and adds the whole linger to
//! every fix's latency (and to every alert's). So a writer keeps a moving average of the gaps
//! between the requests it takes, stamped when they were queued, and lingers only while that
//! average is shorter than the linger time. Under load batches grow without lingering too:
//! what queues during one transaction is the next batch.

use std::time::Duration;

use tokio::time::Instant;

/// Weight of the newest gap in the average: 1/8, so a few requests change the decision but a
/// single odd gap does not.
const NEWEST_WEIGHT: u32 = 8;

/// A gap counts at most this many linger times, so that after a long idle spell a few quick
/// requests are enough to make lingering pay again.
const GAP_CAP_LINGERS: u32 = 8;

/// The moving average of the gaps between queued requests of one shard.
#[derive(Debug)]
pub(crate) struct Arrivals {
    linger: Duration,
    last: Option<Instant>,
    /// `None` until two requests were seen: lingering is assumed to pay until then.
    mean_gap: Option<Duration>,
}

impl Arrivals {
    pub(crate) fn new(linger: Duration) -> Self {
        Self {
            linger,
            last: None,
            mean_gap: None,
        }
    }

    /// A request queued at `queued_at` was taken. Requests are taken in queue order, but their
    /// stamps may be a little out of order (two senders racing): such a gap counts as zero.
    pub(crate) fn record(&mut self, queued_at: Instant) {
        if let Some(last) = self.last {
            let gap = queued_at
                .saturating_duration_since(last)
                .min(self.linger * GAP_CAP_LINGERS);
            self.mean_gap = Some(match self.mean_gap {
                None => gap,
                Some(mean) => (mean * (NEWEST_WEIGHT - 1) + gap) / NEWEST_WEIGHT,
            });
        }
        self.last = Some(self.last.map_or(queued_at, |last| last.max(queued_at)));
    }

    /// How long to wait for more requests after taking the first of a batch: the linger time
    /// when requests have been arriving faster than that, else nothing.
    pub(crate) fn linger(&self) -> Duration {
        match self.mean_gap {
            Some(mean) if mean >= self.linger => Duration::ZERO,
            _ => self.linger,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINGER: Duration = Duration::from_millis(2);

    /// Records requests `gap` apart, starting at `at`; returns the time of the last.
    fn feed(arrivals: &mut Arrivals, at: Instant, gap: Duration, count: u32) -> Instant {
        let mut t = at;
        for _ in 0..count {
            t += gap;
            arrivals.record(t);
        }
        t
    }

    #[test]
    fn lingers_until_it_knows_the_rate() {
        let mut arrivals = Arrivals::new(LINGER);
        assert_eq!(arrivals.linger(), LINGER);
        arrivals.record(Instant::now());
        assert_eq!(
            arrivals.linger(),
            LINGER,
            "one request says nothing about the rate"
        );
    }

    #[test]
    fn requests_further_apart_than_the_linger_are_written_at_once() {
        let mut arrivals = Arrivals::new(LINGER);
        feed(&mut arrivals, Instant::now(), Duration::from_millis(25), 3);
        assert_eq!(arrivals.linger(), Duration::ZERO);
    }

    #[test]
    fn requests_closer_than_the_linger_are_gathered() {
        let mut arrivals = Arrivals::new(LINGER);
        feed(&mut arrivals, Instant::now(), Duration::from_micros(300), 20);
        assert_eq!(arrivals.linger(), LINGER);
    }

    #[test]
    fn a_rising_rate_brings_lingering_back_soon_after_an_idle_spell() {
        let mut arrivals = Arrivals::new(LINGER);
        let start = Instant::now();
        let t = feed(&mut arrivals, start, Duration::from_millis(300), 5);
        arrivals.record(t + Duration::from_secs(3_600));
        assert_eq!(arrivals.linger(), Duration::ZERO);
        let t = t + Duration::from_secs(3_600);
        // The hour counts as 8 lingers: some twenty quick requests outweigh it.
        feed(&mut arrivals, t, Duration::from_micros(100), 24);
        assert_eq!(arrivals.linger(), LINGER);
    }

    #[test]
    fn a_single_long_gap_among_quick_requests_does_not_stop_lingering() {
        let mut arrivals = Arrivals::new(LINGER);
        let t = feed(&mut arrivals, Instant::now(), Duration::from_micros(200), 30);
        feed(&mut arrivals, t, Duration::from_millis(5), 1);
        assert_eq!(arrivals.linger(), LINGER);
    }

    #[test]
    fn stamps_out_of_order_count_as_no_gap() {
        let mut arrivals = Arrivals::new(LINGER);
        let t = Instant::now() + Duration::from_secs(1);
        arrivals.record(t);
        arrivals.record(t - Duration::from_millis(50));
        assert_eq!(arrivals.linger(), LINGER);
    }

    #[test]
    fn no_linger_configured_means_none() {
        let mut arrivals = Arrivals::new(Duration::ZERO);
        feed(&mut arrivals, Instant::now(), Duration::from_micros(10), 5);
        assert_eq!(arrivals.linger(), Duration::ZERO);
    }
}
