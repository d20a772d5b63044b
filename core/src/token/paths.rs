//! The older `auth/token/` path forms that carry a token or accessor as the last segment.

use std::borrow::Cow;

const TOKEN_PREFIX: &str = "auth/token/";

/// The operations whose older form takes the token in the path: `lookup/<token>`, ...
const TOKEN_IN_PATH: &[&str] = &["lookup", "renew", "revoke", "revoke-orphan"];

/// The operations whose older form takes the accessor in the path.
const ACCESSOR_IN_PATH: &[&str] = &["lookup-accessor", "renew-accessor", "revoke-accessor"];

/// The parts of an older path form, relative to `auth/token/`.
pub(super) struct PathParameter<'a> {
    /// The operation, such as `revoke`.
    pub(super) base: &'a str,
    /// The request field the value belongs in: `token` or `accessor`.
    pub(super) field: &'static str,
    /// The token or accessor.
    pub(super) value: &'a str,
}

/// Splits `rest` (a path after `auth/token/`) into an older form's parts, or returns `None`
/// when it is not one.
pub(super) fn split(rest: &str) -> Option<PathParameter<'_>> {
    let (base, value) = rest.split_once('/')?;
    let field = if TOKEN_IN_PATH.contains(&base) {
        "token"
    } else if ACCESSOR_IN_PATH.contains(&base) {
        "accessor"
    } else {
        return None;
    };
    Some(PathParameter { base, field, value })
}

/// Replaces the token in `auth/token/lookup/<token>`, `renew/<token>`, `revoke/<token>` and
/// `revoke-orphan/<token>` with `<redacted>`, so the path can be logged. A leading `/` or `/v1/`
/// is kept; other paths, accessor forms included, are returned unchanged.
pub fn redact_path(path: &str) -> Cow<'_, str> {
    let logical = path.trim_start_matches('/');
    let logical = logical.strip_prefix("v1/").unwrap_or(logical);
    let Some(rest) = logical.strip_prefix(TOKEN_PREFIX) else {
        return Cow::Borrowed(path);
    };
    match split(rest) {
        Some(parameter) if parameter.field == "token" && !parameter.value.is_empty() => {
            let kept = path.len() - parameter.value.len();
            Cow::Owned(format!("{}<redacted>", &path[..kept]))
        }
        _ => Cow::Borrowed(path),
    }
}

/// Returns the path to authorize a request against: an older form is checked as its base
/// path (`auth/token/revoke` for `auth/token/revoke/<token>`), so rules on the base path
/// also govern it and a token never appears in a policy match.
pub(crate) fn acl_path(path: &str) -> &str {
    let Some(rest) = path.strip_prefix(TOKEN_PREFIX) else {
        return path;
    };
    match split(rest) {
        Some(parameter) => &path[..TOKEN_PREFIX.len() + parameter.base.len()],
        None => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_path_hides_tokens_in_paths() {
        let cases = [
            (
                "auth/token/lookup/hvs.secret",
                "auth/token/lookup/<redacted>",
            ),
            ("auth/token/renew/hvs.secret", "auth/token/renew/<redacted>"),
            (
                "auth/token/revoke/hvs.secret",
                "auth/token/revoke/<redacted>",
            ),
            (
                "auth/token/revoke-orphan/hvs.secret",
                "auth/token/revoke-orphan/<redacted>",
            ),
            (
                "/v1/auth/token/lookup/hvs.secret",
                "/v1/auth/token/lookup/<redacted>",
            ),
            ("/auth/token/revoke/a/b", "/auth/token/revoke/<redacted>"),
        ];
        for (path, expected) in cases {
            assert_eq!(redact_path(path), expected, "{path}");
        }
    }

    #[test]
    fn redact_path_keeps_other_paths() {
        for path in [
            "auth/token/lookup",
            "auth/token/lookup/",
            "auth/token/lookup-self",
            "auth/token/revoke-accessor/abc",
            "auth/token/create/role",
            "secret/lookup/x",
            "/v1/sys/health",
        ] {
            assert!(matches!(redact_path(path), Cow::Borrowed(_)), "{path}");
            assert_eq!(redact_path(path), path);
        }
    }

    #[test]
    fn acl_path_drops_path_parameter() {
        assert_eq!(acl_path("auth/token/revoke/hvs.x"), "auth/token/revoke");
        assert_eq!(
            acl_path("auth/token/revoke-orphan/hvs.x"),
            "auth/token/revoke-orphan"
        );
        assert_eq!(
            acl_path("auth/token/lookup-accessor/abc"),
            "auth/token/lookup-accessor"
        );
        assert_eq!(acl_path("auth/token/create/role"), "auth/token/create/role");
        assert_eq!(acl_path("auth/token/revoke"), "auth/token/revoke");
        assert_eq!(acl_path("secret/revoke/x"), "secret/revoke/x");
    }
}
