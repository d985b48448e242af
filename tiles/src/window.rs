//! The time window a `tracks` tile is drawn over (`?from=&to=`), bounded by configuration.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::Error;

/// A `tracks` window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Both ends were named: the tile does not change with the clock and may be cached.
    pub absolute: bool,
}

impl Window {
    /// `[from, to)` in Unix milliseconds, for cache keys.
    pub fn millis(&self) -> [i64; 2] {
        [self.from.timestamp_millis(), self.to.timestamp_millis()]
    }
}

/// How long windows are when a request names no `from`, and at most.
#[derive(Debug, Clone, Copy)]
pub struct Windows {
    pub default: Duration,
    pub max: Duration,
}

impl Windows {
    /// The window a request asks for: `to` defaults to now, `from` to `to` minus the default.
    pub fn window(&self, from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> Result<Window, Error> {
        let end = to.unwrap_or_else(Utc::now);
        let window = Window {
            from: from.unwrap_or_else(|| end - self.default),
            to: end,
            absolute: from.is_some() && to.is_some(),
        };
        if window.from >= window.to {
            return Err(Error::Window("`from` must be before `to`".into()));
        }
        if (window.to - window.from).to_std().unwrap_or_default() > self.max {
            return Err(Error::Window(format!(
                "the window may be at most {} s long (tiles.tracks_max_window_s)",
                self.max.as_secs()
            )));
        }
        Ok(window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_default_and_are_bounded() {
        let windows = Windows {
            default: Duration::from_secs(3_600),
            max: Duration::from_secs(86_400),
        };
        let to = Utc::now();
        let window = windows.window(None, Some(to)).expect("window");
        assert_eq!((window.to - window.from).num_seconds(), 3_600);
        assert!(!window.absolute);
        let from = to - chrono::Duration::hours(2);
        assert!(windows.window(Some(from), Some(to)).expect("window").absolute);
        assert!(windows.window(Some(to), Some(from)).is_err());
        let long_ago = to - chrono::Duration::days(2);
        assert!(windows.window(Some(long_ago), Some(to)).is_err());
    }
}
