//! Content codings of bodies kept compressed (cached tiles): which one a request's
//! `Accept-Encoding` allows (RFC 9110 §12.5.3), compressing into each once, and a strong
//! validator for each.

use std::io::Write as _;

use flate2::Compression;
use flate2::write::GzEncoder;
use http::{HeaderMap, HeaderValue, header};

/// A coding a body is kept in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Identity,
    Gzip,
    Brotli,
}

/// Brotli quality for kept bodies. Measured on 400 tiles of the tile benchmark (2.7 MiB plain):
/// quality 5 leaves 46% of the plain size at 26 MB/s, where gzip leaves 54% at 60 MB/s (fast,
/// used here) and 50% at 6 MB/s (best); quality 11 leaves 39% but at 1 MB/s.
const BROTLI_QUALITY: u32 = 5;
/// Brotli window (log2 bytes); tiles are small, so a larger window gains nothing.
const BROTLI_WINDOW: u32 = 22;

impl Coding {
    /// Every coding, in the order of [`Validators`].
    const ALL: [Self; 3] = [Self::Identity, Self::Gzip, Self::Brotli];

    /// Its name in `Content-Encoding` (`None` for identity, which is not named).
    fn token(self) -> Option<&'static str> {
        match self {
            Self::Identity => None,
            Self::Gzip => Some("gzip"),
            Self::Brotli => Some("br"),
        }
    }

    /// The `Content-Encoding` value (`None` for identity).
    pub fn header(self) -> Option<HeaderValue> {
        self.token().map(HeaderValue::from_static)
    }

    /// `body` compressed in this coding.
    pub fn encode(self, body: &[u8]) -> Vec<u8> {
        match self {
            Self::Identity => body.to_vec(),
            Self::Gzip => {
                let mut encoder = GzEncoder::new(Vec::with_capacity(body.len() / 2), Compression::fast());
                // Writing into a Vec cannot fail.
                let _ = encoder.write_all(body);
                encoder.finish().unwrap_or_default()
            }
            Self::Brotli => {
                let mut out = Vec::with_capacity(body.len() / 2);
                {
                    let mut writer =
                        brotli::CompressorWriter::new(&mut out, 4096, BROTLI_QUALITY, BROTLI_WINDOW);
                    let _ = writer.write_all(body);
                }
                out
            }
        }
    }

    /// The best coding the request accepts: brotli, then gzip (the smaller first, unless the
    /// client ranks gzip higher), else identity; `None` when it accepts none of them (say
    /// `identity;q=0` alone, or `*;q=0`), which RFC 9110 §12.5.3 answers with 406.
    pub fn negotiate(headers: &HeaderMap) -> Option<Self> {
        let (mut brotli, mut gzip, mut identity, mut any) = (None, None, None, None);
        for value in headers.get_all(header::ACCEPT_ENCODING) {
            let Ok(value) = value.to_str() else { continue };
            for entry in value.split(',') {
                let mut parts = entry.split(';');
                let coding = parts.next().unwrap_or("").trim();
                let quality = parts
                    .find_map(|p| p.trim().strip_prefix("q="))
                    .map_or(1.0, |q| q.trim().parse::<f32>().unwrap_or(0.0));
                let slot = if coding.eq_ignore_ascii_case("br") {
                    &mut brotli
                } else if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                    &mut gzip
                } else if coding.eq_ignore_ascii_case("identity") {
                    &mut identity
                } else if coding == "*" {
                    &mut any
                } else {
                    continue;
                };
                *slot = Some(quality);
            }
        }
        // `*` stands for every coding not named; identity is acceptable unless refused.
        let (brotli, gzip) = (brotli.or(any).unwrap_or(0.0), gzip.or(any).unwrap_or(0.0));
        if brotli > 0.0 && brotli >= gzip {
            Some(Self::Brotli)
        } else if gzip > 0.0 {
            Some(Self::Gzip)
        } else if identity.or(any).is_none_or(|q| q > 0.0) {
            Some(Self::Identity)
        } else {
            None
        }
    }
}

/// Strong validators (`ETag` values) of one content, one per coding: RFC 9110 §8.8.3 has a
/// strong validator differ between representations, and the gzip and brotli bodies are other
/// representations than the plain one (a cache keeping several must not confuse them).
#[derive(Debug, Clone)]
pub struct Validators([HeaderValue; 3]);

impl Validators {
    /// `"{tag}"` for the plain content, `"{tag}-gzip"` and `"{tag}-br"` for the others. `tag`
    /// holds only characters valid in an entity tag (e.g. letters, digits, '-' and '_').
    pub fn new(tag: &str) -> Self {
        Self(Coding::ALL.map(|coding| {
            let tagged = match coding.token() {
                Some(token) => format!("\"{tag}-{token}\""),
                None => format!("\"{tag}\""),
            };
            // A tag of other characters would give an empty validator; callers never pass one.
            HeaderValue::try_from(tagged).unwrap_or_else(|_| HeaderValue::from_static("\"\""))
        }))
    }

    /// The validator of the content in `coding`.
    pub fn get(&self, coding: Coding) -> &HeaderValue {
        &self.0[coding as usize]
    }

    /// Whether `tag` (as sent in `If-None-Match`) validates the content in any coding.
    pub fn any_is(&self, tag: &[u8]) -> bool {
        self.0.iter().any(|v| v.as_bytes() == tag)
    }

    /// Bytes they hold.
    pub fn size(&self) -> usize {
        self.0.iter().map(HeaderValue::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn negotiated(accept: &[&str]) -> Option<Coding> {
        let mut headers = HeaderMap::new();
        for value in accept {
            headers.append(
                header::ACCEPT_ENCODING,
                HeaderValue::from_str(value).expect("value"),
            );
        }
        Coding::negotiate(&headers)
    }

    #[test]
    fn browsers_get_brotli_and_older_clients_gzip() {
        assert_eq!(negotiated(&["gzip, deflate, br, zstd"]), Some(Coding::Brotli));
        assert_eq!(negotiated(&["gzip, deflate"]), Some(Coding::Gzip));
        assert_eq!(negotiated(&["x-gzip"]), Some(Coding::Gzip));
        assert_eq!(negotiated(&[]), Some(Coding::Identity));
        assert_eq!(negotiated(&["deflate"]), Some(Coding::Identity));
        assert_eq!(
            negotiated(&["gzip", "br"]),
            Some(Coding::Brotli),
            "several header lines"
        );
    }

    #[test]
    fn qualities_rank_and_refuse() {
        assert_eq!(negotiated(&["br;q=0.5, gzip"]), Some(Coding::Gzip));
        assert_eq!(negotiated(&["br;q=0, gzip;q=0.1"]), Some(Coding::Gzip));
        assert_eq!(negotiated(&["gzip;q=0"]), Some(Coding::Identity));
        assert_eq!(negotiated(&["gzip; q=0.000"]), Some(Coding::Identity));
        assert_eq!(negotiated(&["*"]), Some(Coding::Brotli));
        assert_eq!(negotiated(&["*;q=0.5, br;q=0"]), Some(Coding::Gzip));
        assert_eq!(
            negotiated(&["gzip;q=nonsense"]),
            Some(Coding::Identity),
            "a bad q counts as 0"
        );
    }

    #[test]
    fn identity_is_acceptable_unless_refused() {
        assert_eq!(negotiated(&["br, identity;q=0"]), Some(Coding::Brotli));
        assert_eq!(negotiated(&["gzip;q=0, identity"]), Some(Coding::Identity));
        assert_eq!(negotiated(&["br;q=0, gzip;q=0, *;q=0.1"]), Some(Coding::Identity));
        assert_eq!(negotiated(&["identity;q=0"]), None);
        assert_eq!(negotiated(&["*;q=0"]), None);
        assert_eq!(negotiated(&["gzip;q=0, identity;q=0"]), None);
    }

    #[test]
    fn each_coding_has_its_own_validator() {
        let tags = Validators::new("points-00ff");
        assert_eq!(tags.get(Coding::Identity), "\"points-00ff\"");
        assert_eq!(tags.get(Coding::Gzip), "\"points-00ff-gzip\"");
        assert_eq!(tags.get(Coding::Brotli), "\"points-00ff-br\"");
        assert!(tags.any_is(b"\"points-00ff-br\"") && !tags.any_is(b"\"points-00ff-zstd\""));
        assert_eq!(tags.size(), 13 + 18 + 16);
    }

    #[test]
    fn encodings_round_trip() {
        let body: Vec<u8> = (0..20_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        let gzip = Coding::Gzip.encode(&body);
        let mut unzipped = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gzip.as_slice()), &mut unzipped)
            .expect("gzip");
        assert_eq!(unzipped, body);
        let br = Coding::Brotli.encode(&body);
        let mut unbrotlied = Vec::new();
        brotli::BrotliDecompress(&mut br.as_slice(), &mut unbrotlied).expect("brotli");
        assert_eq!(unbrotlied, body);
        assert!(br.len() < body.len() / 4 && gzip.len() < body.len() / 4);
    }
}
