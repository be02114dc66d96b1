//! Free text from callers (names, labels, locations, notes, reasons):
//! trimmed, non-empty, bounded (so no field can fill the disk or a page),
//! and free of control characters other than line breaks and tabs
//! (PostgreSQL refuses a NUL in text outright; the others only garble a
//! page).

use crate::error::{CoreError, CoreResult};

/// The longest name (user, tenant, token, key, bank).
pub const NAME_MAX: usize = 120;
/// The longest reason an admin gives for an override.
pub const REASON_MAX: usize = 500;

/// `value` trimmed, when it has 1 to `max` characters and no control
/// character but `\n`, `\r` and `\t`.
pub fn check_text(field: &str, value: &str, max: usize) -> CoreResult<String> {
    let v = value.trim();
    if v.is_empty() || v.chars().count() > max {
        return Err(CoreError::Invalid(format!(
            "{field} must have 1 to {max} characters"
        )));
    }
    if v.chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(CoreError::Invalid(format!(
            "{field} must not hold control characters"
        )));
    }
    Ok(v.to_string())
}

/// Like [`check_text`] for an optional field: blank means absent.
pub fn check_optional_text(
    field: &str,
    value: Option<&str>,
    max: usize,
) -> CoreResult<Option<String>> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        Some(v) => check_text(field, v, max).map(Some),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_trimmed_and_bounded_by_characters() {
        assert_eq!(
            check_text("name", "  Lobby ", 5).ok().as_deref(),
            Some("Lobby")
        );
        assert!(check_text("name", "   ", 5).is_err());
        assert!(check_text("name", "abcdef", 5).is_err());
        assert!(
            check_text("name", "ééééé", 5).is_ok(),
            "characters, not bytes"
        );
        assert_eq!(
            check_optional_text("reason", Some("  "), 5).ok(),
            Some(None)
        );
        assert!(check_optional_text("reason", Some("abcdef"), 5).is_err());
    }

    #[test]
    fn control_characters_are_refused_but_line_breaks_kept() {
        for bad in ["a\0b", "a\u{1b}[31m", "a\u{7f}", "a\u{85}b"] {
            assert!(check_text("notes", bad, 50).is_err(), "{bad:?}");
        }
        assert_eq!(
            check_text("notes", "line 1\r\nline 2\tend", 50)
                .ok()
                .as_deref(),
            Some("line 1\r\nline 2\tend")
        );
    }
}
