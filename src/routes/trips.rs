//! Fleet reports from a device's history: its trips, its stops and a summary, in JSON or CSV
//! (`dispatch::trips` says what a trip and a stop are; the rules can be tuned per request).

use std::fmt::Write as _;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use dispatch::trips::{Report, TripRules};
use serde::Deserialize;
use serde_json::json;
use sqlx::PgPool;

use crate::auth::{Authorized, scope};
use crate::error::{ApiError, ErrorBody, TokenRefusals};
use crate::extract::{Params, PathId};

/// The query parameters every report takes.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReportParams {
    /// RFC 3339 or epoch (default: 24 h before `to`)
    from: Option<String>,
    /// RFC 3339 or epoch, exclusive (default: now)
    to: Option<String>,
    /// json or csv; without it, `Accept: text/csv` chooses CSV
    format: Option<String>,
    /// Fastest speed of a fix inside a stop, m/s (default 1)
    stop_speed_mps: Option<f64>,
    /// Shortest stop, seconds (default 300)
    min_stop_s: Option<i64>,
    /// How far a stop's fixes may stray from its first, metres (default 100)
    stop_radius_m: Option<f64>,
    /// Shortest trip kept, metres (default 200)
    min_trip_m: Option<f64>,
}

/// Which part of the report a route answers with.
#[derive(Debug, Clone, Copy)]
enum Part {
    Trips,
    Stops,
    Summary,
}

/// `GET /api/v1/devices/{id}/trips`: the trips in `[from, to)`, oldest first.
#[utoipa::path(get, path = "/api/v1/devices/{id}/trips", operation_id = "get_device_trips", tag = "reports", security(("bearer" = [])),
    params(("id" = String, Path, description = "Device id"), ReportParams),
    responses((status = 200, description = "`{device, from, to, rules, trips: [{start, end, duration_s, start_position, end_position, \
            distance_m, max_speed_mps, avg_speed_mps, fixes}]}`, or CSV with one row per trip", content((serde_json::Value = "application/json"), (String = "text/csv"))),
        ReportRefusals, TokenRefusals))]
pub async fn trips(
    db: State<PgPool>,
    reader: Authorized<scope::Read>,
    id: PathId,
    params: Params<ReportParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    answer(Part::Trips, db, reader, id, params, &headers).await
}

/// `GET /api/v1/devices/{id}/stops`: the stops in `[from, to)`, oldest first.
#[utoipa::path(get, path = "/api/v1/devices/{id}/stops", operation_id = "get_device_stops", tag = "reports", security(("bearer" = [])),
    params(("id" = String, Path, description = "Device id"), ReportParams),
    responses((status = 200, description = "`{device, from, to, rules, stops: [{start, end, duration_s, position, fixes}]}`, or CSV \
            with one row per stop", content((serde_json::Value = "application/json"), (String = "text/csv"))),
        ReportRefusals, TokenRefusals))]
pub async fn stops(
    db: State<PgPool>,
    reader: Authorized<scope::Read>,
    id: PathId,
    params: Params<ReportParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    answer(Part::Stops, db, reader, id, params, &headers).await
}

/// `GET /api/v1/devices/{id}/summary`: distance, driving and stopped time, speeds in `[from, to)`.
#[utoipa::path(get, path = "/api/v1/devices/{id}/summary", operation_id = "get_device_summary", tag = "reports", security(("bearer" = [])),
    params(("id" = String, Path, description = "Device id"), ReportParams),
    responses((status = 200, description = "`{device, from, to, rules, summary: {fixes, trips, stops, distance_m, driving_s, stopped_s, \
            max_speed_mps, avg_speed_mps}}`, or CSV with one row", content((serde_json::Value = "application/json"), (String = "text/csv"))),
        ReportRefusals, TokenRefusals))]
pub async fn summary(
    db: State<PgPool>,
    reader: Authorized<scope::Read>,
    id: PathId,
    params: Params<ReportParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    answer(Part::Summary, db, reader, id, params, &headers).await
}

/// The refusals of every report route.
#[derive(Debug, utoipa::IntoResponses)]
#[allow(dead_code)] // described in the OpenAPI document; `ApiError` builds the answers
pub enum ReportRefusals {
    /// Not a device id, bad time range, rules or format, or an unknown parameter
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// Never reported
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// The database is unavailable: retry after Retry-After
    #[response(status = 503, headers(("Retry-After" = u64, description = "Seconds to wait")))]
    Unavailable(ErrorBody),
}

async fn answer(
    part: Part,
    State(db): State<PgPool>,
    reader: Authorized<scope::Read>,
    PathId(id): PathId,
    Params(params): Params<ReportParams>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    reader.require_device(&id)?;
    let (from, to) = crate::extract::history_range(params.from.as_deref(), params.to.as_deref())?;
    let rules = rules(&params)?;
    let csv = wants_csv(params.format.as_deref(), headers)?;
    if tracker::latest::get(&db, &id).await?.is_none() {
        return Err(super::devices::unknown_device(&id));
    }
    let report = dispatch::history::report(&db, &id, from, to, rules).await?;
    if csv {
        let body = to_csv(part, &id, from, to, &report);
        return Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response());
    }
    let mut body = json!({"device": id, "from": from, "to": to, "rules": rules});
    body[name(part)] = match part {
        Part::Trips => json!(report.trips),
        Part::Stops => json!(report.stops),
        Part::Summary => json!(report.summary),
    };
    Ok(Json(body).into_response())
}

fn name(part: Part) -> &'static str {
    match part {
        Part::Trips => "trips",
        Part::Stops => "stops",
        Part::Summary => "summary",
    }
}

/// The rules with the request's overrides; 400 `invalid_rules` for values that make no sense.
fn rules(params: &ReportParams) -> Result<TripRules, ApiError> {
    let defaults = TripRules::default();
    let rules = TripRules {
        stop_speed_mps: params.stop_speed_mps.unwrap_or(defaults.stop_speed_mps),
        min_stop_s: params.min_stop_s.unwrap_or(defaults.min_stop_s),
        stop_radius_m: params.stop_radius_m.unwrap_or(defaults.stop_radius_m),
        min_trip_m: params.min_trip_m.unwrap_or(defaults.min_trip_m),
    };
    let sane = |v: f64, max: f64| v.is_finite() && (0.0..=max).contains(&v);
    if sane(rules.stop_speed_mps, 100.0)
        && (0..=86_400).contains(&rules.min_stop_s)
        && sane(rules.stop_radius_m, 100_000.0)
        && rules.stop_radius_m > 0.0
        && sane(rules.min_trip_m, 1_000_000.0)
    {
        Ok(rules)
    } else {
        Err(ApiError::bad_request(
            "invalid_rules",
            "stop_speed_mps must be 0 to 100, min_stop_s 0 to 86400, stop_radius_m above 0 and at most 100000, \
             min_trip_m 0 to 1000000",
        ))
    }
}

/// CSV when `format=csv`, or without `format` when `Accept` names `text/csv`.
fn wants_csv(format: Option<&str>, headers: &HeaderMap) -> Result<bool, ApiError> {
    match format {
        Some("csv") => Ok(true),
        Some("json") => Ok(false),
        Some(other) => Err(ApiError::bad_request(
            "invalid_format",
            format!("format {other:?} is not one of json, csv"),
        )),
        None => Ok(headers
            .get(header::ACCEPT)
            .and_then(|a| a.to_str().ok())
            .is_some_and(|a| a.contains("text/csv"))),
    }
}

fn to_csv(part: Part, device: &str, from: DateTime<Utc>, to: DateTime<Utc>, report: &Report) -> String {
    let time = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::AutoSi, true);
    let mut cell = String::new();
    tracker::export::push_csv_field(&mut cell, device);
    let device = cell;
    let mut out = String::new();
    match part {
        Part::Trips => {
            out.push_str("device,start,end,duration_s,start_lon,start_lat,end_lon,end_lat,distance_m,max_speed_mps,avg_speed_mps,fixes\n");
            for t in &report.trips {
                let [(a, b), (c, d)] = [
                    (t.start_position[0], t.start_position[1]),
                    (t.end_position[0], t.end_position[1]),
                ];
                let _ = writeln!(
                    out,
                    "{device},{},{},{},{a},{b},{c},{d},{:.1},{:.2},{:.2},{}",
                    time(t.start),
                    time(t.end),
                    t.duration_s,
                    t.distance_m,
                    t.max_speed_mps,
                    t.avg_speed_mps,
                    t.fixes
                );
            }
        }
        Part::Stops => {
            out.push_str("device,start,end,duration_s,lon,lat,fixes\n");
            for s in &report.stops {
                let [lon, lat] = s.position;
                let _ = writeln!(
                    out,
                    "{device},{},{},{},{lon},{lat},{}",
                    time(s.start),
                    time(s.end),
                    s.duration_s,
                    s.fixes
                );
            }
        }
        Part::Summary => {
            let s = &report.summary;
            out.push_str("device,from,to,fixes,trips,stops,distance_m,driving_s,stopped_s,max_speed_mps,avg_speed_mps\n");
            let _ = writeln!(
                out,
                "{device},{},{},{},{},{},{:.1},{},{},{:.2},{:.2}",
                time(from),
                time(to),
                s.fixes,
                s.trips,
                s.stops,
                s.distance_m,
                s.driving_s,
                s.stopped_s,
                s.max_speed_mps,
                s.avg_speed_mps
            );
        }
    }
    out
}
