//! What an id of a device or a fence may be: 1 to [`MAX_ID_BYTES`] bytes of text without
//! control characters (PostgreSQL refuses NUL, logs and terminals misread the rest) or
//! invisible formatting characters (bidi overrides and zero-width marks make two ids that look
//! the same differ, or an id look like another). Every path that takes an id applies it.

/// Longest id, in bytes.
pub const MAX_ID_BYTES: usize = 128;

/// Why a text cannot be an id (the message follows the id's name: "`device` must not ...").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must not be empty")]
    Empty,
    #[error("is {0} bytes long; the limit is {MAX_ID_BYTES}")]
    TooLong(usize),
    #[error("must not contain control characters")]
    Control,
    #[error("must not contain invisible formatting characters (bidi controls, zero-width marks)")]
    Invisible,
}

/// Checks an id.
pub fn check_id(id: &str) -> Result<(), IdError> {
    if id.trim().is_empty() {
        return Err(IdError::Empty);
    }
    if id.len() > MAX_ID_BYTES {
        return Err(IdError::TooLong(id.len()));
    }
    check_text(id)
}

/// Checks text shown beside ids (names): no control or invisible formatting characters.
pub fn check_text(text: &str) -> Result<(), IdError> {
    if text.chars().any(char::is_control) {
        return Err(IdError::Control);
    }
    if text.chars().any(is_invisible) {
        return Err(IdError::Invisible);
    }
    Ok(())
}

/// Unicode format characters that change how text around them reads without showing
/// themselves: zero-width spaces and joiners, bidi marks, embeddings, overrides and isolates,
/// invisible operators, the soft hyphen and the byte-order mark.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_short_visible_text() {
        assert_eq!(check_id("truck-7"), Ok(()));
        assert_eq!(check_id("user/phone é"), Ok(()));
        assert_eq!(check_id(" "), Err(IdError::Empty));
        assert_eq!(check_id(&"x".repeat(129)), Err(IdError::TooLong(129)));
        assert_eq!(check_id("a\u{0}b"), Err(IdError::Control));
        assert_eq!(check_id("a\nb"), Err(IdError::Control));
        assert_eq!(check_id("admin\u{202E}1-kcurt"), Err(IdError::Invisible));
        assert_eq!(check_id("truck\u{200B}-7"), Err(IdError::Invisible));
        assert_eq!(check_id("\u{FEFF}truck"), Err(IdError::Invisible));
    }
}
