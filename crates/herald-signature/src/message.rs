//! The parts of a signed message: `webhook-id` and `webhook-timestamp`
//! rules, and the signed content `{id}.{timestamp}.{body}`.
//!
//! The same rules apply when signing and when verifying, so Herald never
//! emits a message its own verifier would refuse.

use crate::error::{IdError, VerifyError};

/// Longest accepted `webhook-id`, in bytes. Ids are opaque to receivers;
/// 256 bytes is far above any real id (ULIDs are 26, UUIDs 36) and keeps the
/// memory of a replay guard bounded.
pub const MAX_ID_LEN: usize = 256;

/// Longest accepted `webhook-timestamp` text. Leading zeros are allowed by
/// `^[0-9]+$`, so this bounds the text, not the value (which must fit `i64`).
pub const MAX_TIMESTAMP_LEN: usize = 32;

/// Checks a `webhook-id`: 1 to [`MAX_ID_LEN`] bytes of visible ASCII
/// (`!` to `~`) other than `.`.
///
/// `.` separates the parts of the signed content, so an id containing it
/// makes `{id}.{timestamp}.{body}` ambiguous. Whitespace, control
/// characters and non-ASCII bytes are refused because HTTP stacks disagree
/// on them (trimmed, folded, or decoded as Latin-1), and a receiver that sees
/// a different id computes a different signature.
///
/// # Errors
/// The first rule the id breaks, as an [`IdError`].
pub fn validate_id(id: &str) -> Result<(), IdError> {
    if id.is_empty() {
        return Err(IdError::Empty);
    }
    if id.len() > MAX_ID_LEN {
        return Err(IdError::TooLong {
            len: id.len(),
            max: MAX_ID_LEN,
        });
    }
    for (offset, byte) in id.bytes().enumerate() {
        if byte == b'.' {
            return Err(IdError::FullStop { offset });
        }
        if !byte.is_ascii_graphic() {
            return Err(IdError::ForbiddenByte { offset });
        }
    }
    Ok(())
}

/// Parses `webhook-timestamp` strictly: `^[0-9]+$`, at most
/// [`MAX_TIMESTAMP_LEN`] characters, value within `i64`. No sign, no
/// spaces, no fraction; overflow is an error, never a panic or a wrap.
pub(crate) fn parse_timestamp(text: &str) -> Result<i64, VerifyError> {
    if text.is_empty() {
        return Err(VerifyError::InvalidTimestamp { problem: "empty" });
    }
    if text.len() > MAX_TIMESTAMP_LEN {
        return Err(VerifyError::InvalidTimestamp { problem: "too long" });
    }
    let mut value: i64 = 0;
    for byte in text.bytes() {
        if !byte.is_ascii_digit() {
            return Err(VerifyError::InvalidTimestamp {
                problem: "not a decimal integer of digits only (^[0-9]+$)",
            });
        }
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(i64::from(byte - b'0')))
            .ok_or(VerifyError::InvalidTimestamp {
                problem: "out of range",
            })?;
    }
    Ok(value)
}

/// Decimal digits of a non-negative timestamp, formatted on the stack so
/// signing allocates nothing for it.
pub(crate) struct TimestampText {
    digits: [u8; 20],
    start: usize,
}

impl TimestampText {
    /// `None` for a negative timestamp (not representable as `^[0-9]+$`).
    pub(crate) fn new(timestamp: i64) -> Option<Self> {
        let mut remaining = u64::try_from(timestamp).ok()?;
        let mut digits = [b'0'; 20];
        let mut start = digits.len();
        loop {
            start -= 1;
            // `remaining % 10` is below 10, so the cast cannot truncate.
            digits[start] = b'0' + (remaining % 10) as u8;
            remaining /= 10;
            if remaining == 0 {
                break;
            }
        }
        Some(Self { digits, start })
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.digits[self.start..]
    }
}

/// The signed content `{id}.{timestamp}.{body}` as five borrowed slices:
/// primitives hash them in order, so the body is never copied.
pub(crate) fn signed_parts<'a>(id: &'a str, timestamp: &'a [u8], body: &'a [u8]) -> [&'a [u8]; 5] {
    [id.as_bytes(), b".", timestamp, b".", body]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_documented_rules() {
        let cases: &[(&str, Result<(), IdError>)] = &[
            ("msg_p5jXN8AQM9LWM0D4loKWxJek", Ok(())),
            ("7a2486b3-31cf-4bd3-a460-df8845d16cd5", Ok(())),
            ("i", Ok(())),
            ("", Err(IdError::Empty)),
            ("msg.with.dots", Err(IdError::FullStop { offset: 3 })),
            ("a b", Err(IdError::ForbiddenByte { offset: 1 })),
            ("tab\t", Err(IdError::ForbiddenByte { offset: 3 })),
            ("é", Err(IdError::ForbiddenByte { offset: 0 })),
        ];
        for (id, expected) in cases {
            assert_eq!(&validate_id(id), expected, "id {id:?}");
        }
        assert_eq!(validate_id(&"a".repeat(MAX_ID_LEN)), Ok(()));
        assert_eq!(
            validate_id(&"a".repeat(MAX_ID_LEN + 1)),
            Err(IdError::TooLong {
                len: MAX_ID_LEN + 1,
                max: MAX_ID_LEN
            })
        );
    }

    #[test]
    fn timestamps_are_digits_only_and_bounded() {
        let ok: &[(&str, i64)] = &[("0", 0), ("1614265330", 1_614_265_330), ("0012", 12)];
        for (text, value) in ok {
            assert_eq!(parse_timestamp(text).ok(), Some(*value), "{text:?}");
        }
        for text in [
            "",
            "-1",
            "+1",
            " 1",
            "1 ",
            "1.5",
            "1e9",
            "9223372036854775808",
            &"1".repeat(40),
        ] {
            assert!(parse_timestamp(text).is_err(), "{text:?} must be refused");
        }
        assert_eq!(parse_timestamp("9223372036854775807").ok(), Some(i64::MAX));
    }

    #[test]
    fn timestamp_text_formats_non_negative_values() {
        for value in [0, 7, 10, 1_614_265_330, i64::MAX] {
            let text = TimestampText::new(value).map(|t| t.as_bytes().to_vec());
            assert_eq!(text, Some(value.to_string().into_bytes()));
        }
        assert!(TimestampText::new(-1).is_none());
    }
}
