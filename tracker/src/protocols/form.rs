//! `application/x-www-form-urlencoded` pairs (query strings, form bodies) decoded strictly: a
//! pair whose percent-decoded bytes are not UTF-8 is an error, where the usual decoders put
//! U+FFFD in its place (two different device ids would then become one).

/// Why a query or form cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the parameters are not valid UTF-8 once percent-decoded: {0}")]
pub struct FormError(String);

/// The `name=value` pairs of `input`, in order (`+` is a space, `%XX` a byte).
pub fn pairs(input: &[u8]) -> Result<Vec<(String, String)>, FormError> {
    input
        .split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(at) => (&pair[..at], &pair[at + 1..]),
                None => (pair, &[][..]),
            };
            Ok((decode(name)?, decode(value)?))
        })
        .collect()
}

fn decode(bytes: &[u8]) -> Result<String, FormError> {
    let spaced: Vec<u8> = bytes.iter().map(|&b| if b == b'+' { b' ' } else { b }).collect();
    let decoded: Vec<u8> = percent_encoding::percent_decode(&spaced).collect();
    String::from_utf8(decoded).map_err(|e| FormError(e.utf8_error().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_decode_like_forms_but_refuse_bytes_that_are_not_utf8() {
        let got = pairs(b"id=a%20b&lat=1.5&flag&x=caf%C3%A9+1&&empty=").expect("pairs");
        let want = [
            ("id", "a b"),
            ("lat", "1.5"),
            ("flag", ""),
            ("x", "café 1"),
            ("empty", ""),
        ];
        assert_eq!(got, want.map(|(k, v)| (k.to_owned(), v.to_owned())));
        assert!(
            pairs(b"id=%FF").is_err(),
            "an invalid byte is refused, not replaced"
        );
        assert!(pairs(b"id=%C3").is_err(), "a truncated character too");
    }
}
