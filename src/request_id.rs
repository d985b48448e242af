//! Request ids without a system call per request: a random prefix drawn once per process (ids
//! of different nodes and restarts differ) and a counter, as `x-request-id` on the request (for
//! the access log's span) and on its response. A request that brings its own id keeps it.
//!
//! tower-http's `MakeRequestUuid` asked the kernel for 16 random bytes (`getrandom`) on every
//! request; its `SetRequestId` and `PropagateRequestId` (two layers) also stored the id as a
//! request extension nothing read, which allocated the request's extension map: about 1,800
//! instructions of a `/health` request (`scripts/callgrind-requests.sh`).

use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use axum::http::{HeaderName, HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

/// The header that carries a request's id, on the request and on its response.
pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// `PREFIX-COUNTER`, both in hexadecimal.
#[derive(Debug, Clone)]
pub struct SequentialIds {
    /// The prefix in hexadecimal and the dash, written once.
    prefix: [u8; 17],
    next: Arc<AtomicU64>,
}

impl Default for SequentialIds {
    fn default() -> Self {
        // A hasher's keys come from the OS's randomness, once per process and thread.
        let random = RandomState::new().hash_one(std::process::id());
        let mut prefix = [b'-'; 17];
        write_hex(random, &mut prefix[..16]);
        Self {
            prefix,
            next: Arc::default(),
        }
    }
}

impl SequentialIds {
    /// The next id, written into a buffer on the stack: `format!` and the parse of the string
    /// it made were about 1,400 of the 32,000 instructions a `/health` request took.
    fn next_id(&self) -> HeaderValue {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let digits = (64 - n.leading_zeros()).div_ceil(4).max(1) as usize;
        let mut id = [0u8; 33];
        id[..17].copy_from_slice(&self.prefix);
        write_hex(n, &mut id[17..17 + digits]);
        HeaderValue::from_bytes(&id[..17 + digits]).expect("hexadecimal digits and a dash")
    }
}

/// Gives every request an `x-request-id` (unless it has one) and its response the same.
#[derive(Debug, Clone, Default)]
pub struct RequestIdLayer {
    ids: SequentialIds,
}

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestIds<S>;

    fn layer(&self, inner: S) -> RequestIds<S> {
        RequestIds {
            inner,
            ids: self.ids.clone(),
        }
    }
}

/// The service of [`RequestIdLayer`].
#[derive(Debug, Clone)]
pub struct RequestIds<S> {
    inner: S,
    ids: SequentialIds,
}

impl<S, B, R> Service<Request<B>> for RequestIds<S>
where
    S: Service<Request<B>, Response = Response<R>>,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = RequestIdFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let id = if let Some(theirs) = request.headers().get(X_REQUEST_ID) {
            theirs.clone()
        } else {
            let id = self.ids.next_id();
            request.headers_mut().insert(X_REQUEST_ID, id.clone());
            id
        };
        RequestIdFuture {
            inner: self.inner.call(request),
            id: Some(id),
        }
    }
}

pin_project! {
    /// The inner response, which gets the request's id unless it set one itself.
    pub struct RequestIdFuture<F> {
        #[pin]
        inner: F,
        id: Option<HeaderValue>,
    }
}

impl<F, R, E> Future for RequestIdFuture<F>
where
    F: Future<Output = Result<Response<R>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        if let Some(id) = this.id.take() {
            response.headers_mut().entry(X_REQUEST_ID).or_insert(id);
        }
        Poll::Ready(Ok(response))
    }
}

/// Writes `value` in lowercase hexadecimal into all of `out`, most significant digit first.
fn write_hex(mut value: u64, out: &mut [u8]) {
    for byte in out.iter_mut().rev() {
        *byte = b"0123456789abcdef"[(value & 0xf) as usize];
        value >>= 4;
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use axum::http::{HeaderMap, Response};
    use tower::ServiceExt;

    use super::*;

    fn prefix(ids: &SequentialIds) -> String {
        String::from_utf8(ids.prefix.to_vec()).expect("ascii")
    }

    #[test]
    fn ids_are_the_prefix_and_the_counter_in_hexadecimal() {
        let ids = SequentialIds::default();
        let prefix = prefix(&ids);
        for expected in ["0", "1", "2"] {
            assert_eq!(
                ids.next_id().to_str().expect("ascii"),
                format!("{prefix}{expected}")
            );
        }
        ids.next.store(0xfedc_ba98_7654_3210, Ordering::Relaxed);
        assert_eq!(
            ids.next_id().to_str().expect("ascii"),
            format!("{prefix}fedcba9876543210")
        );
        assert!(prefix.len() == 17 && prefix.ends_with('-'));
        assert!(
            prefix[..16]
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
    }

    #[test]
    fn ids_are_unique_within_a_process_and_differ_between_processes() {
        let ids = SequentialIds::default();
        let (first, second) = (ids.next_id(), ids.next_id());
        assert_ne!(first, second);
        let other = SequentialIds::default().next_id();
        assert_ne!(first, other, "another instance has another prefix");
    }

    /// Answers with the id the request reached it with, in the body, and `own` as its id if any.
    async fn call(theirs: Option<&'static str>, own: Option<&'static str>) -> (String, HeaderMap) {
        let handler = tower::service_fn(move |request: Request<()>| async move {
            let seen = request
                .headers()
                .get(X_REQUEST_ID)
                .map(|v| v.to_str().expect("ascii").to_owned());
            let mut response = Response::new(seen.unwrap_or_default());
            if let Some(own) = own {
                response
                    .headers_mut()
                    .insert(X_REQUEST_ID, HeaderValue::from_static(own));
            }
            Ok::<_, Infallible>(response)
        });
        let mut request = Request::new(());
        if let Some(theirs) = theirs {
            request
                .headers_mut()
                .insert(X_REQUEST_ID, HeaderValue::from_static(theirs));
        }
        let response = RequestIdLayer::default()
            .layer(handler)
            .oneshot(request)
            .await
            .expect("infallible");
        let (parts, seen) = response.into_parts();
        (seen, parts.headers)
    }

    #[tokio::test]
    async fn the_request_and_its_response_carry_the_same_id_and_a_client_keeps_its_own() {
        let (seen, headers) = call(None, None).await;
        assert_eq!(seen.len(), 18, "{seen}");
        assert_eq!(
            headers.get_all(X_REQUEST_ID).iter().collect::<Vec<_>>(),
            [seen.as_str()]
        );
        let (seen, headers) = call(Some("client-42"), None).await;
        assert_eq!(seen, "client-42");
        assert_eq!(
            headers.get_all(X_REQUEST_ID).iter().collect::<Vec<_>>(),
            ["client-42"]
        );
        let (_, headers) = call(None, Some("handler-7")).await;
        assert_eq!(
            headers.get_all(X_REQUEST_ID).iter().collect::<Vec<_>>(),
            ["handler-7"],
            "a response with its own id keeps it"
        );
    }
}
