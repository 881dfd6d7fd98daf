//! HTTPS: the certificate the server presents, from PEM files (`tls_cert`, a chain
//! allowed, and `tls_key`) or made here for trials (`tls_self_signed`), reloaded
//! when the files change or on SIGHUP so that a renewed certificate needs no
//! restart. A renewal that does not load (a half-written file, a key that does not
//! match) keeps the certificate in use and says why.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use base64::Engine;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::files;

/// How often the certificate files are looked at for a renewal.
const WATCH_EVERY: Duration = Duration::from_secs(2);

/// The certificate in use, and where it comes from.
pub struct Certificate {
    current: RwLock<Arc<CertifiedKey>>,
    cert: PathBuf,
    key: PathBuf,
    /// The files' modification times and sizes when last loaded.
    seen: Mutex<Stamp>,
    provider: Arc<CryptoProvider>,
}

type Stamp = Option<(SystemTime, u64, SystemTime, u64)>;

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate").field("cert", &self.cert).field("key", &self.key).finish()
    }
}

impl Certificate {
    /// Loads the certificate chain at `cert` and the private key at `key` (PEM).
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Arc<Certificate>> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let seen = stamp(cert, key);
        let loaded = read(cert, key, &provider)?;
        Ok(Arc::new(Certificate {
            current: RwLock::new(Arc::new(loaded)),
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            seen: Mutex::new(seen),
            provider,
        }))
    }

    /// The SHA-256 fingerprint of the certificate in use (colon-separated hex, as
    /// browsers show it).
    pub fn fingerprint(&self) -> String {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner()).clone();
        fingerprint(current.cert.first().map(|c| c.as_ref()).unwrap_or_default())
    }

    /// Loads the files again. On an error the certificate in use stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let seen = stamp(&self.cert, &self.key);
        let loaded = read(&self.cert, &self.key, &self.provider)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(loaded);
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = seen;
        tracing::info!(cert = %self.cert.display(), fingerprint = %self.fingerprint(), "TLS certificate loaded again");
        Ok(())
    }

    /// Reloads when either file changed since it was last loaded (answers whether
    /// it tried).
    fn reload_if_changed(&self) -> bool {
        let now = stamp(&self.cert, &self.key);
        if now.is_none() || *self.seen.lock().unwrap_or_else(|e| e.into_inner()) == now {
            return false;
        }
        if let Err(e) = self.reload() {
            // Said once per change: the same files are not tried again until they
            // change again.
            *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = now;
            tracing::error!(cert = %self.cert.display(), error = format!("{e:#}"), "the renewed TLS certificate does not load; the previous one stays in use");
        }
        true
    }

    /// Watches the files (every 2 s) on a thread of its own, for as long as the
    /// process runs.
    pub fn watch(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        let spawned = std::thread::Builder::new().name("tls-watch".into()).spawn(move || {
            while let Some(c) = me.upgrade() {
                c.reload_if_changed();
                drop(c);
                std::thread::sleep(WATCH_EVERY);
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot watch the TLS certificate files; SIGHUP still reloads them");
        }
    }

    /// The rustls configuration serving this certificate (TLS 1.2 and 1.3).
    pub fn server_config(self: &Arc<Self>) -> anyhow::Result<rustls::ServerConfig> {
        let config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        Ok(config)
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

fn stamp(cert: &Path, key: &Path) -> Stamp {
    let c = std::fs::metadata(cert).ok()?;
    let k = std::fs::metadata(key).ok()?;
    Some((c.modified().ok()?, c.len(), k.modified().ok()?, k.len()))
}

fn read(cert: &Path, key: &Path, provider: &CryptoProvider) -> anyhow::Result<CertifiedKey> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read the certificate {} (tls_cert)", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} (tls_cert) is not a PEM certificate chain", cert.display()))?;
    if chain.is_empty() {
        bail!("{} (tls_cert) holds no certificate (expected PEM: -----BEGIN CERTIFICATE-----)", cert.display());
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read a PEM private key from {} (tls_key)", key.display()))?;
    CertifiedKey::from_der(chain, private, provider)
        .with_context(|| format!("the key {} (tls_key) does not fit the certificate {} (tls_cert), or is of a kind not supported", key.display(), cert.display()))
}

fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// The certificate `config` asks for: its files, or a self-signed one made under
/// `<data_dir>/tls` (said loudly, for trials); none when TLS is off. The files are
/// watched for renewals from then on.
pub fn from_config(config: &Config) -> anyhow::Result<Option<Arc<Certificate>>> {
    let (cert, key, trial) = match (&config.tls_cert, &config.tls_key) {
        (Some(c), Some(k)) => (c.clone(), k.clone(), false),
        _ if !config.tls_self_signed.is_empty() => {
            let (c, k) = self_signed(&config.data_dir.join("tls"), &config.tls_self_signed)?;
            (c, k, true)
        }
        _ => return Ok(None),
    };
    let c = Certificate::load(&cert, &key)?;
    if trial {
        let hosts = config.tls_self_signed.join(", ");
        let fp = c.fingerprint();
        tracing::warn!(hosts = %hosts, fingerprint = %fp, "HTTPS with a self-signed certificate, for trials only");
        eprintln!(
            "\n!!! casecast serves HTTPS with a SELF-SIGNED certificate for {hosts} (for trials, kept in {}).\n!!! Browsers will say \"Your connection is not private\" (NET::ERR_CERT_AUTHORITY_INVALID)\n!!! until each user accepts it; compare the SHA-256 fingerprint the browser shows with\n!!!   {fp}\n!!! For an event, give a real certificate: tls_cert and tls_key.\n",
            cert.display()
        );
    }
    c.watch();
    Ok(Some(c))
}

/// Makes (or keeps, when made before for the same names) a self-signed
/// certificate for `hosts` under `dir`; answers the certificate and key files.
pub fn self_signed(dir: &Path, hosts: &[String]) -> anyhow::Result<(PathBuf, PathBuf)> {
    let cert = dir.join("self-signed-cert.pem");
    let key = dir.join("self-signed-key.pem");
    let names = dir.join("self-signed-hosts");
    let wanted = hosts.join("\n");
    if cert.exists() && key.exists() && std::fs::read_to_string(&names).ok().as_deref() == Some(wanted.as_str()) {
        return Ok((cert, key));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot make {}", dir.display()))?;
    let made = rcgen::generate_simple_self_signed(hosts.to_vec()).context("cannot make a self-signed certificate for those names")?;
    std::fs::write(&key, pem("PRIVATE KEY", &made.signing_key.serialize_der())).with_context(|| format!("cannot write {}", key.display()))?;
    files::make_private(&key).with_context(|| format!("cannot make {} private", key.display()))?;
    std::fs::write(&cert, pem("CERTIFICATE", made.cert.der())).with_context(|| format!("cannot write {}", cert.display()))?;
    std::fs::write(&names, wanted)?;
    Ok((cert, key))
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("casecast-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn a_self_signed_certificate_loads_and_is_kept_for_the_same_names() {
        let dir = temp("keep");
        let hosts = vec!["casecast.example".to_string(), "10.0.0.5".to_string()];
        let (cert, key) = self_signed(&dir, &hosts).unwrap();
        let c = Certificate::load(&cert, &key).unwrap();
        let first = c.fingerprint();
        assert_eq!(first.len(), 32 * 3 - 1);
        // The same names: the same certificate (a browser's exception stays valid).
        self_signed(&dir, &hosts).unwrap();
        assert_eq!(Certificate::load(&cert, &key).unwrap().fingerprint(), first);
        // Other names: a new one.
        self_signed(&dir, &["other.example".to_string()]).unwrap();
        assert_ne!(Certificate::load(&cert, &key).unwrap().fingerprint(), first);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_broken_renewal_keeps_the_certificate_in_use() {
        let dir = temp("renew");
        let (cert, key) = self_signed(&dir, &["a.example".to_string()]).unwrap();
        let c = Certificate::load(&cert, &key).unwrap();
        let first = c.fingerprint();
        // Half-written: refused with a reason, the old one stays.
        std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nAAAA\n").unwrap();
        let e = c.reload().unwrap_err();
        assert!(format!("{e:#}").contains("tls_cert"), "{e:#}");
        assert_eq!(c.fingerprint(), first);
        // A key of another certificate: refused.
        let other = temp("renew-other");
        let (cert2, _) = self_signed(&other, &["b.example".to_string()]).unwrap();
        std::fs::copy(&cert2, &cert).unwrap();
        assert!(format!("{:#}", c.reload().unwrap_err()).contains("does not fit"));
        assert_eq!(c.fingerprint(), first);
        // A whole renewal (both files) is taken when the files change.
        let (cert3, key3) = self_signed(&other, &["c.example".to_string()]).unwrap();
        std::fs::copy(&key3, &key).unwrap();
        std::fs::copy(&cert3, &cert).unwrap();
        // (Modification times may not tick within a test: the sizes or times differ,
        // or force it as SIGHUP would.)
        if !c.reload_if_changed() {
            c.reload().unwrap();
        }
        assert_ne!(c.fingerprint(), first);
        assert_eq!(c.fingerprint(), Certificate::load(&cert3, &key3).unwrap().fingerprint());
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&other);
    }
}
