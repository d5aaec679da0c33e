//! Speaking the distribution API to a [`TestRegistry`] directly, to make
//! what `docker push` cannot: multi-platform indexes (manifest lists) over
//! manifests pushed by the legacy builder, and many tags at once.
//!
//! A minimal HTTP/1.0 client over std's `TcpStream` (the registry closes
//! the connection after each answer, so no framing is needed), loopback
//! only, bounded by timeouts. It shares no code with the client under test.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::TestRegistry;

/// Docker's manifest list media type (what Docker Hub serves for
/// multi-platform images).
pub const MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// The media type of a manifest the legacy builder pushes.
pub const MANIFEST_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// An HTTP answer: status, headers (lowercase names), body.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    /// The first header named `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The body as text, for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request to `addr` (a loopback `host:port`); panics on transport errors.
pub fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    let timeout = Some(Duration::from_secs(10));
    let _ = stream.set_read_timeout(timeout);
    let _ = stream.set_write_timeout(timeout);
    let mut request =
        format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        request += &format!("{k}: {v}\r\n");
    }
    request += "\r\n";
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap_or_else(|e| panic!("{method} {path}: reading: {e}"));
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = raw.get(split + 4..).unwrap_or_default().to_vec();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: not an HTTP answer: {head}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Answer { status, headers, body }
}

/// A manifest as the registry stores it.
pub struct Stored {
    pub media_type: String,
    pub digest: String,
    pub size: usize,
    pub body: Vec<u8>,
}

impl TestRegistry {
    /// The manifest `repository` (a path inside this registry, as
    /// [`TestRegistry::repo`] minus the address) serves for `reference`.
    pub fn manifest(&self, repository: &str, reference: &str) -> Stored {
        let path = format!("/v2/{repository}/manifests/{reference}");
        let accept = format!("{MANIFEST_LIST}, {MANIFEST_V2}");
        let a = http(&self.addr(), "GET", &path, &[("Accept", &accept)], b"");
        assert_eq!(a.status, 200, "GET {path}: {}", String::from_utf8_lossy(&a.body));
        Stored {
            media_type: a.header("content-type").unwrap_or(MANIFEST_V2).to_string(),
            digest: a.header("docker-content-digest").unwrap_or_default().to_string(),
            size: a.body.len(),
            body: a.body,
        }
    }

    /// The digest this registry serves for `image` (`ADDR/REPO:TAG`, as
    /// [`TestRegistry::repo`] names it, plus a tag), whatever its media
    /// type: what a client asking for any of them is given.
    pub fn digest_of(&self, image: &str) -> String {
        let (name, tag) = image.rsplit_once(':').unwrap_or_else(|| panic!("{image}: no tag"));
        let repository = name.strip_prefix(&format!("{}/", self.addr())).unwrap_or(name);
        let path = format!("/v2/{repository}/manifests/{tag}");
        let accept = format!(
            "{MANIFEST_LIST}, {MANIFEST_V2}, application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"
        );
        let a = http(&self.addr(), "HEAD", &path, &[("Accept", &accept)], b"");
        assert_eq!(a.status, 200, "HEAD {path}");
        a.header("docker-content-digest").unwrap_or_else(|| panic!("HEAD {path}: no digest")).to_string()
    }

    /// Stores `body` as `repository:tag`; returns its digest.
    pub fn put_manifest(&self, repository: &str, tag: &str, media_type: &str, body: &[u8]) -> String {
        let path = format!("/v2/{repository}/manifests/{tag}");
        let a = http(&self.addr(), "PUT", &path, &[("Content-Type", media_type)], body);
        assert_eq!(a.status, 201, "PUT {path}: {}", String::from_utf8_lossy(&a.body));
        a.header("docker-content-digest").unwrap_or_default().to_string()
    }

    /// Stores a manifest list `repository:tag` with one entry per
    /// `(manifest, architecture)`, all `linux`; returns its digest.
    pub fn put_index(&self, repository: &str, tag: &str, entries: &[(&Stored, &str)]) -> String {
        let manifests: Vec<serde_json::Value> = entries
            .iter()
            .map(|(m, arch)| {
                serde_json::json!({
                    "mediaType": m.media_type,
                    "digest": m.digest,
                    "size": m.size,
                    "platform": {"architecture": arch, "os": "linux"},
                })
            })
            .collect();
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_LIST,
            "manifests": manifests,
        });
        let body = serde_json::to_vec(&index).unwrap_or_else(|e| panic!("index JSON: {e}"));
        self.put_manifest(repository, tag, MANIFEST_LIST, &body)
    }

    /// The path of `repo` (from [`TestRegistry::repo`]) inside this registry.
    pub fn path_of(&self, repo: &str) -> String {
        repo.strip_prefix(&format!("{}/", self.addr())).unwrap_or(repo).to_string()
    }
}

impl TestRegistry {
    /// Stores a copy of `repository:from` whose image config says
    /// `architecture`, under the tag `from-architecture`; returns it. The
    /// files are unchanged: a `FROM scratch` static amd64 binary runs
    /// whatever the config claims, so the engine holds an "emulated" image
    /// without an emulator.
    pub fn as_architecture(&self, repository: &str, from: &str, architecture: &str) -> Stored {
        let original = self.manifest(repository, from);
        let mut manifest: serde_json::Value =
            serde_json::from_slice(&original.body).unwrap_or_else(|e| panic!("manifest JSON: {e}"));
        let config_digest = manifest["config"]["digest"].as_str().unwrap_or_default().to_string();
        let blob = http(&self.addr(), "GET", &format!("/v2/{repository}/blobs/{config_digest}"), &[], b"");
        assert_eq!(blob.status, 200, "GET config blob {config_digest}");
        let mut config: serde_json::Value =
            serde_json::from_slice(&blob.body).unwrap_or_else(|e| panic!("config JSON: {e}"));
        config["architecture"] = serde_json::Value::from(architecture);
        let config = serde_json::to_vec(&config).unwrap_or_else(|e| panic!("config JSON: {e}"));
        let digest = self.put_blob(repository, &config);
        manifest["config"]["digest"] = serde_json::Value::from(digest);
        manifest["config"]["size"] = serde_json::Value::from(config.len());
        let body = serde_json::to_vec(&manifest).unwrap_or_else(|e| panic!("manifest JSON: {e}"));
        let tag = format!("{from}-{architecture}");
        self.put_manifest(repository, &tag, &original.media_type, &body);
        self.manifest(repository, &tag)
    }

    /// Uploads `body` as a blob of `repository` (monolithic upload);
    /// returns its digest.
    pub fn put_blob(&self, repository: &str, body: &[u8]) -> String {
        let digest = format!("sha256:{}", sha256_hex(body));
        let start = http(&self.addr(), "POST", &format!("/v2/{repository}/blobs/uploads/"), &[], b"");
        assert_eq!(start.status, 202, "starting a blob upload: {}", String::from_utf8_lossy(&start.body));
        let location = start.header("location").unwrap_or_default();
        // distribution sends an absolute URL; the path and query are what we need.
        let path = location.split_once(&self.addr()).map_or(location, |(_, p)| p);
        let separator = if path.contains('?') { '&' } else { '?' };
        let put = http(
            &self.addr(),
            "PUT",
            &format!("{path}{separator}digest={digest}"),
            &[("Content-Type", "application/octet-stream")],
            body,
        );
        assert_eq!(put.status, 201, "finishing a blob upload: {}", String::from_utf8_lossy(&put.body));
        digest
    }
}

/// `sha256sum` of `body` (coreutils: the tests need no hashing crate).
pub fn sha256_hex(body: &[u8]) -> String {
    use std::process::{Command, Stdio};
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running sha256sum: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(body).unwrap_or_else(|e| panic!("writing to sha256sum: {e}"));
    }
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("sha256sum: {e}"));
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_string()
}
