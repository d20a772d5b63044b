//! The cubbyhole: private storage for each token, in the local partition under
//! `cubbyhole/<token_hash>/`, gone when the token is revoked.

use crate::barrier::SecureView;
use crate::error::Error;
use crate::request::{Caller, Operation, Request, Response};
use crate::storage::Partition;

use super::{Location, kv_v1};

/// Serves a request for `path` in the caller's own cubbyhole.
pub(crate) fn handle(
    request: &Request,
    path: &str,
    caller: Option<&Caller>,
    view: &mut SecureView<'_>,
) -> Result<Response, Error> {
    let caller = caller.ok_or_else(Error::permission_denied)?;
    let location = location(&caller.token_hash)?;
    if request.operation == Operation::List {
        return kv_v1::list(path, &location, view);
    }
    if path.is_empty() || path.ends_with('/') {
        return Err(Error::bad_request(format!(
            "invalid cubbyhole path {path:?}: a secret needs a name that does not end in \"/\""
        )));
    }
    let key = location.key(path);
    match request.operation {
        Operation::Read => kv_v1::read(&key, &location, "cubbyhole", 0, view),
        Operation::Update => kv_v1::write(&key, &location, &request.data, view),
        Operation::Delete => {
            view.delete(location.partition, &key)?;
            Ok(Response::NoContent)
        }
        Operation::List | Operation::Patch => Err(Error::unsupported_operation()),
    }
}

/// Returns the location of the cubbyhole of the token whose salted hash is `token_hash`.
pub(crate) fn location(token_hash: &str) -> Result<Location, Error> {
    // An empty or slash-bearing hash would make one cubbyhole a prefix of another.
    if token_hash.is_empty() || token_hash.contains('/') {
        return Err(Error::internal(
            "cubbyhole needs a token hash without \"/\"",
        ));
    }
    Ok(Location {
        partition: Partition::Local,
        prefix: format!("cubbyhole/{token_hash}/"),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::engines::testing::Harness;
    use crate::error::Error;
    use crate::request::Operation::{Delete, List, Read, Update};
    use crate::storage::{Partition, Storage};

    #[test]
    fn tokens_see_only_their_own_cubbyhole() {
        let mut harness = Harness::new();
        let alice = Harness::caller("alice-hash");
        let bob = Harness::caller("bob-hash");
        let body = json!({"note": "alice only"});
        harness
            .run_as(&alice, Update, "cubbyhole/note", body)
            .unwrap();
        let read = harness.run_as(&bob, Read, "cubbyhole/note", json!({}));
        assert_eq!(read, Err(Error::not_found()));
        let listed = harness.run_as(&bob, List, "cubbyhole/", json!({}));
        assert_eq!(listed, Err(Error::not_found()));
        let own = harness.run_as(&alice, Read, "cubbyhole/note", json!({}));
        assert!(own.is_ok());
    }

    #[test]
    fn cubbyhole_lives_in_local_partition() {
        let mut harness = Harness::new();
        harness.ok(Update, "cubbyhole/a/b", json!({"x": "cubby-marker-5150"}));
        let shared = harness.storage.dump(Partition::Shared);
        assert!(!shared.iter().any(|(key, _)| key.starts_with("cubbyhole/")));
        let local = harness.storage.dump(Partition::Local);
        assert!(local.iter().any(|(key, _)| key == "cubbyhole/t1/a/b"));
        for (key, value) in local {
            assert!(
                !String::from_utf8_lossy(&value).contains("cubby-marker-5150"),
                "{key}"
            );
        }
    }

    #[test]
    fn cubbyhole_reads_lists_and_deletes() {
        let mut harness = Harness::new();
        harness.ok(Update, "cubbyhole/a", json!({"x": 1}));
        harness.ok(Update, "cubbyhole/dir/b", json!({"x": 2}));
        assert_eq!(harness.data(Read, "cubbyhole/a", json!({}))["x"], json!(1));
        assert_eq!(
            harness.data(List, "cubbyhole/", json!({}))["keys"],
            json!(["a", "dir/"])
        );
        harness.ok(Delete, "cubbyhole/a", json!({}));
        assert_eq!(harness.fail(Read, "cubbyhole/a", json!({})).0, 404);
    }

    #[test]
    fn destroy_removes_only_that_token() {
        let mut harness = Harness::new();
        let other = Harness::caller("t2");
        harness.ok(Update, "cubbyhole/a", json!({"x": 1}));
        harness.ok(Update, "cubbyhole/dir/b", json!({"x": 1}));
        harness
            .run_as(&other, Update, "cubbyhole/a", json!({"x": 2}))
            .unwrap();
        let core = &harness.core;
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        harness
            .storage
            .write(|txn| {
                let mut view = core.barrier.view(txn, &mut rng)?;
                crate::engines::destroy_cubbyhole(&mut view, "t1")
            })
            .unwrap();
        assert_eq!(harness.fail(List, "cubbyhole/", json!({})).0, 404);
        let kept = harness.run_as(&other, Read, "cubbyhole/a", json!({}));
        assert!(kept.is_ok());
    }

    use rand_core::SeedableRng;
}
