//! HTTPS and WSS: commentators on another machine's address join over `https://`
//! (browsers open cameras only there or on localhost), the links the server hands
//! out name HTTPS, plain-HTTP pages from elsewhere are sent there, and a renewed
//! certificate is served without a restart.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use casecast_signaling::Role;
use casecast_tests::browser::Browser;
use casecast_tests::net::LocalAddress;
use casecast_tests::*;
use serde_json::json;

use super::{api, page_stats};

/// The SHA-256 fingerprint of the certificate `host:port` presents, as OpenSSL (a
/// TLS client we did not write) reads it.
fn served_fingerprint(host: &str, port: u16) -> Option<String> {
    let script = format!(
        "openssl s_client -connect {host}:{port} -servername {host} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256"
    );
    let out = Command::new("sh").arg("-c").arg(script).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().split_once('=').map(|(_, fp)| fp.to_string())
}

/// `GET path` over HTTPS to `127.0.0.1:port` with OpenSSL (the certificate is not
/// checked: a test's own); answers the status line.
fn https_status(port: u16, path: &str) -> Option<String> {
    let script = format!(
        "printf 'GET {path} HTTP/1.1\\r\\nHost: casecast.test\\r\\nConnection: close\\r\\n\\r\\n' | timeout 10 openssl s_client -quiet -connect 127.0.0.1:{port} -servername casecast.test 2>/dev/null"
    );
    let out = Command::new("sh").arg("-c").arg(script).output().ok()?;
    String::from_utf8_lossy(&out.stdout).lines().next().map(|l| l.trim().to_string())
}

fn fingerprint_of(pem: &std::path::Path) -> Result<String> {
    let out = Command::new("openssl").args(["x509", "-noout", "-fingerprint", "-sha256", "-in"]).arg(pem).output()?;
    let text = String::from_utf8(out.stdout)?;
    Ok(text.trim().split_once('=').context("no fingerprint from openssl")?.1.to_string())
}

/// Makes a certificate for `cn` with OpenSSL: an ECDSA P-256 one, or RSA 2048.
fn make_certificate(dir: &std::path::Path, name: &str, cn: &str, rsa: bool) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    let (cert, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    let kind: &[&str] = if rsa { &["-newkey", "rsa:2048"] } else { &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] };
    let ok = Command::new("openssl")
        .args(["req", "-x509", "-nodes", "-days", "2", "-subj", &format!("/CN={cn}"), "-addext", &format!("subjectAltName=DNS:{cn}")])
        .args(kind)
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()?
        .status
        .success();
    anyhow::ensure!(ok, "openssl cannot make a certificate");
    Ok((cert, key))
}

#[test]
fn commentators_on_another_address_join_over_https_and_hear_each_other() -> Result<()> {
    let addr = LocalAddress::new()?;
    let ip = addr.ip.to_string();
    let tls_port = free_tcp_port();
    let tls_listen = format!("{ip}:{tls_port}");
    let server = Server::demo_at(&ip, &["--program", "false", "--tls-self-signed", &ip, "--tls-listen", &tls_listen])?;
    let https = format!("https://{ip}:{tls_port}");
    // The links handed out name HTTPS: an invitation made through the API.
    let center = server.token("*", Role::Operator, "center");
    let (code, inv) = api("POST", &format!("{}/api/events/demo/invitations", server.url), Some(&center), Some(json!({"name": "Dr. A", "role": "commentator"})))?;
    assert_eq!(code, 201, "{inv}");
    let link_a = inv["link"].as_str().context("no link")?.to_string();
    assert!(link_a.starts_with(&format!("{https}/room/demo?token=")), "{link_a}");
    // A page asked for over plain HTTP from this (non-loopback) address is sent to
    // HTTPS, token and all; the API is not.
    let plain = format!("{}/room/demo?token=x", server.url);
    let agent: ureq::Agent = ureq::Agent::config_builder().max_redirects(0).http_status_as_error(false).build().new_agent();
    let r = agent.get(&plain).call()?;
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers().get("location").and_then(|v| v.to_str().ok()), Some(format!("{https}/room/demo?token=x").as_str()));
    assert_eq!(agent.get(&format!("{}/healthz", server.url)).call()?.status(), 200);

    server.wait_for_feed()?;
    let a = Browser::start_with(&["--ignore-certificate-errors"])?;
    let b = Browser::start_with(&["--ignore-certificate-errors"])?;
    // A follows the plain-HTTP link it might have typed: it lands on HTTPS.
    a.join_room(&link_a.replace(&https, &server.url))?;
    b.join_room(&format!("{https}/room/demo?token={}", server.token("demo", Role::Commentator, "Dr. B")))?;
    for (i, page) in [&a, &b].into_iter().enumerate() {
        let origin = page.eval("return location.origin")?;
        assert_eq!(origin, json!(https), "page {i}");
        // HTTP/2 where TLS is on (ALPN): a low-latency HLS player's blocked playlist
        // request and its part requests share one connection.
        let protocol = page.eval("return performance.getEntriesByType('navigation')[0].nextHopProtocol")?;
        assert_eq!(protocol, json!("h2"), "page {i}");
        // A secure context: the camera and microphone open (over http://10.x they
        // would not exist at all).
        assert_eq!(page.eval("return window.isSecureContext")?, json!(true));
        wait_for("the surgery feed to decode over HTTPS/WSS", Duration::from_secs(60), || {
            page_stats(page)["feedFramesDecoded"].as_f64().filter(|&n| n > 10.0)
        })
        .map_err(|e| anyhow::anyhow!("{e}; page {i} stats: {}", page_stats(page)))?;
        wait_for("audio from the other commentator", Duration::from_secs(60), || {
            page_stats(page)["audioPacketsReceivedFromCommentators"].as_f64().filter(|&n| n > 50.0)
        })
        .map_err(|e| anyhow::anyhow!("{e}; page {i} stats: {}", page_stats(page)))?;
    }
    assert_eq!(server.metric("casecast_participants{role=\"commentator\"}"), Some(2.0));
    Ok(())
}

#[test]
fn a_renewed_certificate_is_served_without_a_restart() -> Result<()> {
    let dir = TempDir::new("tls");
    let (cert, key) = make_certificate(&dir.0, "live", "casecast.test", false)?;
    let tls_port = free_tcp_port();
    let tls_listen = format!("127.0.0.1:{tls_port}");
    let (c, k) = (cert.display().to_string(), key.display().to_string());
    let server = Server::start(&["--tls-cert", &c, "--tls-key", &k, "--tls-listen", &tls_listen, "--public-url", "https://casecast.test"])?;
    let first = fingerprint_of(&cert)?;
    assert_eq!(served_fingerprint("127.0.0.1", tls_port).as_deref(), Some(first.as_str()));
    // The server answers over HTTPS too.
    assert_eq!(https_status(tls_port, "/healthz").as_deref(), Some("HTTP/1.1 200 OK"));

    // Renewed in place (an RSA certificate this time): served within seconds.
    let (new_cert, new_key) = make_certificate(&dir.0, "renewed", "casecast.test", true)?;
    let renewed = fingerprint_of(&new_cert)?;
    std::fs::copy(&new_key, &key)?;
    std::fs::copy(&new_cert, &cert)?;
    wait_for("the renewed certificate to be served", Duration::from_secs(15), || {
        (served_fingerprint("127.0.0.1", tls_port)? == renewed).then_some(())
    })?;
    // A half-written renewal is refused with its reason; the certificate in use stays.
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nMIIB\n")?;
    wait_for("the broken renewal to be reported", Duration::from_secs(15), || {
        server.log_text().contains("the renewed TLS certificate does not load").then_some(())
    })?;
    assert_eq!(served_fingerprint("127.0.0.1", tls_port).as_deref(), Some(renewed.as_str()));
    // SIGHUP loads the files again (the good ones back).
    std::fs::copy(&new_cert, &cert)?;
    let loads = |s: &Server| s.log_text().matches("TLS certificate loaded again").count();
    let before = loads(&server);
    server.signal("HUP")?;
    wait_for("SIGHUP to reload the certificate", Duration::from_secs(15), || (loads(&server) > before).then_some(()))?;
    assert_eq!(served_fingerprint("127.0.0.1", tls_port).as_deref(), Some(renewed.as_str()));
    // Still serving, and the key never reached the log.
    assert_eq!(https_status(tls_port, "/healthz").as_deref(), Some("HTTP/1.1 200 OK"));
    let key_text = std::fs::read_to_string(&new_key)?;
    let key_line = key_text.lines().nth(1).unwrap_or("");
    assert!(!server.log_text().contains(key_line));
    Ok(())
}

#[test]
fn tls_settings_that_cannot_work_are_refused_at_start() -> Result<()> {
    let dir = TempDir::new("tls-bad");
    let missing = dir.0.join("missing.pem");
    let m = missing.display().to_string();
    for (args, says) in [
        (vec!["--tls-cert", m.as_str()], "tls_key is not"),
        (vec!["--tls-cert", m.as_str(), "--tls-key", m.as_str()], "cannot read the certificate"),
        (vec!["--tls-self-signed", "a.example", "--tls-cert", m.as_str(), "--tls-key", m.as_str()], "use one"),
    ] {
        let out = Command::new(casecast_bin())
            .arg("serve")
            .args(&args)
            .args(["--secret", SECRET, "--data-dir"])
            .arg(&dir.0)
            .output()?;
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "{args:?}: {err}");
    }
    Ok(())
}
