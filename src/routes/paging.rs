//! Keyset paging, shared by the listings (`/api/v1/devices`, `/api/v1/fences`): `limit` (1 to
//! [`MAX_PAGE`], default [`DEFAULT_PAGE`]) and `after`, the last id of the previous page, and
//! the `next` link that carries them (and the listing's filters) to the following page.

use crate::error::ApiError;
use crate::extract::checked_id;

const DEFAULT_PAGE: usize = 1_000;
pub const MAX_PAGE: usize = 10_000;

/// Which page a listing asks for.
#[derive(Debug)]
pub struct Paging {
    pub limit: usize,
    pub after: Option<String>,
}

impl Paging {
    /// 400 `invalid_limit` or `invalid_id` for a bad `limit` or `after`.
    pub fn new(limit: Option<i64>, after: Option<String>) -> Result<Self, ApiError> {
        let limit = match limit {
            None => DEFAULT_PAGE,
            Some(n) => usize::try_from(n)
                .ok()
                .filter(|n| (1..=MAX_PAGE).contains(n))
                .ok_or_else(|| {
                    ApiError::bad_request("invalid_limit", format!("limit must be between 1 and {MAX_PAGE}"))
                })?,
        };
        if let Some(after) = &after {
            checked_id("`after`", after)?;
        }
        Ok(Self { limit, after })
    }

    /// The URL of the page after the id `last`: `path` with `after`, `limit` and the listing's
    /// `filters` that are set.
    pub fn next(&self, path: &str, last: &str, filters: &[(&str, Option<&str>)]) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("after", last)
            .append_pair("limit", &self.limit.to_string());
        for (name, value) in filters {
            if let Some(value) = value {
                query.append_pair(name, value);
            }
        }
        format!("{path}?{}", query.finish())
    }
}
