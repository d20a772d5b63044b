//! The mount and auth tables and small tools: `sys/mounts`, `sys/auth`,
//! `sys/internal/ui/mounts` and `sys/tools/*`.

mod config;
mod enable;
mod tools;
mod tune;
mod ui;
mod upgrade;

use crate::Core;
use crate::error::Error;
use crate::handler::Ctx;
use crate::mounts::TableKind;
use crate::request::{Caller, Operation, Request, Response};
use crate::storage::Transaction;

/// Serves `sys/mounts`, `sys/auth`, `sys/internal/ui/mounts` and `sys/tools/*`, or returns `None` for any other path.
pub(super) fn route(
    core: &Core,
    ctx: &mut Ctx<'_>,
    request: &Request,
    caller: Option<&Caller>,
    txn: &mut dyn Transaction,
) -> Option<Result<Response, Error>> {
    let rest = request.path.strip_prefix("sys/")?.trim_end_matches('/');
    if let Some(tool) = rest.strip_prefix("tools/") {
        return tools::route(ctx, request, tool);
    }
    if rest == "internal/ui/mounts" || rest.starts_with("internal/ui/mounts/") {
        // These reads skip the ACL check on the request path, so they must stay read-only.
        if request.operation != Operation::Read {
            return Some(Err(Error::unsupported_operation()));
        }
        let Some(caller) = caller else {
            return Some(Err(Error::permission_denied()));
        };
        return Some(match rest.strip_prefix("internal/ui/mounts/") {
            None => ui::list(core, caller, txn),
            Some(path) => ui::read(core, caller, txn, path),
        });
    }
    let auth_tune = rest
        .strip_prefix("mounts/auth/")
        .and_then(|path| path.strip_suffix("/tune"));
    if let Some(path) = auth_tune {
        return Some(tune::handle(core, ctx, request, TableKind::Auth, path, txn));
    }
    let (kind, rest) = if let Some(rest) = strip_table(rest, "mounts") {
        (TableKind::Secrets, rest)
    } else if let Some(rest) = strip_table(rest, "auth") {
        (TableKind::Auth, rest)
    } else {
        return None;
    };
    Some(table_route(core, ctx, request, kind, rest, txn))
}

/// Whether `path` is `sys/internal/ui/mounts` or a path under it.
pub(super) fn is_ui_mounts_path(path: &str) -> bool {
    let path = path.trim_end_matches('/');
    path == "sys/internal/ui/mounts" || path.starts_with("sys/internal/ui/mounts/")
}

/// `"mounts"` gives `Some("")` and `"mounts/x"` gives `Some("x")`.
fn strip_table<'p>(path: &'p str, table: &str) -> Option<&'p str> {
    let rest = path.strip_prefix(table)?;
    if rest.is_empty() {
        return Some("");
    }
    rest.strip_prefix('/')
}

fn table_route(
    core: &Core,
    ctx: &mut Ctx<'_>,
    request: &Request,
    kind: TableKind,
    path: &str,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    if path.is_empty() {
        return match request.operation {
            Operation::Read | Operation::List => enable::list(core, kind, txn),
            _ => Err(Error::unsupported_operation()),
        };
    }
    if let Some(mount) = path.strip_suffix("/tune") {
        return tune::handle(core, ctx, request, kind, mount, txn);
    }
    match request.operation {
        Operation::Read => enable::read(core, kind, path, txn),
        Operation::Update => enable::enable(core, ctx, kind, path, &request.data, txn),
        Operation::Delete => enable::disable(core, ctx, kind, path, txn),
        Operation::List | Operation::Patch => Err(Error::unsupported_operation()),
    }
}

#[cfg(test)]
mod tests;
