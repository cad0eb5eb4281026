//! Strict base64 helpers shared by keys, signatures, JWKS and JWTs.
//!
//! Every decoder here is canonical: it refuses bad characters, wrong or
//! missing padding (standard alphabet) or any padding (URL-safe alphabet),
//! and non-zero trailing bits, so one byte string has exactly one accepted
//! text form. A lenient decoder is how `whsec_!!!!` becomes an empty,
//! forgeable key.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use crate::error::Base64Problem;

/// Standard alphabet, canonical padding: keys and `v1`/`v1a` entries.
pub(crate) fn encode_standard(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Length of the standard padded encoding of `len` bytes.
pub(crate) fn standard_encoded_len(len: usize) -> usize {
    base64::encoded_len(len, true).unwrap_or(usize::MAX)
}

/// Appends the standard padded encoding of `bytes` to `out` (no allocation
/// when `out` has the capacity).
pub(crate) fn encode_standard_into(bytes: &[u8], out: &mut String) {
    STANDARD.encode_string(bytes, out);
}

/// URL-safe alphabet without padding: JWK members and JWS segments.
pub(crate) fn encode_url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes canonical padded standard base64.
pub(crate) fn decode_standard(text: &str) -> Result<Vec<u8>, Base64Problem> {
    STANDARD.decode(text).map_err(Base64Problem::from)
}

/// Decodes canonical unpadded URL-safe base64.
pub(crate) fn decode_url(text: &str) -> Result<Vec<u8>, Base64Problem> {
    URL_SAFE_NO_PAD.decode(text).map_err(Base64Problem::from)
}

/// Decodes canonical padded standard base64 that must hold exactly `N`
/// bytes, without allocating. `None` for any other length or any encoding
/// problem: signature entries of the wrong shape are skipped, not errors.
pub(crate) fn decode_standard_exact<const N: usize>(text: &str) -> Option<[u8; N]> {
    let expected_len = base64::encoded_len(N, true)?;
    if text.len() != expected_len {
        return None;
    }
    // The decoder's length estimate rounds up to whole 3-byte groups.
    let mut buffer = [0u8; 96];
    let scratch = buffer.get_mut(..N.div_ceil(3) * 3)?;
    let written = STANDARD.decode_slice(text, scratch).ok()?;
    if written != N {
        return None;
    }
    let mut out = [0u8; N];
    out.copy_from_slice(scratch.get(..N)?);
    Some(out)
}

impl From<base64::DecodeError> for Base64Problem {
    fn from(error: base64::DecodeError) -> Self {
        match error {
            // The offending byte is deliberately dropped: it may be part of
            // a secret and errors end up in logs.
            base64::DecodeError::InvalidByte(offset, _) => Base64Problem::InvalidCharacter { offset },
            base64::DecodeError::InvalidLength(_) => Base64Problem::InvalidLength,
            base64::DecodeError::InvalidLastSymbol { .. } => Base64Problem::NonCanonical,
            base64::DecodeError::InvalidPadding => Base64Problem::InvalidPadding,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_decoding_accepts_only_canonical_text_of_the_right_length() {
        let bytes = [7u8; 32];
        let text = encode_standard(&bytes);
        assert_eq!(decode_standard_exact::<32>(&text), Some(bytes));
        assert_eq!(decode_standard_exact::<32>(text.trim_end_matches('=')), None);
        assert_eq!(decode_standard_exact::<64>(&text), None);
        // Same length, non-zero trailing bits before the padding.
        let mut tampered = text.clone();
        tampered.replace_range(42..43, "x");
        assert_eq!(decode_standard_exact::<32>(&tampered), None);
        let sixty_four = [9u8; 64];
        let text = encode_standard(&sixty_four);
        assert_eq!(decode_standard_exact::<64>(&text), Some(sixty_four));
    }

    #[test]
    fn problems_are_named() {
        assert_eq!(
            decode_standard("!!!!"),
            Err(Base64Problem::InvalidCharacter { offset: 0 })
        );
        assert_eq!(decode_standard("AAA"), Err(Base64Problem::InvalidPadding));
        assert_eq!(decode_standard("AB=="), Err(Base64Problem::NonCanonical));
        assert_eq!(decode_url("AA=="), Err(Base64Problem::InvalidPadding));
    }
}
