//! The certificate of the simulated nodes' HTTPS API listeners.
//!
//! A secondary unwraps its activation token over the primary's API, which must be HTTPS for
//! a non-loopback address, so every node serves its API with TLS. One self-signed Ed25519
//! certificate names every address turmoil hands out to the first hosts; the scenario client
//! trusts it. The Ed25519 key comes from the seed, so its signatures have the same size in
//! every run.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use anyhow::Context;
use coffer_core::replication::activation::PrivateKey;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rcgen::{CertificateParams, KeyPair, SanType, SerialNumber};
use sha2::{Digest as _, Sha256};

/// How many of turmoil's first host addresses (192.168.0.1 upwards) the certificate names.
const NAMED_ADDRESSES: u8 = 40;

/// The API certificate and its key.
pub struct ApiCertificate {
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    cert_pem: String,
    key_pem: String,
}

impl ApiCertificate {
    /// Generates the certificate with a key drawn from `seed`.
    pub fn generate(seed: u64) -> anyhow::Result<ApiCertificate> {
        let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0x6170_692d_6365_7274);
        let key = PrivateKey::generate(&mut rng);
        let key_pair = KeyPair::try_from(key.pkcs8_der())
            .context("rcgen rejected the generated Ed25519 key")?;
        let mut params = CertificateParams::default();
        params.subject_alt_names = (1..=NAMED_ADDRESSES)
            .map(|host| SanType::IpAddress(IpAddr::V4(Ipv4Addr::new(192, 168, 0, host))))
            .collect();
        params.serial_number = Some(SerialNumber::from(seed.to_be_bytes().to_vec()));
        let certificate = params
            .self_signed(&key_pair)
            .context("failed to sign the API certificate")?;
        Ok(ApiCertificate {
            cert_der: certificate.der().to_vec(),
            cert_pem: certificate.pem(),
            key_pem: key_pair.serialize_pem(),
        })
    }

    /// Writes the certificate as PEM into the system's temporary directory, under a name made
    /// from its SHA-256, and returns the path. The path is the activations' `ca_file`, which
    /// travels in a request body, so unlike a fresh temporary directory it repeats with the
    /// seed and keeps the bytes on the wire equal. Runs with the same seed write the same
    /// bytes, and the rename replaces the file at once, so concurrent runs can share it.
    ///
    /// NOTE: the file stays in the temporary directory after the run, one per seed.
    pub fn write_shared_ca(&self) -> anyhow::Result<String> {
        let digest = hex::encode(Sha256::digest(&self.cert_der));
        let directory = std::env::temp_dir();
        let path = directory.join(format!("coffer-sim-api-ca-{}.pem", &digest[..16]));
        let mut file = tempfile::NamedTempFile::new_in(&directory)
            .context("failed to create the shared API CA file")?;
        std::io::Write::write_all(&mut file, self.cert_pem.as_bytes())
            .context("failed to write the shared API CA file")?;
        file.persist(&path)
            .with_context(|| format!("failed to move the API CA file to {}", path.display()))?;
        Ok(path.display().to_string())
    }

    /// Writes the certificate and key as PEM into `directory` and returns their paths.
    pub fn write(&self, directory: &Path) -> anyhow::Result<(String, String)> {
        let cert = directory.join("api-cert.pem");
        let key = directory.join("api-key.pem");
        std::fs::write(&cert, &self.cert_pem).context("failed to write the API certificate")?;
        std::fs::write(&key, &self.key_pem).context("failed to write the API key")?;
        Ok((cert.display().to_string(), key.display().to_string()))
    }
}
