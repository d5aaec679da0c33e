//! `run --git`: the manifest from a real Git server (the distribution's
//! `git http-backend`), applied to real containers through the real
//! registry. What a user notices: a commit moves the container; a bad
//! commit, a policy change, a wrong token or a deleted ref change nothing
//! and say why; a force-push back is followed; the host says which commit
//! it runs.
#![cfg(feature = "docker-tests")]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{free_addr, http, receiver, wait_for, GitServer, Spawned, TestRegistry, TestRun};

const API_TOKEN: &str = "api-token-0123456789";

struct Setup {
    run: TestRun,
    _registry: TestRegistry,
    repo: String,
    manifest: PathBuf,
    state: String,
    git: GitServer,
}

fn setup(test: &str, git_token: Option<&str>) -> Setup {
    let run = TestRun::new(test);
    let (registry, repo) = run.registry_with_versions();
    run.run_container("web", &format!("{repo}:1"), &[]);
    let manifest = run.write_file("host/desired-state.yaml", manifest(&run, &repo, "1"));
    let state = run.write_file("state/.keep", "").parent().expect("dir").display().to_string();
    let git = GitServer::start(&run.empty_dir("git"), git_token);
    Setup { run, _registry: registry, repo, manifest, state, git }
}

/// The manifest pinning `web` to `tag`, allowing only this test's registry.
fn manifest(run: &TestRun, repo: &str, tag: &str) -> String {
    format!(
        "version: 1\npolicy:\n  allowed_images: [\"127.0.0.1:*\"]\ndefaults:\n  drift_interval: 1h\n  health: {{stable: 1s, timeout: 30s}}\ntargets:\n  - container: {}\n    image: {repo}:{tag}\n",
        run.name("web")
    )
}

impl Setup {
    fn start(&self, extra: &[&str]) -> (Spawned, String) {
        let addr = free_addr();
        let token = self.run.write_file("api-token", API_TOKEN);
        let mut cmd = self.run.cli_command();
        cmd.args(["run", "-f", self.manifest.to_str().expect("utf-8"), "--state-dir", &self.state])
            .args(["--listen", &addr, "--token-file", token.to_str().expect("utf-8")])
            .args(["--git", &self.git.url(), "--git-interval", "1h"])
            .args(extra);
        (Spawned::start(cmd, "run --git"), addr)
    }

    /// The image `web` runs ("" mid-swap, while the name is free).
    fn image(&self) -> String {
        self.run
            .try_docker(&["inspect", "-f", "{{.Config.Image}}", &self.run.name("web")])
            .unwrap_or_default()
    }

    fn file(&self) -> String {
        std::fs::read_to_string(&self.manifest).expect("the manifest file")
    }
}

/// `/v1/status`'s `git` section (null while the API is not up yet).
fn git_status(addr: &str) -> serde_json::Value {
    if std::net::TcpStream::connect(addr).is_err() {
        return serde_json::Value::Null;
    }
    let bearer = format!("Bearer {API_TOKEN}");
    let answer = http(addr, "GET", "/v1/status", &[("Authorization", &bearer)], b"");
    let status: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
    status["git"].clone()
}

fn refresh(addr: &str) {
    let bearer = format!("Bearer {API_TOKEN}");
    let answer = http(addr, "POST", "/v1/git/refresh", &[("Authorization", &bearer)], b"");
    assert_eq!(answer.status, 202, "{}", answer.text());
}

fn metric(addr: &str, series: &str) -> Option<f64> {
    let bearer = format!("Bearer {API_TOKEN}");
    let answer = http(addr, "GET", "/metrics", &[("Authorization", &bearer)], b"");
    answer.text().lines().find(|l| l.starts_with(series)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn push(git: &GitServer, args: &[&str]) {
    let mut all = vec!["push", "-q", "origin"];
    all.extend_from_slice(args);
    git.git(&all);
}

#[test]
fn a_commit_upgrades_the_container_a_bad_one_changes_nothing_and_a_force_push_back_is_followed() {
    let s = setup("git_source_commits", Some("s3cret-token"));
    let token = s.run.write_file("git-token", "s3cret-token\n");
    let first = s.git.commit(&[("hosts/web-1.yaml", &manifest(&s.run, &s.repo, "1"))], "web on 1");
    let second = s.git.commit(&[("hosts/web-1.yaml", &manifest(&s.run, &s.repo, "2"))], "web to 2");
    push(&s.git, &["main"]);
    let hook = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let webhook = format!("http://{}/events", hook.local_addr().expect("addr"));
    let events = receiver(hook);
    let token = token.to_str().expect("utf-8");
    let (mut d, addr) =
        s.start(&["--git-path", "hosts/web-1.yaml", "--git-token-file", token, "--report-webhook", &webhook]);

    // The newest commit moves the container, and the host says which.
    wait_for("web on :2 from Git", Duration::from_secs(90), || s.image() == format!("{}:2", s.repo));
    let git = git_status(&addr);
    assert_eq!(git["commit"], second.as_str(), "{git:#}\n{}", d.output());
    assert_eq!(git["author"], "Test Author <author@example.test>", "{git:#}");
    assert!(git["authored_at"].as_str().is_some_and(|t| t.starts_with("20")), "{git:#}");
    assert_eq!(git["path"], "hosts/web-1.yaml");
    assert!(git["last_error"].is_null() && git["refused"].is_null(), "{git:#}");
    assert_eq!(s.file(), manifest(&s.run, &s.repo, "2"), "the file holds the commit's manifest");
    assert_eq!(metric(&addr, "container_upgrader_git_looks_total{result=\"applied\"}"), Some(1.0));
    assert!(metric(&addr, "container_upgrader_git_commit_timestamp_seconds").is_some_and(|t| t > 1.0e9));
    let out = d.output();
    assert!(!out.contains("s3cret-token"), "the Git token is never printed:\n{out}");
    // The op's webhook event and `status` name the commit too.
    wait_for("the op's event", Duration::from_secs(30), || !events.lock().expect("events").is_empty());
    let event: serde_json::Value =
        serde_json::from_str(&events.lock().expect("events")[0]).expect("an event is JSON");
    assert_eq!(event["git_commit"], second.as_str(), "{event:#}");
    let status = s.run.cli(&["status", "--state-dir", &s.state]);
    let text = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(text.contains(&format!("commit {second} by Test Author <author@example.test>")), "{text}");

    // An invalid manifest is refused with where and why; nothing changes.
    let broken = manifest(&s.run, &s.repo, "2").replace("    image:", "    imag:");
    let bad = s.git.commit(&[("hosts/web-1.yaml", &broken)], "typo");
    push(&s.git, &["main"]);
    refresh(&addr);
    wait_for("the bad commit refused", Duration::from_secs(30), || {
        git_status(&addr)["refused"]["commit"] == bad.as_str()
    });
    let git = git_status(&addr);
    let reason = git["refused"]["reason"].as_str().unwrap_or_default().to_string();
    let at = format!("({})):9:", "hosts/web-1.yaml");
    assert!(reason.contains("imag") && reason.contains(&at), "names the field and its line: {git:#}");
    assert_eq!(git["commit"], second.as_str(), "the file still comes from the last good commit: {git:#}");
    assert_eq!(s.file(), manifest(&s.run, &s.repo, "2"), "the file is unchanged");

    // Git cannot widen the host's policy.
    let wider = manifest(&s.run, &s.repo, "2").replace("[\"127.0.0.1:*\"]", "[\"*\"]");
    let widening = s.git.commit(&[("hosts/web-1.yaml", &wider)], "allow everything");
    push(&s.git, &["main"]);
    refresh(&addr);
    wait_for("the policy change refused", Duration::from_secs(30), || {
        git_status(&addr)["refused"]["commit"] == widening.as_str()
    });
    let reason = git_status(&addr)["refused"]["reason"].as_str().unwrap_or_default().to_string();
    assert!(reason.contains("it changes `policy`"), "{reason}");
    assert_eq!(s.file(), manifest(&s.run, &s.repo, "2"));
    assert_eq!(s.image(), format!("{}:2", s.repo), "the container was left alone");

    // History rewritten back to the first commit: followed (SIGHUP looks now).
    s.git.git(&["reset", "-q", "--hard", &first]);
    push(&s.git, &["--force", "main"]);
    let _ = std::process::Command::new("kill").args(["-HUP", &d.pid().to_string()]).status();
    wait_for("web back on :1 after the force-push", Duration::from_secs(90), || {
        s.image() == format!("{}:1", s.repo)
    });
    let git = git_status(&addr);
    assert_eq!(git["commit"], first.as_str(), "{git:#}");
    assert!(git["refused"].is_null(), "{git:#}");
    d.kill();
}

#[test]
fn a_wrong_token_or_a_deleted_ref_changes_nothing_and_says_why_and_a_branch_is_followed() {
    let s = setup("git_source_refs", Some("right-token"));
    s.git.commit(&[("desired-state.yaml", &manifest(&s.run, &s.repo, "1"))], "main stays on 1");
    push(&s.git, &["main"]);
    s.git.git(&["checkout", "-q", "-b", "prod"]);
    let prod = s.git.commit(&[("desired-state.yaml", &manifest(&s.run, &s.repo, "2"))], "prod on 2");
    push(&s.git, &["prod"]);
    let before = s.file();
    let token_file = s.run.write_file("git-token", "wrong-token");
    let token = token_file.to_str().expect("utf-8");

    let (mut d, addr) = s.start(&["--git-ref", "prod", "--git-token-file", token]);
    wait_for("the refusal named", Duration::from_secs(30), || {
        git_status(&addr)["last_error"].as_str().is_some_and(|e| !e.is_empty())
    });
    let error = git_status(&addr)["last_error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains("refused the token (HTTP 401)") && error.contains("--git-token-file"), "{error}");
    assert!(!error.contains("wrong-token") && !d.output().contains("wrong-token"));
    assert_eq!(s.file(), before, "nothing written");
    assert_eq!(s.image(), format!("{}:1", s.repo), "nothing changed");
    assert_eq!(
        metric(&addr, "container_upgrader_git_looks_total{result=\"failed\"}").map(|n| n >= 1.0),
        Some(true)
    );

    // The right token (the file is re-read): the branch, not main, applies.
    std::fs::write(Path::new(token), "right-token\n").expect("token");
    refresh(&addr);
    wait_for("web on :2 from prod", Duration::from_secs(90), || s.image() == format!("{}:2", s.repo));
    let git = git_status(&addr);
    assert_eq!((git["commit"].as_str(), git["reference"].as_str()), (Some(prod.as_str()), Some("prod")));
    assert!(git["last_error"].is_null(), "{git:#}");

    // The branch deleted: said, and the last manifest stays.
    push(&s.git, &["--delete", "prod"]);
    refresh(&addr);
    wait_for("the deleted ref named", Duration::from_secs(30), || {
        git_status(&addr)["last_error"].as_str().is_some_and(|e| e.contains("no branch or tag `prod`"))
    });
    assert_eq!(s.file(), manifest(&s.run, &s.repo, "2"));
    assert_eq!(s.image(), format!("{}:2", s.repo));

    // Unreachable: the server's address refuses connections.
    let dead = format!("http://{}/repo.git", free_addr());
    let mut cmd = s.run.cli_command();
    let other_state = s.run.write_file("state2/.keep", "").parent().expect("dir").display().to_string();
    cmd.args(["run", "-f", s.manifest.to_str().expect("utf-8"), "--state-dir", &other_state, "--git", &dead])
        .args(["--listen", &free_addr()]);
    d.kill();
    let mut unreachable = Spawned::start(cmd, "run --git (unreachable)");
    wait_for("the unreachable repository named", Duration::from_secs(30), || {
        unreachable.output().contains("looking at the Git repository failed")
    });
    assert_eq!(s.file(), manifest(&s.run, &s.repo, "2"), "nothing written");
    unreachable.kill();
}

/// A new SSH key pair of `kind` (`ed25519`, `ecdsa`, `rsa`) in `dir`;
/// returns the private key's path and the public key's line.
fn ssh_key(dir: &Path, name: &str, kind: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-N", "", "-C", name, "-f"])
        .arg(&path)
        .output()
        .expect("ssh-keygen");
    assert!(out.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
    let public = std::fs::read_to_string(path.with_extension("pub")).expect("public key");
    (path, public.trim().to_string())
}

#[test]
fn with_allowed_signers_only_commits_signed_by_a_listed_key_apply() {
    let s = setup("git_source_signers", None);
    let keys = s.run.empty_dir("keys");
    let (alice, alice_pub) = ssh_key(&keys, "alice", "ed25519");
    let (bob, bob_pub) = ssh_key(&keys, "bob", "ecdsa");
    let (carol, carol_pub) = ssh_key(&keys, "carol", "rsa");
    let (mallory, _) = ssh_key(&keys, "mallory", "ed25519");
    let signers = s.run.write_file(
        "allowed_signers",
        format!(
            "# who may move production\nalice@example.test {alice_pub}\nbob@example.test namespaces=\"git\" {bob_pub}\ncarol@example.test {carol_pub}\n"
        ),
    );
    let path = "desired-state.yaml";
    let on = |tag: &str| manifest(&s.run, &s.repo, tag);
    s.git.commit_signed(&[(path, &on("2"))], "alice: web to 2", &alice);
    push(&s.git, &["main"]);
    let (mut d, addr) = s.start(&["--git-verify-ssh-signers", signers.to_str().expect("utf-8")]);
    wait_for("web on :2, signed by alice", Duration::from_secs(90), || s.image() == format!("{}:2", s.repo));
    assert_eq!(git_status(&addr)["signer"], "alice@example.test", "{}", d.output());

    // Unsigned, or signed by a key the file does not list: refused, named.
    for (signer, says) in [(None, "it is not signed"), (Some(&mallory), "a key")] {
        let commit = match signer {
            None => s.git.commit(&[(path, &on("1"))], "unsigned"),
            Some(key) => s.git.commit_signed(&[(path, &on("1"))], "mallory", key),
        };
        push(&s.git, &["main"]);
        refresh(&addr);
        wait_for("the commit refused", Duration::from_secs(30), || {
            git_status(&addr)["refused"]["commit"] == commit.as_str()
        });
        let reason = git_status(&addr)["refused"]["reason"].as_str().unwrap_or_default().to_string();
        assert!(reason.contains(says), "{says}: {reason}");
        assert_eq!(s.file(), on("2"), "nothing written");
        assert_eq!(s.image(), format!("{}:2", s.repo));
    }

    // ECDSA and RSA keys sign too.
    let by_bob = s.git.commit_signed(&[(path, &on("1"))], "bob: web back to 1", &bob);
    push(&s.git, &["main"]);
    refresh(&addr);
    wait_for("web on :1, signed by bob", Duration::from_secs(90), || s.image() == format!("{}:1", s.repo));
    let git = git_status(&addr);
    assert_eq!(
        (git["commit"].as_str(), git["signer"].as_str()),
        (Some(by_bob.as_str()), Some("bob@example.test"))
    );
    s.git.commit_signed(&[(path, &on("2"))], "carol: web to 2", &carol);
    push(&s.git, &["main"]);
    refresh(&addr);
    wait_for("web on :2, signed by carol", Duration::from_secs(90), || s.image() == format!("{}:2", s.repo));
    assert_eq!(git_status(&addr)["signer"], "carol@example.test");

    // Carol's signature on another tree (bob's, pinning :1): forged.
    let raw = s.git.git(&["cat-file", "commit", "HEAD"]);
    let tree_line = raw.lines().next().unwrap_or_default().to_string();
    let bob_tree = s.git.git(&["rev-parse", &format!("{by_bob}^{{tree}}")]);
    let forged_file = s.run.write_file(
        "forged-commit",
        format!("{}\n", raw.replacen(&tree_line, &format!("tree {bob_tree}"), 1)),
    );
    let forged = s.git.git(&["hash-object", "-t", "commit", "-w", forged_file.to_str().expect("utf-8")]);
    s.git.git(&["update-ref", "refs/heads/main", &forged]);
    push(&s.git, &["--force", "main"]);
    refresh(&addr);
    wait_for("the forged commit refused", Duration::from_secs(30), || {
        git_status(&addr)["refused"]["commit"] == forged.as_str()
    });
    let reason = git_status(&addr)["refused"]["reason"].as_str().unwrap_or_default().to_string();
    assert!(reason.contains("carol@example.test") && reason.contains("does not verify"), "{reason}");
    assert_eq!(s.file(), on("2"), "nothing written");
    assert_eq!(s.image(), format!("{}:2", s.repo));
    d.kill();
}

#[test]
fn bad_git_flags_are_refused_before_anything_runs() {
    let run = TestRun::new("git_source_flags");
    let manifest = run.write_file("desired-state.yaml", "version: 1\ntargets: []\n");
    let state = run.empty_dir("state");
    let m = manifest.to_str().expect("utf-8");
    let st = state.to_str().expect("utf-8");
    let empty = run.write_file("allowed_signers", "# nobody yet\n").display().to_string();
    for (args, says) in [
        (vec!["--git", "https://me:pw@git.example/r.git"], "--git-token-file"),
        (vec!["--git", "ssh://git@git.example/r.git"], "needs --git-ssh-key FILE"),
        (vec!["--git", "https://git.example/r.git", "--git-ssh-key", &empty], "go with an SSH URL"),
        (vec!["--git", "https://git.example/r.git", "--git-path", "../etc/passwd"], "relative path"),
        (vec!["--git-ref", "main"], "--git"),
        (vec!["--git", "https://git.example/r.git", "--git-verify-ssh-signers", &empty], "lists no key"),
    ] {
        let mut all = vec!["run", "-f", m, "--state-dir", st];
        all.extend(args.iter().copied());
        let out = run.cli(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!stderr.contains(":pw@"), "{stderr}");
    }
    // Without its Git helper the controller says where it looked.
    let args = ["run", "-f", m, "--state-dir", st, "--git", "https://git.example/r.git"];
    let out =
        run.cli_with_env(&args, &[("CONTAINER_UPGRADER_GIT_HELPER", "/nonexistent/container-upgrader-git")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("needs the Git helper /nonexistent/container-upgrader-git"), "{stderr}");
}

/// Over SSH (the distribution's `sshd` with its own host key): a host key
/// that is not the one in --git-known-hosts is refused with ssh's words
/// and nothing changes; with the right one the commit moves the container.
#[test]
fn a_repository_over_ssh_is_followed_with_a_key_and_a_strict_known_hosts_file() {
    let s = setup("git_source_ssh", None);
    let sshd = common::Sshd::start(&s.run.empty_dir("sshd"));
    let commit = s.git.commit(&[("desired-state.yaml", &manifest(&s.run, &s.repo, "2"))], "web to 2");
    push(&s.git, &["main"]);
    let url = sshd.url(&s.git.bare());
    let key = sshd.client_key.to_str().expect("utf-8");
    let start_at = |known: &Path, extra: &[&str]| {
        let addr = free_addr();
        let token = s.run.write_file("api-token", API_TOKEN);
        let mut cmd = s.run.cli_command();
        cmd.args(["run", "-f", s.manifest.to_str().expect("utf-8"), "--state-dir", &s.state])
            .args(["--listen", &addr, "--token-file", token.to_str().expect("utf-8")])
            .args(["--git", &url, "--git-interval", "1h", "--git-ssh-key", key])
            .args(["--git-known-hosts", known.to_str().expect("utf-8")])
            .args(extra);
        (Spawned::start(cmd, "run --git over ssh"), addr)
    };
    let start = |known: &Path| start_at(known, &[]);

    // Another key for the address: refused, said, nothing written.
    let (mut d, addr) = start(&sshd.wrong_known_hosts);
    wait_for("the host key refused", Duration::from_secs(60), || {
        git_status(&addr)["last_error"].as_str().is_some_and(|e| e.contains("Host key verification failed"))
    });
    assert_eq!(s.file(), manifest(&s.run, &s.repo, "1"), "nothing written:\n{}", d.output());
    assert_eq!(s.image(), format!("{}:1", s.repo));
    d.kill();

    // The right one: the commit is applied.
    let (mut d, addr) = start(&sshd.known_hosts);
    wait_for("web on :2 from Git over SSH", Duration::from_secs(90), || s.image() == format!("{}:2", s.repo));
    // Committed, not mid-gate: a kill now must not leave a swap to undo.
    wait_for("the upgrade committed", Duration::from_secs(60), || {
        metric(&addr, "container_upgrader_upgrades_total{outcome=\"committed\"}").is_some_and(|n| n >= 1.0)
    });
    let git = git_status(&addr);
    assert_eq!(git["commit"], commit.as_str(), "{git:#}\n{}\n{}", d.output(), sshd.output());
    // The user name is dropped like any credential-like part.
    let shown = git["url"].as_str().unwrap_or_default();
    assert!(shown.starts_with("ssh://127.0.0.1:") && shown.ends_with("/repo.git"), "{git:#}");
    d.kill();

    // An annotated tag is followed to the commit it names.
    let tagged = s.git.commit(&[("desired-state.yaml", &manifest(&s.run, &s.repo, "1"))], "back to 1");
    s.git.git(&["tag", "-a", "v1", "-m", "release v1"]);
    push(&s.git, &["main", "v1"]);
    let (mut d, addr) = start_at(&sshd.known_hosts, &["--git-ref", "v1"]);
    wait_for("web back on :1 from the tag", Duration::from_secs(90), || s.image() == format!("{}:1", s.repo));
    let git = git_status(&addr);
    assert_eq!(
        (git["commit"].as_str(), git["reference"].as_str()),
        (Some(tagged.as_str()), Some("v1")),
        "{git:#}\n{}",
        d.output()
    );
    d.kill();

    // An SSH URL without the files is refused at start, saying what it needs.
    let args = ["run", "-f", s.manifest.to_str().expect("utf-8"), "--state-dir", &s.state, "--git", &url];
    let out = s.run.cli(&args);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("--git-ssh-key") && said.contains("--git-known-hosts"), "{said}");
}
