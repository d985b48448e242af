//! `GET /tiles/{layer}/{z}/{x}/{y}` matched by hand in front of the router, the route that
//! serves the most requests. Through the router a tile request paid for axum's path
//! parameters (each name and value copied into its own allocation, then gathered into a list
//! again for the handler), two clones of the route's boxed service, and the method router:
//! about 6,000 instructions of a cached tile, 31,400 -> 25,300 without tokens (`OPEN=1
//! scripts/callgrind-requests.sh`). Here the path is split in place and the tile served by the
//! same code the routed handler calls (`tiles::serve`), counted under the same route name.
//!
//! Only plain paths are taken: a segment with a `%` escape, any other method (`HEAD`
//! included) or any other shape goes to the router, which answers exactly as before.

use std::convert::Infallible;
use std::ops::Range;
use std::task::{Context, Poll};

use axum::extract::{FromRequestParts, Request};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use futures_util::future::{BoxFuture, Either};
use tower::Service;

use crate::auth::{Authorized, DeviceApp, scope};
use crate::http_metrics::{TrackFuture, TrackLayer};
use crate::state::AppState;

/// The route's template, as the router names it (metrics, access log).
const TEMPLATE: &str = "/tiles/{layer}/{z}/{x}/{y}";

/// The router, with tile requests taken before it.
#[derive(Clone)]
pub struct TileFront<R> {
    router: R,
    state: AppState,
    track: TrackLayer,
}

impl<R> TileFront<R> {
    pub fn new(router: R, state: AppState, track: TrackLayer) -> Self {
        Self { router, state, track }
    }
}

impl<R> Service<Request> for TileFront<R>
where
    R: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<TrackFuture<BoxFuture<'static, Result<Response, Infallible>>>, R::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.router.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if request.method() != Method::GET {
            return Either::Right(self.router.call(request));
        }
        let Some(segments) = tile_segments(request.uri().path()) else {
            return Either::Right(self.router.call(request));
        };
        let answer = Box::pin(tile(self.state.clone(), segments, request));
        Either::Left(self.track.track(&Method::GET, TEMPLATE, answer))
    }
}

/// Where `{layer}`, `{z}`, `{x}` and `{y}` lie in `path`, when it is a plain tile path: four
/// non-empty segments after `/tiles/`, none percent-escaped.
fn tile_segments(path: &str) -> Option<[Range<usize>; 4]> {
    const PREFIX: &str = "/tiles/";
    let rest = path.strip_prefix(PREFIX)?;
    if rest.contains('%') {
        return None;
    }
    let mut segments = rest.split('/');
    let mut start = PREFIX.len();
    let mut next = || {
        let segment = segments.next().filter(|s| !s.is_empty())?;
        let range = start..start + segment.len();
        start = range.end + 1;
        Some(range)
    };
    let ranges = [next()?, next()?, next()?, next()?];
    segments.next().is_none().then_some(ranges)
}

/// The tile request's answer, as the routed handler gives it.
async fn tile(
    state: AppState,
    segments: [Range<usize>; 4],
    request: Request,
) -> Result<Response, Infallible> {
    let (mut parts, _body) = request.into_parts();
    let reader = match Authorized::<scope::Read, DeviceApp>::from_request_parts(&mut parts, &state).await {
        Ok(reader) => reader,
        Err(refusal) => return Ok(refusal),
    };
    let path = parts.uri.path();
    let segments = segments.map(|range| &path[range]);
    let answer = super::tiles::serve(&state.tiles, &reader, segments, &parts.uri, &parts.headers).await;
    Ok(answer.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segments(path: &str) -> Option<[&str; 4]> {
        tile_segments(path).map(|ranges| ranges.map(|range| &path[range]))
    }

    #[test]
    fn plain_tile_paths_are_split_and_others_left_to_the_router() {
        assert_eq!(
            segments("/tiles/countries/3/4/5.mvt"),
            Some(["countries", "3", "4", "5.mvt"])
        );
        assert_eq!(
            segments("/tiles/fences,positions/0/0/0"),
            Some(["fences,positions", "0", "0", "0"])
        );
        for other in [
            "/tiles/countries/3/4",
            "/tiles/countries/3/4/5/",
            "/tiles/countries/3/4/5/6",
            "/tiles/countries//4/5",
            "/tiles//3/4/5",
            "/tiles/count%72ies/3/4/5",
            "/tiles/countries/invalidate",
            "/tilesx/countries/3/4/5",
            "/api/v1/tiles/countries/3/4/5",
        ] {
            assert_eq!(segments(other), None, "{other}");
        }
    }
}
