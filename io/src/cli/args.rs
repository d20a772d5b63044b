//! Rewriting of Vault-style arguments into the form clap parses.

use std::ffi::OsString;

/// Options of every client command that Vault also accepts before the subcommand's name.
const LEADING_OPTIONS: [&str; 2] = ["--format", "--address"];

/// Rewrites Vault-style single-dash long options (`-config=FILE`, `-format=json`) to the
/// double-dash form clap parses.
///
/// A single dash followed by two or more characters, the first a letter, becomes a double dash.
/// `-` alone (standard input), short flags such as `-f`, negative numbers and everything after
/// `--` stay as they are. `--format` and `--address` given before the subcommand's name
/// (`coffer -format=json read PATH`) move to just after it, where clap looks for them.
pub fn normalize_args(args: impl Iterator<Item = OsString>) -> Vec<OsString> {
    let mut args = args.collect::<Vec<_>>();
    let mut after_separator = false;
    for arg in args.iter_mut().skip(1) {
        if arg == "--" {
            after_separator = true;
        }
        if !after_separator {
            *arg = double_dash(arg);
        }
    }
    move_leading_options(args)
}

fn double_dash(arg: &OsString) -> OsString {
    let Some(text) = arg.to_str() else {
        return arg.clone();
    };
    let mut chars = text.chars();
    let is_single_dash_long = chars.next() == Some('-')
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.next().is_some();
    if is_single_dash_long {
        OsString::from(format!("-{text}"))
    } else {
        arg.clone()
    }
}

/// Moves the leading `--format`/`--address` options behind the first positional argument.
fn move_leading_options(args: Vec<OsString>) -> Vec<OsString> {
    let mut iter = args.into_iter();
    let mut result = iter.next().into_iter().collect::<Vec<_>>();
    let mut moved = Vec::new();
    while let Some(arg) = iter.next() {
        match leading_option(&arg) {
            Some(takes_value) => {
                moved.push(arg);
                if takes_value {
                    moved.extend(iter.next());
                }
            }
            None => {
                result.push(arg);
                break;
            }
        }
    }
    result.extend(moved);
    result.extend(iter);
    result
}

/// Returns `Some(true)` for `--format VALUE`, `Some(false)` for `--format=VALUE` and `None` for
/// any other argument.
fn leading_option(arg: &OsString) -> Option<bool> {
    let text = arg.to_str()?;
    LEADING_OPTIONS.iter().find_map(|option| {
        let rest = text.strip_prefix(option)?;
        if rest.is_empty() {
            Some(true)
        } else {
            rest.starts_with('=').then_some(false)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalize(args: &[&str]) -> Vec<String> {
        normalize_args(args.iter().map(OsString::from))
            .into_iter()
            .map(|arg| arg.into_string().expect("test arguments are UTF-8"))
            .collect()
    }

    #[test]
    fn single_dash_long_options_get_double_dash() {
        assert_eq!(
            normalize(&["coffer", "server", "-config=/etc/coffer.hcl", "-dev"]),
            ["coffer", "server", "--config=/etc/coffer.hcl", "--dev"]
        );
        assert_eq!(
            normalize(&[
                "coffer",
                "operator",
                "init",
                "-key-shares=5",
                "-key-threshold",
                "3"
            ]),
            [
                "coffer",
                "operator",
                "init",
                "--key-shares=5",
                "--key-threshold",
                "3"
            ]
        );
    }

    #[test]
    fn stdin_dash_short_flags_and_numbers_stay() {
        assert_eq!(
            normalize(&["coffer", "write", "-f", "secret/x", "-", "-1"]),
            ["coffer", "write", "-f", "secret/x", "-", "-1"]
        );
    }

    #[test]
    fn double_dash_options_stay() {
        assert_eq!(
            normalize(&["coffer", "read", "--format=json", "secret/x"]),
            ["coffer", "read", "--format=json", "secret/x"]
        );
    }

    #[test]
    fn arguments_after_separator_stay() {
        assert_eq!(
            normalize(&["coffer", "write", "secret/x", "--", "-value=1"]),
            ["coffer", "write", "secret/x", "--", "-value=1"]
        );
    }

    #[test]
    fn leading_format_moves_behind_subcommand() {
        assert_eq!(
            normalize(&["coffer", "-format=json", "read", "secret/x"]),
            ["coffer", "read", "--format=json", "secret/x"]
        );
        assert_eq!(
            normalize(&[
                "coffer",
                "-format",
                "json",
                "-address=http://a",
                "kv",
                "get",
                "x"
            ]),
            [
                "coffer",
                "kv",
                "--format",
                "json",
                "--address=http://a",
                "get",
                "x"
            ]
        );
    }

    #[test]
    fn other_leading_options_stay_in_place() {
        assert_eq!(normalize(&["coffer", "--help"]), ["coffer", "--help"]);
        assert_eq!(
            normalize(&["coffer", "-formatx=1", "read"]),
            ["coffer", "--formatx=1", "read"]
        );
    }
}
