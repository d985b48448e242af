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

impl MakeRequestId for SequentialIds {
    /// Written into a buffer on the stack: `format!` and the parse of the string it made were
    /// about 1,400 of the 32,000 instructions a `/health` request took (callgrind).
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let digits = (64 - n.leading_zeros()).div_ceil(4).max(1) as usize;
        let mut id = [0u8; 33];
        id[..17].copy_from_slice(&self.prefix);
        write_hex(n, &mut id[17..17 + digits]);
        HeaderValue::from_bytes(&id[..17 + digits])
            .ok()
            .map(RequestId::new)
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
    use super::*;

    #[test]
    fn ids_are_the_prefix_and_the_counter_in_hexadecimal() {
        let request = Request::new(());
        let mut ids = SequentialIds::default();
        let prefix = String::from_utf8(ids.prefix.to_vec()).expect("ascii");
        for expected in ["0", "1", "2"] {
            let id = ids.make_request_id(&request).expect("id");
            assert_eq!(
                id.header_value().to_str().expect("ascii"),
                format!("{prefix}{expected}")
            );
        }
        ids.next.store(0xfedc_ba98_7654_3210, Ordering::Relaxed);
        let id = ids.make_request_id(&request).expect("id");
        assert_eq!(
            id.header_value().to_str().expect("ascii"),
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
