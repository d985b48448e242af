//! Request ids without a system call per request: a random prefix drawn once per process (ids
//! of different nodes and restarts differ) and a counter, as `x-request-id`. tower-http's
//! `MakeRequestUuid` asked the kernel for 16 random bytes (`getrandom`) on every request.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::{HeaderValue, Request};
use tower_http::request_id::{MakeRequestId, RequestId};

/// `PREFIX-COUNTER`, both in hexadecimal.
#[derive(Debug, Clone)]
pub struct SequentialIds {
    prefix: u64,
    next: Arc<AtomicU64>,
}

impl Default for SequentialIds {
    fn default() -> Self {
        // A hasher's keys come from the OS's randomness, once per process and thread.
        let prefix = RandomState::new().hash_one(std::process::id());
        Self {
            prefix,
            next: Arc::default(),
        }
    }
}

impl MakeRequestId for SequentialIds {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        HeaderValue::try_from(format!("{:016x}-{n:x}", self.prefix))
            .ok()
            .map(RequestId::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_within_a_process_and_differ_between_processes() {
        let request = Request::new(());
        let mut ids = SequentialIds::default();
        let mut id = || ids.make_request_id(&request).expect("id").header_value().clone();
        let (first, second) = (id(), id());
        assert_ne!(first, second);
        let other = SequentialIds::default().make_request_id(&request).expect("id");
        assert_ne!(
            first,
            *other.header_value(),
            "another instance has another prefix"
        );
    }
}
