//! The Prometheus text format (version 0.0.4), made from the OpenMetrics text that
//! `prometheus-client` encodes. `/metrics` answers in it unless the scraper asks for OpenMetrics
//! (`Accept: application/openmetrics-text`, as Prometheus itself does): `promtool`, older
//! scrapers and most exporters' tooling read only this format.
//!
//! The differences that matter: a counter's family is named with its `_total` suffix (its
//! samples already carry it), an info metric is a gauge named `<name>_info`, `# UNIT` lines,
//! exemplars and the closing `# EOF` do not exist.

use std::fmt::Write as _;

/// The content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `openmetrics` in the Prometheus text format.
pub fn from_openmetrics(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // A family's HELP, held until its TYPE says what the family is called in this format.
    let mut help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest.split_once(' ').unwrap_or((rest, "")));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (family, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (name, kind) = match kind {
                "counter" => (format!("{family}_total"), "counter"),
                "info" => (format!("{family}_info"), "gauge"),
                "stateset" => (family.to_owned(), "gauge"),
                "gaugehistogram" => (family.to_owned(), "histogram"),
                "unknown" => (family.to_owned(), "untyped"),
                other => (family.to_owned(), other),
            };
            if let Some((_, text)) = help.take().filter(|(of, _)| *of == family) {
                let _ = writeln!(out, "# HELP {name} {text}");
            }
            let _ = writeln!(out, "# TYPE {name} {kind}");
            continue;
        }
        // Samples, without their exemplar (`... # {trace_id="..."} 1.0`).
        let sample = line.find(" # {").map_or(line, |at| &line[..at]);
        out.push_str(sample);
        out.push('\n');
    }
    out
}

/// Whether a request's `Accept` header asks for OpenMetrics.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|accept| {
        accept.split(',').any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default();
            let refused = parts.any(|p| p.replace(' ', "") == "q=0");
            media.eq_ignore_ascii_case("application/openmetrics-text") && !refused
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_take_their_total_name_and_openmetrics_only_lines_go() {
        let openmetrics = "# HELP app_requests Requests served.\n# TYPE app_requests counter\n\
            app_requests_total{route=\"/a\"} 3 # {trace_id=\"x\"} 1.0\n\
            # HELP app_build Build.\n# TYPE app_build info\napp_build_info{version=\"1\"} 1\n\
            # HELP app_seconds Latency.\n# TYPE app_seconds histogram\n# UNIT app_seconds seconds\n\
            app_seconds_bucket{le=\"+Inf\"} 1\napp_seconds_sum 0.5\napp_seconds_count 1\n# EOF\n";
        assert_eq!(
            from_openmetrics(openmetrics),
            "# HELP app_requests_total Requests served.\n# TYPE app_requests_total counter\n\
             app_requests_total{route=\"/a\"} 3\n\
             # HELP app_build_info Build.\n# TYPE app_build_info gauge\napp_build_info{version=\"1\"} 1\n\
             # HELP app_seconds Latency.\n# TYPE app_seconds histogram\n\
             app_seconds_bucket{le=\"+Inf\"} 1\napp_seconds_sum 0.5\napp_seconds_count 1\n"
        );
    }

    #[test]
    fn openmetrics_is_sent_only_when_asked_for() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(wants_openmetrics(Some(prometheus)));
        assert!(!wants_openmetrics(Some("text/plain")));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(Some("application/openmetrics-text; q=0")));
        assert!(!wants_openmetrics(None));
    }
}
