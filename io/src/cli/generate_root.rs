//! Local decoding of the encoded root token that `sys/generate-root` returns.

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;

use super::error::CliError;

/// Decodes an encoded token: base64 (standard alphabet, padding optional) of the token's bytes
/// XOR the OTP's bytes.
pub(crate) fn decode_token(encoded: &str, otp: &str) -> Result<String, CliError> {
    let bytes = STANDARD_NO_PAD
        .decode(encoded.trim().trim_end_matches('='))
        .map_err(|error| CliError::Local(format!("invalid encoded token: {error}")))?;
    if bytes.len() != otp.len() {
        return Err(CliError::Local(format!(
            "the encoded token is {} bytes long but the OTP is {}: use the OTP of this attempt",
            bytes.len(),
            otp.len()
        )));
    }
    let decoded = bytes
        .iter()
        .zip(otp.as_bytes())
        .map(|(byte, key)| byte ^ key)
        .collect::<Vec<_>>();
    String::from_utf8(decoded).map_err(|_| {
        CliError::Local("the decoded token is not UTF-8: check the OTP and the token".to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(token: &str, otp: &str) -> String {
        let xored = token
            .bytes()
            .zip(otp.bytes())
            .map(|(byte, key)| byte ^ key)
            .collect::<Vec<_>>();
        STANDARD_NO_PAD.encode(xored)
    }

    const TOKEN: &str = "hvs.abcdefghijklmnopqrstuvwx";
    const OTP: &str = "Z8kq2NfP0aYbV7cT1eWd3gXh5iUj";

    #[test]
    fn decode_reverses_xor_and_base64() {
        let encoded = encode(TOKEN, OTP);
        assert_eq!(decode_token(&encoded, OTP).ok().as_deref(), Some(TOKEN));
    }

    #[test]
    fn decode_accepts_padding() {
        let encoded = format!("{}==", encode(TOKEN, OTP));
        assert_eq!(decode_token(&encoded, OTP).ok().as_deref(), Some(TOKEN));
    }

    #[test]
    fn decode_with_wrong_length_otp_fails() {
        let encoded = encode(TOKEN, OTP);
        let message = decode_token(&encoded, "short").err().map(|e| e.to_string());
        assert!(
            message
                .unwrap_or_default()
                .contains("28 bytes long but the OTP is 5")
        );
    }

    #[test]
    fn decode_of_invalid_base64_fails() {
        assert!(decode_token("not base64!", OTP).is_err());
    }
}
