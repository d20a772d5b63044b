//! A fast lexical pre-check of HCL text, run before the HCL parser is called.
//!
//! The HCL parser recurses once per level of `{` and `[` and backtracks on unclosed nesting and
//! operator chains, so a few hundred hostile bytes can overflow a thread's stack or hold it for
//! minutes. Policies and config files are lists of blocks with literal values and never need
//! either, so rejecting them first costs nothing a real document uses.

/// The deepest `{` and `[` nesting accepted. Real policies nest three levels
/// (`path "x" { allowed_parameters = { "k" = [] } }`) and config files two.
pub const MAX_NESTING: usize = 16;

/// Whether expression operators outside strings and comments are accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operators {
    /// Reject `(`, `!`, `+`, a `-` that is not inside a bare name and the other operators, and
    /// the template sequences `${` and `%{` inside strings.
    Reject,
    /// Accept operators, checking only the nesting depth.
    Allow,
}

/// The reason [`check`] rejected a text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    /// `{` and `[` nest deeper than allowed.
    #[error("braces and brackets nest more than {max} levels deep")]
    TooDeep {
        /// The limit that was passed.
        max: usize,
    },
    /// An operator outside a quoted string, with [`Operators::Reject`].
    #[error(
        "unexpected '{found}' at byte {offset}: only blocks and literal values are allowed, so \
         operators and expressions must be inside quoted strings"
    )]
    Operator {
        /// The operator character.
        found: char,
        /// Its byte offset in the text.
        offset: usize,
    },
    /// A `${` or `%{` template sequence inside a string, with [`Operators::Reject`].
    #[error(
        "unexpected template sequence '{sequence}' at byte {offset}: write '{escaped}' for the \
         literal characters"
    )]
    Template {
        /// `${` or `%{`.
        sequence: &'static str,
        /// The escaped form, `$${` or `%%{`.
        escaped: &'static str,
        /// Its byte offset in the text.
        offset: usize,
    },
}

/// Scans `text`, skipping quoted strings and comments, and rejects nesting deeper than
/// `max_nesting` and, with [`Operators::Reject`], expression operators.
pub fn check(text: &str, max_nesting: usize, operators: Operators) -> Result<(), ShapeError> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        let next = bytes.get(index + 1).copied();
        match byte {
            b'"' => index = skip_string(bytes, index + 1, operators)?,
            b'#' => index = skip_line(bytes, index),
            b'/' if next == Some(b'/') => index = skip_line(bytes, index),
            b'/' if next == Some(b'*') => index = skip_block_comment(bytes, index + 2),
            b'{' | b'[' => {
                depth += 1;
                if depth > max_nesting {
                    return Err(ShapeError::TooDeep { max: max_nesting });
                }
                index += 1;
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                index += 1;
            }
            b'-' if is_word_byte(bytes, index.checked_sub(1))
                && is_word_byte(bytes, Some(index + 1)) =>
            {
                // A dash inside a bare name such as `allowed-key`.
                index += 1;
            }
            b'(' | b')' | b'!' | b'?' | b'+' | b'-' | b'*' | b'/' | b'%' | b'<' | b'>' | b'&'
            | b'|'
                if operators == Operators::Reject =>
            {
                return Err(ShapeError::Operator {
                    found: char::from(byte),
                    offset: index,
                });
            }
            _ => index += 1,
        }
    }
    Ok(())
}

/// Returns the index just past the string that starts at `start` (after its opening quote).
///
/// With [`Operators::Reject`], a template sequence fails the scan: the parser evaluates
/// `${...}` and `%{...}` inside strings, and unclosed ones backtrack as badly as operators.
fn skip_string(bytes: &[u8], start: usize, operators: Operators) -> Result<usize, ShapeError> {
    let mut index = start;
    while index < bytes.len() {
        let rest = &bytes[index..];
        match bytes[index] {
            b'\\' => index += 2,
            b'"' => return Ok(index + 1),
            // The escapes `$${` and `%%{` stand for the literal characters.
            b'$' | b'%' if rest.get(1) == Some(&bytes[index]) && rest.get(2) == Some(&b'{') => {
                index += 3;
            }
            b'$' | b'%' if rest.get(1) == Some(&b'{') && operators == Operators::Reject => {
                let (sequence, escaped) = if bytes[index] == b'$' {
                    ("${", "$${")
                } else {
                    ("%{", "%%{")
                };
                return Err(ShapeError::Template {
                    sequence,
                    escaped,
                    offset: index,
                });
            }
            _ => index += 1,
        }
    }
    Ok(index)
}

/// Returns the index of the line break that ends the comment at `start`.
fn skip_line(bytes: &[u8], start: usize) -> usize {
    bytes[start..]
        .iter()
        .position(|&byte| byte == b'\n')
        .map_or(bytes.len(), |offset| start + offset)
}

/// Returns the index just past the `*/` that closes the comment opened before `start`.
fn skip_block_comment(bytes: &[u8], start: usize) -> usize {
    bytes[start..]
        .windows(2)
        .position(|pair| pair == b"*/")
        .map_or(bytes.len(), |offset| start + offset + 2)
}

fn is_word_byte(bytes: &[u8], index: Option<usize>) -> bool {
    index
        .and_then(|index| bytes.get(index))
        .is_some_and(|byte| byte.is_ascii_alphanumeric() || *byte == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_past_the_limit_is_rejected() {
        let deep = format!("a {}{}", "[".repeat(17), "]".repeat(17));
        let error = check(&deep, MAX_NESTING, Operators::Allow).unwrap_err();
        assert_eq!(error, ShapeError::TooDeep { max: 16 });
        let shallow = format!("a {}{}", "[".repeat(16), "]".repeat(16));
        assert_eq!(check(&shallow, MAX_NESTING, Operators::Allow), Ok(()));
    }

    #[test]
    fn strings_and_comments_are_skipped() {
        let text = "# (a { b\n// c [ d\n/* e ! { */\nkey = \"{[(!\\\"{\"\n";
        assert_eq!(check(text, 0, Operators::Reject), Ok(()));
    }

    #[test]
    fn operators_rejected_only_when_asked() {
        let text = "a = (1 + 2)";
        let error = check(text, MAX_NESTING, Operators::Reject).unwrap_err();
        assert_eq!(
            error,
            ShapeError::Operator {
                found: '(',
                offset: 4
            }
        );
        assert_eq!(check(text, MAX_NESTING, Operators::Allow), Ok(()));
    }

    #[test]
    fn template_sequences_rejected_only_when_asked() {
        let text = "path \"a/${b}\" {}";
        let error = check(text, MAX_NESTING, Operators::Reject).unwrap_err();
        assert!(
            matches!(error, ShapeError::Template { offset: 8, .. }),
            "{error}"
        );
        assert_eq!(check(text, MAX_NESTING, Operators::Allow), Ok(()));
        let escaped = "path \"a/$${b}/%%{c}/{{identity.entity.id}}\" {}";
        assert_eq!(check(escaped, MAX_NESTING, Operators::Reject), Ok(()));
    }

    #[test]
    fn dash_in_bare_name_allowed() {
        assert_eq!(
            check("bare-key = 1", MAX_NESTING, Operators::Reject),
            Ok(())
        );
        assert!(check("key = -1", MAX_NESTING, Operators::Reject).is_err());
    }
}
