//! The file audit devices' files: opened on first use, appended to with one JSON line per
//! entry, and reported in `sys/health` when they cannot be opened or written.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::{Mutex, PoisonError};

use coffer_core::Core;
use coffer_core::audit::{AuditDevice, AuditLine};
use coffer_core::error::Error;
use coffer_core::request::{Operation, Request};
use serde_json::Value;

/// The open audit files of one node, by file path.
#[derive(Default)]
pub struct AuditFiles {
    files: Mutex<BTreeMap<String, File>>,
}

impl AuditFiles {
    /// No files open yet.
    pub fn new() -> AuditFiles {
        AuditFiles::default()
    }

    /// Opens the file of every enabled device that is not open yet, closes the files of
    /// devices no longer enabled, and records each device that cannot be opened in
    /// `core.audit_status`, which `sys/health` reports.
    pub fn sync(&self, core: &Core, devices: &[AuditDevice]) {
        core.audit_status.retain(devices);
        let mut files = self.files.lock().unwrap_or_else(PoisonError::into_inner);
        files.retain(|path, _| devices.iter().any(|device| device.file_path() == path));
        for device in devices {
            if files.contains_key(device.file_path()) {
                continue;
            }
            match open(device.file_path(), device.file_mode()) {
                Ok(file) => {
                    files.insert(device.file_path().to_owned(), file);
                    mark_ok(core, &device.path);
                }
                Err(reason) => mark_failed(core, &device.path, reason),
            }
        }
    }

    /// Appends each line to its device's file, each followed by a line break, before the
    /// caller goes on.
    ///
    /// Fails with 500 when no device recorded its line, and on a secondary also when a
    /// replicated (non-local) device failed, so a request is never served unrecorded.
    pub fn write(&self, core: &Core, lines: &[AuditLine]) -> Result<(), Error> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut files = self.files.lock().unwrap_or_else(PoisonError::into_inner);
        let mut recorded = 0usize;
        let mut failures = Vec::new();
        for line in lines {
            match append(&mut files, line) {
                Ok(()) => {
                    recorded += 1;
                    mark_ok(core, &line.device);
                }
                Err(reason) => {
                    files.remove(&line.file_path);
                    mark_failed(core, &line.device, reason.clone());
                    failures.push((line, reason));
                }
            }
        }
        let secondary = core.secondary_primary_addr().is_some();
        let replicated_failed = failures.iter().any(|(line, _)| !line.local);
        if recorded > 0 && !(secondary && replicated_failed) {
            return Ok(());
        }
        let reasons: Vec<String> = failures
            .iter()
            .map(|(line, reason)| format!("device {:?}: {reason}", line.device))
            .collect();
        Err(Error::internal(format!(
            "failed to record the request in the audit log, so it was not run: {}",
            reasons.join("; ")
        )))
    }
}

/// Returns whether `request` enables a file audit device, whose file [`check_enable`] opens.
pub fn is_file_enable(request: &Request) -> bool {
    request.operation == Operation::Update
        && request.path.starts_with("sys/audit/")
        && request.data.get("type").and_then(Value::as_str) == Some("file")
}

/// Checks that the file a `sys/audit/<path>` enable request names can be opened for appending
/// here, creating it when missing, so a device that could never record is rejected with 400
/// instead of refusing every later request. Call it only for an authorised caller
/// ([`coffer_core::Core::may_run`]). Other requests, and enables the core will reject anyway,
/// pass unchecked.
pub fn check_enable(request: &Request) -> Result<(), Error> {
    if !is_file_enable(request) {
        return Ok(());
    }
    let Some(Value::Object(options)) = request.data.get("options") else {
        return Ok(());
    };
    let path = options
        .get("file_path")
        .or_else(|| options.get("path"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !path.starts_with('/') {
        return Ok(());
    }
    let mode = options
        .get("mode")
        .and_then(Value::as_str)
        .and_then(|mode| u32::from_str_radix(mode, 8).ok())
        .unwrap_or(0o600);
    open(path, mode)
        .map(drop)
        .map_err(|reason| Error::bad_request(format!("{reason}; the audit device was not enabled")))
}

fn open(path: &str, mode: u32) -> Result<File, String> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(mode)
        .open(path)
        .map_err(|error| format!("failed to open {path}: {error}"))
}

fn append(files: &mut BTreeMap<String, File>, line: &AuditLine) -> Result<(), String> {
    if !files.contains_key(&line.file_path) {
        let file = open(&line.file_path, line.file_mode)?;
        files.insert(line.file_path.clone(), file);
    }
    let file = files
        .get_mut(&line.file_path)
        .expect("the file was inserted above when missing");
    let mut bytes = Vec::with_capacity(line.text.len() + 1);
    bytes.extend_from_slice(line.text.as_bytes());
    bytes.push(b'\n');
    // One write of the whole line, so concurrent writers to the same file (another node in a
    // test, or a second device) never interleave inside a line.
    file.write_all(&bytes)
        .and_then(|()| file.flush())
        .map_err(|error| format!("failed to write {}: {error}", line.file_path))
}

fn mark_ok(core: &Core, device: &str) {
    if core.audit_status.failures().contains_key(device) {
        tracing::info!(device, "audit device is writable again");
        core.audit_status.set(device, None);
    }
}

fn mark_failed(core: &Core, device: &str, reason: String) {
    // Log only the change from working to failing, so a broken device does not flood the log
    // with one line per request.
    if !core.audit_status.failures().contains_key(device) {
        tracing::error!(device, %reason, "audit device failed; requests it must record are rejected until it works");
    }
    core.audit_status.set(device, Some(reason));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(device: &str, local: bool, file_path: &str, text: &str) -> AuditLine {
        AuditLine {
            device: device.to_owned(),
            local,
            file_path: file_path.to_owned(),
            file_mode: 0o600,
            text: text.to_owned(),
        }
    }

    #[test]
    fn lines_are_appended_one_per_entry() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("audit.log");
        let path = path.to_str().unwrap();
        let core = Core::new(coffer_core::CoreConfig::default());
        let files = AuditFiles::new();
        files
            .write(&core, &[line("file/", false, path, "{\"a\":1}")])
            .unwrap();
        files
            .write(&core, &[line("file/", false, path, "{\"b\":2}")])
            .unwrap();
        let text = std::fs::read_to_string(path).unwrap();
        assert_eq!(text, "{\"a\":1}\n{\"b\":2}\n");
        let mode = std::fs::metadata(path).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
    }

    #[test]
    fn request_fails_when_no_device_records_it() {
        let core = Core::new(coffer_core::CoreConfig::default());
        let files = AuditFiles::new();
        let missing = "/nonexistent-coffer-directory/audit.log";
        let error = files
            .write(&core, &[line("file/", false, missing, "{}")])
            .unwrap_err();
        assert_eq!(error.status(), 500);
        assert!(error.to_string().contains("\"file/\""), "{error}");
        assert!(core.audit_status.failures().contains_key("file/"));
    }

    #[test]
    fn one_working_device_is_enough_on_a_primary() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("audit.log");
        let core = Core::new(coffer_core::CoreConfig::default());
        let files = AuditFiles::new();
        let lines = [
            line("good/", false, path.to_str().unwrap(), "{}"),
            line("bad/", false, "/nonexistent-coffer-directory/a.log", "{}"),
        ];
        files.write(&core, &lines).unwrap();
        let failures = core.audit_status.failures();
        assert_eq!(failures.keys().collect::<Vec<_>>(), ["bad/"]);
    }

    #[test]
    fn enable_with_unopenable_file_is_rejected() {
        let enable = |path: &str| {
            Request::new(Operation::Update, "sys/audit/file")
                .with_data(serde_json::json!({"type": "file", "options": {"file_path": path}}))
        };
        let error = check_enable(&enable("/nonexistent-coffer-directory/a.log")).unwrap_err();
        assert_eq!(error.status(), 400);
        assert!(error.to_string().contains("failed to open"), "{error}");

        let directory = tempfile::tempdir().unwrap();
        let good = directory.path().join("audit.log");
        check_enable(&enable(good.to_str().unwrap())).unwrap();
        assert!(good.exists());
        let other = Request::new(Operation::Read, "sys/audit/file");
        check_enable(&other).unwrap();
    }

    #[test]
    fn recovered_device_leaves_the_failures() {
        let directory = tempfile::tempdir().unwrap();
        let sub = directory.path().join("later");
        let path = sub.join("audit.log");
        let path = path.to_str().unwrap();
        let core = Core::new(coffer_core::CoreConfig::default());
        let files = AuditFiles::new();
        assert!(
            files
                .write(&core, &[line("file/", false, path, "{}")])
                .is_err()
        );
        std::fs::create_dir(&sub).unwrap();
        files
            .write(&core, &[line("file/", false, path, "{}")])
            .unwrap();
        assert!(core.audit_status.failures().is_empty());
    }
}
