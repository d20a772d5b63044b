//! Path matching: which rule of a token's policies applies to a request path.
//!
//! An exact pattern beats every glob. Among matching globs the one with the highest priority
//! wins, and the capabilities of every policy holding that same pattern are unioned.

use std::cmp::Ordering;

use super::parameters::ParameterRules;
use super::policy::{Capabilities, Policy};

/// Computes the capabilities `policies` grant on `path`, with `deny` applied.
pub(crate) fn evaluate<'a>(
    policies: impl IntoIterator<Item = &'a Policy> + Clone,
    path: &str,
) -> Capabilities {
    let Some(winner) = winning_pattern(policies.clone(), path) else {
        return Capabilities::NONE;
    };
    union_for(policies, |pattern| pattern == winner)
        .unwrap_or(Capabilities::NONE)
        .effective()
}

/// Returns the pattern whose rules apply to `path`: an exact pattern, or else the matching glob
/// with the highest priority.
pub(crate) fn winning_pattern<'a>(
    policies: impl IntoIterator<Item = &'a Policy> + Clone,
    path: &str,
) -> Option<&'a str> {
    let patterns = || {
        policies
            .clone()
            .into_iter()
            .flat_map(|policy| policy.rules.keys().map(String::as_str))
    };
    let exact = patterns().find(|pattern| !is_glob(pattern) && *pattern == path);
    if exact.is_some() {
        return exact;
    }
    patterns()
        .filter(|pattern| is_glob(pattern) && glob_matches(pattern, path))
        .max_by(|a, b| compare_priority(a, b))
}

/// Merges the parameter and wrapping rules that `policies` attach to `pattern`.
pub(crate) fn parameter_rules<'a>(
    policies: impl IntoIterator<Item = &'a Policy>,
    pattern: &str,
) -> ParameterRules {
    let mut merged = ParameterRules::default();
    for policy in policies {
        if let Some(rules) = policy.parameters.get(pattern) {
            merged.merge(rules);
        }
    }
    merged
}

/// Reports whether `policies` grant any capability on `mount_path` or on some path under it, as
/// Vault decides which mounts `sys/internal/ui/mounts` shows a token. A rule that denies grants
/// nothing.
pub(crate) fn grants_under<'a>(
    policies: impl IntoIterator<Item = &'a Policy> + Clone,
    mount_path: &str,
) -> bool {
    let on_mount = evaluate(policies.clone(), mount_path);
    if !on_mount.is_empty() && !on_mount.contains(Capabilities::DENY) {
        return true;
    }
    policies
        .into_iter()
        .flat_map(|policy| policy.rules.iter())
        .filter(|(_, capabilities)| {
            !capabilities.is_empty() && !capabilities.contains(Capabilities::DENY)
        })
        .any(|(pattern, _)| reaches_under(pattern, mount_path))
}

/// Reports whether `pattern` can match a path under `mount_path`: each segment of the mount
/// path equals the pattern's segment, is matched by a `+` segment, or starts with the prefix of
/// a trailing `*`.
fn reaches_under(pattern: &str, mount_path: &str) -> bool {
    let pattern_segments: Vec<&str> = pattern.split('/').collect();
    let mount_segments = mount_path.trim_end_matches('/').split('/');
    for (index, mount_segment) in mount_segments.enumerate() {
        let Some(segment) = pattern_segments.get(index) else {
            return false;
        };
        let is_last = index == pattern_segments.len() - 1;
        if is_last && segment.ends_with('*') {
            return mount_segment.starts_with(segment.trim_end_matches('*'));
        }
        if *segment != "+" && segment != &mount_segment {
            return false;
        }
    }
    pattern_segments.len() > mount_path.trim_end_matches('/').split('/').count()
}

fn union_for<'a>(
    policies: impl IntoIterator<Item = &'a Policy>,
    selects: impl Fn(&str) -> bool,
) -> Option<Capabilities> {
    let mut found = None;
    for policy in policies {
        for (pattern, capabilities) in &policy.rules {
            if selects(pattern) {
                found = Some(found.unwrap_or(Capabilities::NONE).union(*capabilities));
            }
        }
    }
    found
}

/// Whether the pattern ends in `*` or has a `+` segment.
fn is_glob(pattern: &str) -> bool {
    pattern.ends_with('*') || pattern.split('/').any(|segment| segment == "+")
}

/// Matches a glob segment by segment: `+` takes any one segment, and a trailing `*` makes the
/// last segment a prefix that may be followed by anything, further segments included.
fn glob_matches(pattern: &str, path: &str) -> bool {
    let (body, is_prefix) = match pattern.strip_suffix('*') {
        Some(body) => (body, true),
        None => (pattern, false),
    };
    let segments: Vec<&str> = body.split('/').collect();
    let parts: Vec<&str> = path.split('/').collect();
    if parts.len() < segments.len() || (!is_prefix && parts.len() != segments.len()) {
        return false;
    }
    let last = segments.len() - 1;
    segments.iter().enumerate().all(|(index, segment)| {
        if index == last && is_prefix {
            if *segment == "+" {
                return true;
            }
            return parts[index].starts_with(segment);
        }
        *segment == "+" || *segment == parts[index]
    })
}

/// Returns the byte offset of the first wildcard: a `+` segment or the trailing `*`.
fn first_wildcard(pattern: &str) -> usize {
    let mut offset = 0;
    for segment in pattern.split('/') {
        if segment == "+" {
            return offset;
        }
        offset += segment.len() + 1;
    }
    if pattern.ends_with('*') {
        return pattern.len() - 1;
    }
    pattern.len()
}

fn plus_segments(pattern: &str) -> usize {
    pattern.split('/').filter(|segment| *segment == "+").count()
}

/// Orders two matching globs so that the higher-priority one is greater. A pattern has lower
/// priority when, checked in order: its first wildcard comes earlier, it ends in `*` and the
/// other does not, it has more `+` segments, it is shorter, or it sorts first.
fn compare_priority(a: &str, b: &str) -> Ordering {
    first_wildcard(a)
        .cmp(&first_wildcard(b))
        .then_with(|| b.ends_with('*').cmp(&a.ends_with('*')))
        .then_with(|| plus_segments(b).cmp(&plus_segments(a)))
        .then_with(|| a.len().cmp(&b.len()))
        .then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::super::policy::parse_policy;
    use super::*;

    fn policy(name: &str, text: &str) -> Policy {
        parse_policy(name, text).unwrap()
    }

    fn names(policies: &[Policy], path: &str) -> Vec<String> {
        evaluate(policies.iter(), path).names()
    }

    #[test]
    fn glob_table() {
        let cases = [
            ("secret/foo*", "secret/foo", true),
            ("secret/foo*", "secret/food", true),
            ("secret/foo*", "secret/foo/bar", true),
            ("secret/foo*", "secret/fo", false),
            ("secret/*", "secret/", true),
            ("secret/*", "secret", false),
            ("secret/+/teamb", "secret/x/teamb", true),
            ("secret/+/teamb", "secret/x/y/teamb", false),
            ("secret/+/teamb", "secret/x/teamc", false),
            ("secret/+", "secret/x", true),
            ("secret/+", "secret/x/y", false),
            ("secret/+/*", "secret/x/y/z", true),
            ("secret/+/a*", "secret/x/ab", true),
            ("secret/+/a*", "secret/x/ba", false),
            ("Secret/*", "secret/x", false),
        ];
        for (pattern, path, expected) in cases {
            assert_eq!(
                glob_matches(pattern, path),
                expected,
                "pattern {pattern} on {path}"
            );
        }
    }

    #[test]
    fn priority_table() {
        // Each pair is (lower, higher).
        let cases = [
            ("secret/*", "secret/a/*"),
            ("secret/+/b", "secret/a/+"),
            ("secret/a*", "secret/a/+"),
            ("secret/+/+/c", "secret/+/b/+"),
            ("secret/a/*", "secret/a/b*"),
            ("secret/+/b*", "secret/+/bc*"),
            ("secret/+/ab", "secret/+/ac"),
            ("secret/+/*", "secret/+/x"),
            ("secret/+/+", "secret/+/ab"),
        ];
        for (lower, higher) in cases {
            assert_eq!(
                compare_priority(lower, higher),
                Ordering::Less,
                "{lower} below {higher}"
            );
            assert_eq!(
                compare_priority(higher, lower),
                Ordering::Greater,
                "{higher} above {lower}"
            );
        }
    }

    #[test]
    fn exact_match_beats_glob() {
        let policies = [policy(
            "p",
            r#"
            path "secret/foo" { capabilities = ["read"] }
            path "secret/*" { capabilities = ["create", "update"] }
            "#,
        )];
        assert_eq!(names(&policies, "secret/foo"), ["read"]);
        assert_eq!(names(&policies, "secret/bar"), ["create", "update"]);
    }

    #[test]
    fn most_specific_glob_wins() {
        let policies = [policy(
            "p",
            r#"
            path "secret/*" { capabilities = ["read"] }
            path "secret/team/*" { capabilities = ["list"] }
            path "secret/+/private" { capabilities = ["deny"] }
            "#,
        )];
        assert_eq!(names(&policies, "secret/team/x"), ["list"]);
        assert_eq!(names(&policies, "secret/other"), ["read"]);
        assert_eq!(names(&policies, "secret/team/private"), ["list"]);
        assert_eq!(names(&policies, "secret/other/private"), ["deny"]);
    }

    #[test]
    fn same_pattern_unions_across_policies() {
        let policies = [
            policy("a", r#"path "secret/*" { capabilities = ["read"] }"#),
            policy("b", r#"path "secret/*" { capabilities = ["list"] }"#),
            policy("c", r#"path "secret*" { capabilities = ["delete"] }"#),
        ];
        assert_eq!(names(&policies, "secret/x"), ["list", "read"]);
    }

    #[test]
    fn deny_wins_across_policies() {
        let policies = [
            policy(
                "a",
                r#"path "secret/x" { capabilities = ["read", "sudo"] }"#,
            ),
            policy("b", r#"path "secret/x" { capabilities = ["deny"] }"#),
        ];
        assert_eq!(names(&policies, "secret/x"), ["deny"]);
    }

    #[test]
    fn unmatched_path_is_denied() {
        let policies = [policy(
            "a",
            r#"path "secret/x" { capabilities = ["read"] }"#,
        )];
        assert_eq!(names(&policies, "secret/y"), ["deny"]);
        assert!(evaluate(policies.iter(), "secret/y").is_empty());
    }
}
