//! A folder of credentials, certificates and caches that lives as long as a test: the
//! snapshot listener's certificate (for 127.0.0.1 and localhost) and its CA in files.

use std::path::{Path, PathBuf};

use super::pki::TestCa;
use super::{ConfigDir, Switchyard};

pub struct Scratch {
    pub dir: tempfile::TempDir,
    pub ca: TestCa,
    /// The CA certificate, PEM (also in `ca.pem`).
    pub ca_pem: String,
}

impl Scratch {
    /// `ca.pem`, `tls.crt` and `tls.key` written, signed by a CA named `ca_name`.
    pub fn new(ca_name: &str) -> Self {
        let ca = TestCa::new(ca_name);
        let scratch = Self { dir: tempfile::tempdir().unwrap(), ca_pem: ca.pem(), ca };
        let (cert, key) = scratch.ca.server_pem(&["127.0.0.1", "localhost"]);
        scratch.write("tls.crt", &cert);
        scratch.write("tls.key", &key);
        scratch.write("ca.pem", &scratch.ca_pem.clone());
        scratch
    }

    /// Writes as a Secret volume updates: a new file renamed over the old one.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let tmp = self.dir.path().join(format!(".{name}.new"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.dir.path().join(name)).unwrap();
        self.dir.path().join(name)
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }

    /// A token file holding `token` (with a trailing newline, as editors write it).
    pub fn token_file(&self, name: &str, token: &str) -> PathBuf {
        self.write(name, &format!("{token}\n"))
    }

    /// An empty cache directory for one proxy.
    pub fn cache_dir(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(&path).unwrap();
        path
    }
}

impl Scratch {
    /// `switchyard standalone` on `config` that also serves snapshots over TLS on
    /// `snapshot_listen`, with this scratch's certificate, to holders of `token_file`.
    pub fn standalone(&self, config: &ConfigDir, token_file: &Path, snapshot_listen: &str) -> Switchyard {
        let args = [
            "standalone",
            "--config-dir",
            config.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--snapshot-listen",
            snapshot_listen,
            "--token-file",
            token_file.to_str().unwrap(),
            "--snapshot-tls-cert",
            &self.path("tls.crt"),
            "--snapshot-tls-key",
            &self.path("tls.key"),
        ];
        Switchyard::start(&args, &["proxy", "admin", "metrics", "snapshot"])
    }
}

/// The `https://` URL of a controller's snapshot listener.
pub fn snapshot_url(controller: &Switchyard) -> String {
    format!("https://{}", controller.addrs["snapshot"])
}
