//! CloudFront signed URLs for private events: a custom policy covering the event's
//! path (the playlist and its segments) until a time, signed with the key's RSA
//! private key over SHA-256 (`Hash-Algorithm=SHA256`; CloudFront's default is
//! SHA-1). The player adds the query parameters to every request (`Policy`,
//! `Signature`, `Key-Pair-Id`, `Hash-Algorithm`).

use base64::Engine;

/// A CloudFront signer: key pair id and RSA private key.
pub struct Signer {
    key_pair_id: String,
    key: aws_lc_rs::rsa::KeyPair,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("key_pair_id", &self.key_pair_id).finish_non_exhaustive()
    }
}

impl Signer {
    /// Reads the PEM private key (PKCS#1 `RSA PRIVATE KEY`, as CloudFront hands it
    /// out, or PKCS#8 `PRIVATE KEY`).
    pub fn from_pem(key_pair_id: &str, pem: &str) -> Result<Signer, String> {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).map(str::trim).collect();
        let der = base64::engine::general_purpose::STANDARD.decode(body).map_err(|e| format!("the CloudFront private key is not PEM: {e}"))?;
        let key = if pem.contains("BEGIN RSA PRIVATE KEY") {
            aws_lc_rs::rsa::KeyPair::from_der(&der)
        } else {
            aws_lc_rs::rsa::KeyPair::from_pkcs8(&der)
        }
        .map_err(|e| format!("the CloudFront private key is not an RSA key: {e}"))?;
        Ok(Signer { key_pair_id: key_pair_id.to_string(), key })
    }

    /// The query (without `?`) that lets its bearer fetch everything under
    /// `resource` (`https://domain/path/*`) until `expires` (Unix seconds).
    pub fn query(&self, resource: &str, expires: u64) -> Result<String, String> {
        let policy = policy(resource, expires);
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(&aws_lc_rs::signature::RSA_PKCS1_SHA256, &rng, policy.as_bytes(), &mut sig)
            .map_err(|_| "cannot sign the CloudFront policy".to_string())?;
        Ok(format!(
            "Policy={}&Signature={}&Key-Pair-Id={}&Hash-Algorithm=SHA256",
            url_safe(policy.as_bytes()),
            url_safe(&sig),
            self.key_pair_id
        ))
    }
}

/// CloudFront's custom policy, without white space, in the documented order.
pub fn policy(resource: &str, expires: u64) -> String {
    let resource = serde_json::Value::from(resource);
    format!(r#"{{"Statement":[{{"Resource":{resource},"Condition":{{"DateLessThan":{{"AWS:EpochTime":{expires}}}}}}}]}}"#)
}

/// CloudFront's URL-safe base64: `+` → `-`, `=` → `_`, `/` → `~`.
pub fn url_safe(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes).replace('+', "-").replace('=', "_").replace('/', "~")
}

/// The viewer's playlist URL: the CloudFront domain and the origin endpoint's path.
pub fn viewer_url(domain: &str, playlist_path: &str) -> String {
    format!("https://{}{}", domain.trim_start_matches("https://").trim_end_matches('/'), playlist_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key made by openssl, the query checked by openssl: the policy decodes to the
    /// resource and expiry, and the signature verifies over SHA-256.
    #[test]
    fn signed_queries_verify_with_openssl() {
        let dir = std::env::temp_dir().join(format!("casecast-cf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl").args(args).current_dir(&dir).output().expect("openssl (scripts/install-deps.sh test)");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            out.stdout
        };
        run(&["genrsa", "-traditional", "-out", "key.pem", "2048"]);
        run(&["rsa", "-in", "key.pem", "-pubout", "-out", "pub.pem"]);
        let pem = std::fs::read_to_string(dir.join("key.pem")).unwrap();
        assert!(pem.contains("BEGIN RSA PRIVATE KEY"), "PKCS#1, as CloudFront hands keys out");
        let signer = Signer::from_pem("K2JCJMDEHXQW5F", &pem).unwrap();
        let q = signer.query("https://d111.cloudfront.net/out/v1/abc/*", 1_800_000_000).unwrap();
        let params: std::collections::HashMap<&str, &str> = q.split('&').filter_map(|kv| kv.split_once('=')).collect();
        assert_eq!(params["Key-Pair-Id"], "K2JCJMDEHXQW5F");
        assert_eq!(params["Hash-Algorithm"], "SHA256");
        let unsafe_b64 = |s: &str| base64::engine::general_purpose::STANDARD.decode(s.replace('-', "+").replace('_', "=").replace('~', "/")).unwrap();
        let policy = unsafe_b64(params["Policy"]);
        assert_eq!(
            String::from_utf8(policy.clone()).unwrap(),
            r#"{"Statement":[{"Resource":"https://d111.cloudfront.net/out/v1/abc/*","Condition":{"DateLessThan":{"AWS:EpochTime":1800000000}}}]}"#
        );
        std::fs::write(dir.join("policy"), &policy).unwrap();
        std::fs::write(dir.join("sig"), unsafe_b64(params["Signature"])).unwrap();
        let verified = run(&["dgst", "-sha256", "-verify", "pub.pem", "-signature", "sig", "policy"]);
        assert_eq!(String::from_utf8_lossy(&verified).trim(), "Verified OK");
        assert!(Signer::from_pem("K", "-----BEGIN RSA PRIVATE KEY-----\nnot a key\n-----END RSA PRIVATE KEY-----").is_err());
        assert_eq!(viewer_url("d111.cloudfront.net/", "/out/v1/abc/index.m3u8"), "https://d111.cloudfront.net/out/v1/abc/index.m3u8");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
