//! The configuration file and TLS certificate a test server runs with.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// How a test server is configured.
#[derive(Clone, Debug, Default)]
pub struct ServerOptions {
    /// Serves HTTPS with a self-signed certificate for 127.0.0.1 instead of plain HTTP.
    pub tls: bool,
    /// The listener's `max_request_size` in bytes; the server's default when `None`.
    pub max_request_size: Option<u64>,
    /// HCL appended to the configuration, such as a `replication { ... }` block.
    pub extra_config: String,
    /// The server's `log_level`; `debug` when `None`, so a failing test shows every request.
    pub log_level: Option<String>,
}

impl ServerOptions {
    /// Options for HTTPS with a generated certificate.
    pub fn tls() -> ServerOptions {
        ServerOptions {
            tls: true,
            ..ServerOptions::default()
        }
    }

    /// Sets the listener's maximum request size in bytes.
    pub fn max_request_size(mut self, bytes: u64) -> ServerOptions {
        self.max_request_size = Some(bytes);
        self
    }

    /// Sets the server's `log_level`, such as `info`.
    pub fn log_level(mut self, level: &str) -> ServerOptions {
        self.log_level = Some(level.to_owned());
        self
    }

    /// Appends `hcl` to the configuration file.
    pub fn extra_config(mut self, hcl: &str) -> ServerOptions {
        self.extra_config.push_str(hcl);
        self.extra_config.push('\n');
        self
    }
}

/// The files of one server under its temporary directory.
#[derive(Clone, Debug)]
pub(crate) struct ServerFiles {
    pub(crate) config: PathBuf,
    pub(crate) data_dir: PathBuf,
    pub(crate) log: PathBuf,
    pub(crate) ca_certificate: Option<PathBuf>,
}

/// Writes the configuration (and the certificate for TLS) into `dir`.
pub(crate) fn write_files(
    dir: &Path,
    api_port: u16,
    cluster_port: u16,
    options: &ServerOptions,
) -> anyhow::Result<ServerFiles> {
    let data_dir = dir.join("data");
    std::fs::create_dir_all(&data_dir).context("failed to create the data directory")?;
    let tls = if options.tls {
        Some(write_certificate(dir)?)
    } else {
        None
    };
    let text = config_text(&data_dir, api_port, cluster_port, tls.as_ref(), options);
    let config = dir.join("config.hcl");
    std::fs::write(&config, text).context("failed to write the configuration file")?;
    Ok(ServerFiles {
        config,
        data_dir,
        log: dir.join("server.log"),
        ca_certificate: tls.map(|files| files.certificate),
    })
}

struct TlsFiles {
    certificate: PathBuf,
    key: PathBuf,
}

fn write_certificate(dir: &Path) -> anyhow::Result<TlsFiles> {
    let names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
    let generated = rcgen::generate_simple_self_signed(names)?;
    let certificate = dir.join("server.pem");
    let key = dir.join("server-key.pem");
    std::fs::write(&certificate, generated.cert.pem())?;
    std::fs::write(&key, generated.signing_key.serialize_pem())?;
    Ok(TlsFiles { certificate, key })
}

fn config_text(
    data_dir: &Path,
    api_port: u16,
    cluster_port: u16,
    tls: Option<&TlsFiles>,
    options: &ServerOptions,
) -> String {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let tls_lines = match tls {
        Some(files) => format!(
            "  tls_cert_file   = {:?}\n  tls_key_file    = {:?}\n",
            files.certificate.display().to_string(),
            files.key.display().to_string()
        ),
        None => "  tls_disable     = true\n".to_owned(),
    };
    let size_line = options
        .max_request_size
        .map(|bytes| format!("  max_request_size = {bytes}\n"))
        .unwrap_or_default();
    format!(
        "storage \"lmdb\" {{\n  path = {:?}\n}}\n\n\
         listener \"tcp\" {{\n  address         = \"127.0.0.1:{api_port}\"\n  \
         cluster_address = \"127.0.0.1:{cluster_port}\"\n{tls_lines}{size_line}}}\n\n\
         api_addr      = \"{scheme}://127.0.0.1:{api_port}\"\n\
         cluster_addr  = \"https://127.0.0.1:{cluster_port}\"\n\
         disable_mlock = true\n\
         log_level     = \"{}\"\n{}",
        data_dir.display().to_string(),
        options.log_level.as_deref().unwrap_or("debug"),
        options.extra_config
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_text_for_plain_http() {
        let options = ServerOptions::default().max_request_size(1024);
        let text = config_text(Path::new("/tmp/d"), 8200, 8201, None, &options);
        assert!(
            text.contains("storage \"lmdb\" {\n  path = \"/tmp/d\"\n}"),
            "{text}"
        );
        assert!(
            text.contains("address         = \"127.0.0.1:8200\""),
            "{text}"
        );
        assert!(
            text.contains("cluster_address = \"127.0.0.1:8201\""),
            "{text}"
        );
        assert!(text.contains("tls_disable     = true"), "{text}");
        assert!(text.contains("max_request_size = 1024"), "{text}");
        assert!(text.contains("log_level     = \"debug\""), "{text}");
        assert!(
            text.contains("api_addr      = \"http://127.0.0.1:8200\""),
            "{text}"
        );
    }

    #[test]
    fn config_text_sets_log_level() {
        let options = ServerOptions::default().log_level("info");
        let text = config_text(Path::new("/tmp/d"), 8200, 8201, None, &options);
        assert!(text.contains("log_level     = \"info\""), "{text}");
    }

    #[test]
    fn config_files_for_tls_name_the_certificate() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let files = write_files(dir.path(), 8200, 8201, &ServerOptions::tls())?;
        let text = std::fs::read_to_string(&files.config)?;
        assert!(text.contains("tls_cert_file"), "{text}");
        assert!(!text.contains("tls_disable"), "{text}");
        let certificate = files
            .ca_certificate
            .expect("TLS options write a certificate");
        let pem = std::fs::read_to_string(certificate)?;
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
        Ok(())
    }
}
