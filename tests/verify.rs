//! Run only signed images (issue 24): cosign signatures, stored in the
//! real test registry exactly as cosign stores them (an OCI manifest at
//! `sha256-<hex>.sig` whose layer is the simple signing payload with the
//! base64 signature in `dev.cosignproject.cosign/signature`), with keys
//! made in the test. A refused digest is never pulled into service: the
//! plan says why and the container is untouched.
#![cfg(feature = "docker-tests")]

mod common;

use common::cosign::{payload, put_signature, put_signature_referrer, sign_image, Key};
use common::{ImageSpec, ReferrersRegistry, TestRegistry, TestRun};
use serde_json::Value;

/// A container on `app:1` and a registry with `app:1` and `app:2`.
struct Fixture {
    run: TestRun,
    registry: TestRegistry,
    repo: String,
    path: String,
    name: String,
    id: String,
    state: String,
}

impl Fixture {
    fn new(test: &str) -> Fixture {
        let run = TestRun::new(test);
        let (registry, repo) = run.registry_with_versions();
        let path = registry.path_of(&repo);
        let id = run.run_container("web", &format!("{repo}:1"), &[]);
        let name = run.name("web");
        let state = run.write_file("state/.keep", "").parent().expect("dir").display().to_string();
        Fixture { run, registry, repo, path, name, id, state }
    }

    fn digest(&self, tag: &str) -> String {
        self.registry.digest_of(&format!("{}:{tag}", self.repo))
    }

    /// Signs `digest` of the repository with `key` (the payload names it).
    fn sign(&self, key: &Key, digest: &str) {
        sign_image(&self.registry, &self.repo, digest, key);
    }

    /// Writes the key files and the manifest wanting `app:2` with
    /// `policy.verify` listing `keys` (as files next to the manifest);
    /// returns the manifest's path.
    fn manifest(&self, keys: &[&Key]) -> String {
        let mut names = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            let file = format!("key{i}.pub");
            self.run.write_file(&file, k.public_pem());
            names.push(file);
        }
        let text = format!(
            "version: 1\ndefaults:\n  health: {{stable: 1s, timeout: 30s}}\npolicy:\n  verify:\n    keys: [{}]\n    require: true\ntargets:\n  - container: {}\n    image: {}:2\n",
            names.join(", "),
            self.name,
            self.repo
        );
        self.run.write_file("desired-state.yaml", text).display().to_string()
    }

    /// The plan entry of the container.
    fn plan(&self, file: &str) -> Value {
        let out = self.run.cli(&["plan", "-f", file, "--output", "json"]);
        let plan: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("plan is not JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
        plan["actions"][0].clone()
    }

    /// `reconcile --once`; stdout and stderr together.
    fn reconcile(&self, file: &str) -> String {
        let out = self.run.cli(&["reconcile", "-f", file, "--once", "--state-dir", &self.state]);
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }

    /// The plan holds the container with a reason containing `why`, and a
    /// pass leaves it exactly as it was.
    fn assert_refused(&self, file: &str, why: &str) {
        let entry = self.plan(file);
        assert_eq!(entry["action"], "error", "{entry:#}");
        let reason = entry["reason"].as_str().unwrap_or_default();
        assert!(reason.contains(why), "reason should say `{why}`: {reason}");
        let out = self.reconcile(file);
        assert!(out.contains(why), "the pass says why: {out}");
        assert_eq!(self.run.inspect(&self.name, "{{.Id}}"), self.id, "the container is untouched: {out}");
        assert_eq!(self.run.inspect(&self.name, "{{.Config.Image}}"), format!("{}:1", self.repo));
        assert_eq!(self.run.inspect(&self.name, "{{.State.Running}}"), "true");
    }

    fn assert_upgraded(&self, file: &str) {
        let entry = self.plan(file);
        assert_eq!(entry["action"], "upgrade", "{entry:#}");
        let out = self.reconcile(file);
        assert_eq!(self.run.inspect(&self.name, "{{.Config.Image}}"), format!("{}:2", self.repo), "{out}");
        assert_ne!(self.run.inspect(&self.name, "{{.Id}}"), self.id, "{out}");
        assert_eq!(self.plan(file)["action"], "none", "the next pass has nothing to do");
    }
}

#[test]
fn a_signed_image_is_upgraded() {
    let f = Fixture::new("verify_signed_upgraded");
    let key = Key::p256();
    f.sign(&key, &f.digest("2"));
    let file = f.manifest(&[&key]);
    f.assert_upgraded(&file);
}

#[test]
fn an_unsigned_image_is_refused() {
    let f = Fixture::new("verify_unsigned_refused");
    let file = f.manifest(&[&Key::p256()]);
    f.assert_refused(&file, "no signature");
}

#[test]
fn an_image_signed_by_another_key_is_refused() {
    let f = Fixture::new("verify_other_key_refused");
    f.sign(&Key::p256(), &f.digest("2"));
    let file = f.manifest(&[&Key::p256()]);
    f.assert_refused(&file, "signed by an unknown key");
}

#[test]
fn a_signature_copied_to_another_digest_is_refused() {
    let f = Fixture::new("verify_other_digest_refused");
    let key = Key::p256();
    // A valid signature of app:1, stored as app:2's.
    let p = payload(&f.repo, &f.digest("1"));
    put_signature(&f.registry, &f.path, &f.digest("2"), &p, &key.sign(&p));
    let file = f.manifest(&[&key]);
    f.assert_refused(&file, "signature is for another digest");
}

#[test]
fn a_payload_changed_after_signing_is_refused() {
    let f = Fixture::new("verify_tampered_refused");
    let key = Key::p256();
    let digest = f.digest("2");
    let signed = payload(&f.repo, &digest);
    let signature = key.sign(&signed);
    // Same digest, another identity: the signature no longer covers it.
    let tampered = payload(&format!("{}-evil", f.repo), &digest);
    put_signature(&f.registry, &f.path, &digest, &tampered, &signature);
    let file = f.manifest(&[&key]);
    f.assert_refused(&file, "payload does not verify");
}

#[test]
fn a_tag_moved_to_an_unsigned_image_after_signing_is_refused() {
    let f = Fixture::new("verify_moved_tag_refused");
    let key = Key::p256();
    f.sign(&key, &f.digest("2"));
    // Someone pushes another image to the signed tag.
    let reference = format!("{}:2", f.repo);
    f.run.build_image(
        &reference,
        &ImageSpec { env: vec![("TESTBOX_VERSION", "2-evil")], ..Default::default() },
    );
    f.registry.push(&reference);
    let file = f.manifest(&[&key]);
    f.assert_refused(&file, "no signature");
}

#[test]
fn with_two_keys_listed_a_signature_by_either_is_enough() {
    let f = Fixture::new("verify_key_rotation");
    let (old, new) = (Key::p256(), Key::ed25519());
    f.sign(&new, &f.digest("2"));
    let file = f.manifest(&[&old, &new]);
    f.assert_upgraded(&file);
}

#[test]
fn with_the_registry_down_the_reason_says_so_and_nothing_changes() {
    let mut f = Fixture::new("verify_registry_down");
    let key = Key::p256();
    f.sign(&key, &f.digest("2"));
    let file = f.manifest(&[&key]);
    f.registry.stop();
    f.assert_refused(&file, "unreachable");
}

/// `container-upgrader run` with its API on a free loopback port.
fn daemon(f: &Fixture, file: &str) -> (common::Spawned, String) {
    daemon_with(f, file, &[])
}

fn daemon_with(f: &Fixture, file: &str, extra: &[&str]) -> (common::Spawned, String) {
    let addr = common::free_addr();
    let mut cmd = f.run.cli_command();
    cmd.args(["run", "-f", file, "--state-dir", &f.state, "--listen", &addr]).args(extra);
    let d = common::Spawned::start(cmd, "run");
    common::wait_for("the API", std::time::Duration::from_secs(60), || {
        std::net::TcpStream::connect(&addr).is_ok()
    });
    (d, addr)
}

fn get(addr: &str, path: &str) -> String {
    common::http(addr, "GET", path, &[], b"").text()
}

/// Signature manifest reads in the registry's access log.
fn signature_reads(registry: &TestRegistry) -> usize {
    registry.log().lines().filter(|l| l.contains(".sig") && l.contains("GET")).count()
}

#[test]
fn the_daemon_names_the_refusal_in_its_status_and_tells_the_webhook_once() {
    let f = Fixture::new("verify_daemon_status");
    let file = f.manifest(&[&Key::p256()]);
    let text = std::fs::read_to_string(&file).expect("manifest");
    std::fs::write(&file, text.replace("defaults:\n", "defaults:\n  drift_interval: 2s\n")).expect("write");
    let hook = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let webhook = format!("http://{}/events", hook.local_addr().expect("addr"));
    let events = common::receiver(hook);
    let (mut d, addr) = daemon_with(&f, &file, &["--report-webhook", &webhook]);
    let mut status = Value::Null;
    common::wait_for("a pass in the status", std::time::Duration::from_secs(60), || {
        status = serde_json::from_str(&get(&addr, "/v1/status")).unwrap_or(Value::Null);
        !status["last_pass"]["summary"]["failures"][0].is_null()
    });
    let failure = &status["last_pass"]["summary"]["failures"][0];
    assert_eq!(failure["kind"], "error", "{status:#}");
    assert!(failure["reason"].as_str().unwrap_or_default().contains("no signature"), "{status:#}");

    // The webhook hears of it as an op that changed nothing, once, however
    // many passes find the same refusal.
    let passes = || -> u64 {
        get(&addr, "/metrics")
            .lines()
            .filter(|l| l.starts_with("container_upgrader_passes_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    common::wait_for("the refusal's event", std::time::Duration::from_secs(30), || {
        !events.lock().expect("events").is_empty()
    });
    let seen = passes();
    common::wait_for("three more passes", std::time::Duration::from_secs(30), || passes() >= seen + 3);
    let posted = events.lock().expect("events").clone();
    assert_eq!(posted.len(), 1, "told once: {posted:#?}");
    let event: Value = serde_json::from_str(&posted[0]).expect("an event is JSON");
    assert_eq!(event["outcome"], "aborted", "{event:#}");
    assert_eq!(event["container"], f.name.as_str(), "{event:#}");
    assert_eq!(event["to"], format!("{}:2", f.repo), "{event:#}");
    assert_eq!(event["from"], format!("{}:1", f.repo), "{event:#}");
    assert!(event["op_id"].as_str().is_some_and(|id| id.starts_with("refused-")), "{event:#}");
    assert!(event["reason"].as_str().unwrap_or_default().contains("no signature"), "{event:#}");
    assert_eq!(f.run.inspect(&f.name, "{{.Id}}"), f.id, "untouched");
    d.kill();
}

#[test]
fn a_verified_digest_is_not_asked_about_again_by_later_passes() {
    let f = Fixture::new("verify_cached_per_digest");
    let key = Key::p256();
    f.sign(&key, &f.digest("2"));
    let file = f.manifest(&[&key]);
    let text = std::fs::read_to_string(&file).expect("manifest");
    std::fs::write(&file, text.replace("defaults:\n", "defaults:\n  drift_interval: 2s\n")).expect("write");
    let (mut d, addr) = daemon(&f, &file);
    common::wait_for("the upgrade", std::time::Duration::from_secs(90), || {
        // Mid-swap the name is briefly free: not found is "not yet".
        let image = f.run.try_docker(&["inspect", "-f", "{{.Config.Image}}", &f.name]);
        image.is_ok_and(|i| i == format!("{}:2", f.repo))
    });
    let passes = |m: &str| -> u64 {
        m.lines()
            .filter(|l| l.starts_with("container_upgrader_passes_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    let (before, reads) = (passes(&get(&addr, "/metrics")), signature_reads(&f.registry));
    assert_eq!(reads, 1, "one read of the signature for the upgrade:\n{}", f.registry.log());
    common::wait_for("two more passes", std::time::Duration::from_secs(30), || {
        passes(&get(&addr, "/metrics")) >= before + 2
    });
    assert_eq!(signature_reads(&f.registry), reads, "no-change passes read no signature");
    d.kill();
}

#[test]
fn a_signature_found_only_through_the_referrers_api_is_checked_like_a_sig_tag() {
    // The real registry behind a proxy that offers the referrers API;
    // the container and the manifest name images through the proxy.
    let run = TestRun::new("verify_referrers");
    let (registry, real_repo) = run.registry_with_versions();
    let path = registry.path_of(&real_repo);
    let proxy = ReferrersRegistry::start(&registry.addr());
    let repo = format!("{}/{path}", proxy.addr());
    let name = run.name("web");
    let id = run.run_container("web", &format!("{repo}:1"), &[]);
    let digest = registry.digest_of(&format!("{real_repo}:2"));
    let key = Key::p256();
    run.write_file("key.pub", key.public_pem());
    let file = run
        .write_file(
            "desired-state.yaml",
            format!(
                "version: 1\ndefaults:\n  health: {{stable: 1s, timeout: 30s}}\npolicy:\n  verify:\n    keys: [key.pub]\n    require: true\ntargets:\n  - container: {name}\n    image: {repo}:2\n"
            ),
        )
        .display()
        .to_string();
    let state = run.write_file("state/.keep", "").parent().expect("dir").display().to_string();
    let plan = |file: &str| -> Value {
        let out = run.cli(&["plan", "-f", file, "--output", "json"]);
        serde_json::from_slice::<Value>(&out.stdout).expect("plan JSON")["actions"][0].clone()
    };
    let signed = payload(&repo, &digest);

    // Only a referrer signed by another key: refused as such.
    let other = Key::p256();
    let by_other = put_signature_referrer(&registry, &path, &digest, &signed, &other.sign(&signed));
    proxy.add(&path, &digest, (&by_other.0, by_other.1), "application/vnd.dev.cosign.artifact.sig.v1+json");
    let entry = plan(&file);
    assert_eq!(entry["action"], "error", "{entry:#}");
    assert!(entry["reason"].as_str().unwrap_or_default().contains("signed by an unknown key"), "{entry:#}");
    let out = run.cli(&["reconcile", "-f", &file, "--once", "--state-dir", &state]);
    assert_eq!(run.inspect(&name, "{{.Id}}"), id, "untouched: {}", String::from_utf8_lossy(&out.stderr));

    // A referrer of another artifact type is not a signature; one by the
    // listed key is, and the container moves.
    proxy.add(&path, &digest, (&by_other.0, by_other.1), "application/vnd.example.sbom.v1+json");
    let good = put_signature_referrer(&registry, &path, &digest, &signed, &key.sign(&signed));
    proxy.add(&path, &digest, (&good.0, good.1), "application/vnd.dev.cosign.artifact.sig.v1+json");
    assert_eq!(plan(&file)["action"], "upgrade", "{:#}", plan(&file));
    let out = run.cli(&["reconcile", "-f", &file, "--once", "--state-dir", &state]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(run.inspect(&name, "{{.Config.Image}}"), format!("{repo}:2"), "{said}");
}
