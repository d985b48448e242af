//! The service hyper calls for every request of one connection: the middleware stack
//! ([`HttpService`]), with the client's address attached to the request ([`ConnectInfo`]).
//!
//! hyper calls a service through `&self`; tower's `call` takes `&mut self`. hyper-util's
//! `TowerToHyperService` bridges the two by cloning the whole stack for every request (a boxed
//! copy of every layer, the CORS lists included, dropped again after the response): about
//! 1,500 instructions of a `/health` request (`scripts/callgrind-requests.sh`). An HTTP/1.1
//! connection serves one request at a time, so each connection keeps its own stack behind a
//! lock no other task takes, and calls it in place when it is ready, as every layer of ours
//! always is. A stack that is not ready (a layer with back-pressure, if one is ever added) is
//! cloned and awaited, as before, so the connection's own copy is never held waiting.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::response::Response;
use futures_util::future::BoxFuture;
use hyper::body::Incoming;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt};

/// What serves every request: the routes inside their middleware (`routes::router`).
pub type HttpService = BoxCloneSyncService<Request<Body>, Response, Infallible>;

/// One connection's copy of the stack.
pub struct ConnectionService {
    stack: Mutex<HttpService>,
    peer: SocketAddr,
}

impl ConnectionService {
    pub fn new(stack: HttpService, peer: SocketAddr) -> Self {
        Self {
            stack: Mutex::new(stack),
            peer,
        }
    }
}

impl hyper::service::Service<Request<Incoming>> for ConnectionService {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        self.dispatch(request.map(Body::new))
    }
}

impl ConnectionService {
    /// Calls the stack in place when it is ready, else a clone of it once that is ready.
    fn dispatch(&self, mut request: Request<Body>) -> BoxFuture<'static, Result<Response, Infallible>> {
        request.extensions_mut().insert(ConnectInfo(self.peer));
        let mut stack = self.stack.lock().unwrap_or_else(PoisonError::into_inner);
        match stack.poll_ready(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Ok(())) => stack.call(request),
            Poll::Ready(Err(never)) => match never {},
            Poll::Pending => Box::pin(stack.clone().oneshot(request)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;

    /// A stack that is ready only every other time it is asked and answers with the address
    /// it was given; counts its clones.
    struct Flaky {
        asked: Arc<AtomicUsize>,
        clones: Arc<AtomicUsize>,
    }

    impl Clone for Flaky {
        fn clone(&self) -> Self {
            self.clones.fetch_add(1, Ordering::SeqCst);
            // A copy of its own, ready when first asked.
            Self {
                asked: Arc::default(),
                clones: Arc::clone(&self.clones),
            }
        }
    }

    impl Service<Request<Body>> for Flaky {
        type Response = Response;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Response, Infallible>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            if self.asked.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) {
                Poll::Ready(Ok(()))
            } else {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }

        fn call(&mut self, request: Request<Body>) -> Self::Future {
            let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
            std::future::ready(Ok((StatusCode::OK, format!("{peer:?}")).into_response()))
        }
    }

    #[tokio::test]
    async fn a_ready_stack_is_called_in_place_and_one_not_ready_through_a_clone() {
        let clones = Arc::new(AtomicUsize::new(0));
        let stack = Flaky {
            asked: Arc::default(),
            clones: Arc::clone(&clones),
        };
        let peer: SocketAddr = "192.0.2.7:4242".parse().expect("address");
        let connection = ConnectionService::new(BoxCloneSyncService::new(stack), peer);
        for _ in 0..4 {
            let response = connection
                .dispatch(Request::new(Body::empty()))
                .await
                .expect("infallible");
            let body = axum::body::to_bytes(response.into_body(), 1024)
                .await
                .expect("body");
            assert_eq!(body, "Some(192.0.2.7:4242)");
        }
        assert_eq!(
            clones.load(Ordering::SeqCst),
            2,
            "only the two calls it was not ready for"
        );
    }
}
