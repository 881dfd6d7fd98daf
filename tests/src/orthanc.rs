//! Orthanc (Debian's `orthanc` and `orthanc-dicomweb`) as a hospital's PACS beside
//! casecast, configured as `docs/cases.md` ("Orthanc as a peer") tells a site to:
//! casecast as a DICOMweb server it queries and retrieves from, with the token in
//! the `Authorization` header, and as a DICOM modality it sends studies to.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::{Proc, TempDir, free_tcp_port, http_get, http_request, wait_for};

/// Where Debian's `orthanc-dicomweb` puts the plugin.
pub const DICOMWEB_PLUGIN: &str = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so";

/// One `Orthanc` process in the foreground, with its own storage in a temporary
/// folder and its configuration written there; ended on drop.
pub struct Orthanc {
    _proc: Proc,
    /// `http://127.0.0.1:PORT`, its REST API (no authentication, loopback only).
    pub url: String,
    /// Its DICOM port.
    pub dicom_port: u16,
    config: Value,
    log: PathBuf,
    _dir: TempDir,
}

/// casecast as Orthanc knows it.
pub struct Peer<'a> {
    /// casecast's DICOMweb root, `http://…/dicomweb/`.
    pub dicomweb: &'a str,
    /// The token Orthanc sends (a library's viewer, commentator or operator).
    pub token: &'a str,
    /// casecast's C-STORE address (`cases.cstore_listen`) and AE title, if open.
    pub cstore: Option<(&'a str, u16, &'a str)>,
}

impl Orthanc {
    /// Starts Orthanc with casecast configured as the DICOMweb server `casecast`
    /// (and, with `peer.cstore`, the DICOM modality `casecast`), on free loopback
    /// ports; waits until its REST API answers.
    pub fn start(peer: &Peer) -> Result<Orthanc> {
        let bin = ["/usr/sbin/Orthanc", "/usr/bin/Orthanc"].into_iter().find(|p| Path::new(p).exists()).context("Orthanc is not installed (scripts/install-deps.sh test)")?;
        anyhow::ensure!(Path::new(DICOMWEB_PLUGIN).exists(), "{DICOMWEB_PLUGIN} is missing (orthanc-dicomweb: scripts/install-deps.sh test)");
        let dir = TempDir::new("orthanc");
        let storage = dir.0.join("storage");
        std::fs::create_dir_all(&storage)?;
        let (http_port, dicom_port) = (free_tcp_port(), free_tcp_port());
        let mut config = json!({
            "Name": "casecast-test-pacs",
            "StorageDirectory": storage,
            "IndexDirectory": storage,
            "HttpPort": http_port,
            "HttpBindAddress": "127.0.0.1",
            "DicomPort": dicom_port,
            "DicomBindAddress": "127.0.0.1",
            "DicomAet": "ORTHANC",
            "RemoteAccessAllowed": false,
            "AuthenticationEnabled": false,
            "Plugins": [DICOMWEB_PLUGIN],
            "DicomWeb": {
                "Enable": true,
                "Root": "/dicom-web/",
                "Servers": {
                    "casecast": {
                        "Url": peer.dicomweb,
                        "HttpHeaders": { "Authorization": format!("Bearer {}", peer.token) }
                    }
                }
            }
        });
        if let Some((host, port, ae)) = peer.cstore {
            config["DicomModalities"] = json!({ "casecast": [ae, host, port] });
        }
        let path = dir.0.join("orthanc.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&config)?)?;
        let log = dir.0.join("orthanc.log");
        let logf = std::fs::File::create(&log)?;
        let child = Command::new(bin)
            .arg("--verbose")
            .arg(&path)
            .stdout(logf.try_clone()?)
            .stderr(logf)
            .spawn()
            .context("cannot start Orthanc")?;
        let proc = Proc(child);
        let url = format!("http://127.0.0.1:{http_port}");
        let up = wait_for("Orthanc's REST API", Duration::from_secs(30), || http_get(&format!("{url}/system")).ok().filter(|(s, _)| *s == 200));
        let orthanc = Orthanc { _proc: proc, url, dicom_port, config, log, _dir: dir };
        if let Err(e) = up {
            bail!("{e}\n--- Orthanc's log ---\n{}", orthanc.log_text());
        }
        Ok(orthanc)
    }

    /// The configuration it was started with (as written to its file).
    pub fn config(&self) -> &Value {
        &self.config
    }

    /// What Orthanc logged.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A REST call: status and body (JSON when it is JSON, else `Null`), and the raw
    /// bytes.
    pub fn rest(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<(u16, Value, Vec<u8>)> {
        let (status, _, bytes) = http_request(method, &format!("{}{path}", self.url), &[], body)?;
        Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null), bytes))
    }

    /// A REST call that must succeed (2xx): its JSON answer.
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let body = body.map(|b| b.to_string());
        let (status, v, bytes) = self.rest(method, path, body.as_deref().map(str::as_bytes))?;
        if !(200..300).contains(&status) {
            let log = self.log_text();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            bail!(
                "Orthanc {method} {path}: {status} {}\n--- Orthanc's log (last lines) ---\n{}",
                String::from_utf8_lossy(&bytes),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        Ok(v)
    }

    /// Stores a DICOM file in Orthanc (as a modality would have sent it); returns
    /// its Orthanc id.
    pub fn upload(&self, bytes: &[u8]) -> Result<String> {
        let (status, v, body) = self.rest("POST", "/instances", Some(bytes))?;
        anyhow::ensure!(status == 200, "Orthanc POST /instances: {status} {}", String::from_utf8_lossy(&body));
        v["ID"].as_str().map(str::to_string).context("no ID in Orthanc's answer")
    }

    /// The ids of every instance Orthanc holds.
    pub fn instances(&self) -> Result<Vec<String>> {
        let v = self.call("GET", "/instances", None)?;
        Ok(v.as_array().map(|a| a.iter().filter_map(|i| i.as_str().map(str::to_string)).collect()).unwrap_or_default())
    }
}
