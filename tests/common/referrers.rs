//! A registry that offers the OCI 1.1 referrers API, for the signature
//! tests: Debian's `docker-registry` (distribution 2.8) has none, so this
//! loopback proxy answers `GET /v2/<repository>/referrers/<digest>` from
//! what the test put there and passes every other request on to the real
//! registry behind it (manifests, blobs, pulls by the engine).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;

/// The referrers each `(repository path, digest)` has.
type Lists = Arc<Mutex<HashMap<(String, String), Vec<serde_json::Value>>>>;

/// The proxy; it stops when this is dropped.
pub struct ReferrersRegistry {
    addr: SocketAddr,
    lists: Lists,
    _runtime: tokio::runtime::Runtime,
}

impl ReferrersRegistry {
    /// A proxy on 127.0.0.1 in front of the registry at `upstream`
    /// (`127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> ReferrersRegistry {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        container_upgrader::tls::ensure_crypto_provider();
        let lists: Lists = Arc::default();
        let listener =
            runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind the referrers proxy");
        let addr = listener.local_addr().expect("addr");
        let state = (lists.clone(), upstream.to_string(), reqwest::Client::new());
        let app = axum::Router::new().fallback(move |method, uri, headers, body| {
            let state = state.clone();
            async move { answer(&state, method, uri, headers, body).await }
        });
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        ReferrersRegistry { addr, lists, _runtime: runtime }
    }

    /// `127.0.0.1:PORT`: use it as the registry of image references.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Lists the manifest `manifest` (its digest and size) of artifact type
    /// `artifact_type` among the referrers of `digest` in `path`.
    pub fn add(&self, path: &str, digest: &str, manifest: (&str, usize), artifact_type: &str) {
        let entry = serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest.0,
            "size": manifest.1,
            "artifactType": artifact_type,
        });
        let mut lists = self.lists.lock().expect("lists");
        lists.entry((path.to_string(), digest.to_string())).or_default().push(entry);
    }
}

async fn answer(
    (lists, upstream, client): &(Lists, String, reqwest::Client),
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    if let Some((repository, digest)) =
        path.strip_prefix("/v2/").and_then(|rest| rest.rsplit_once("/referrers/"))
    {
        let manifests = lists
            .lock()
            .expect("lists")
            .get(&(repository.to_string(), digest.to_string()))
            .cloned()
            .unwrap_or_default();
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        });
        return Response::builder()
            .header("Content-Type", "application/vnd.oci.image.index.v1+json")
            .body(Body::from(index.to_string()))
            .expect("response");
    }
    let url = format!("http://{upstream}{}", uri.path_and_query().map(|p| p.as_str()).unwrap_or(path));
    let mut request = client.request(method, url).body(body);
    for (name, value) in &headers {
        if name != "host" {
            request = request.header(name, value);
        }
    }
    let Ok(reply) = request.send().await else {
        return Response::builder().status(StatusCode::BAD_GATEWAY).body(Body::empty()).expect("response");
    };
    let mut response = Response::builder().status(reply.status());
    for (name, value) in reply.headers() {
        if name != "transfer-encoding" && name != "connection" {
            response = response.header(name, value);
        }
    }
    let bytes = reply.bytes().await.unwrap_or_default();
    response.body(Body::from(bytes)).expect("response")
}
