//! The admin API's client and the table helpers every `fleet` command
//! prints with.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use container_upgrader::out;

use super::{exit, Failure, Output};

/// An authenticated admin client for one server.
pub(super) struct Client {
    pub(super) http: reqwest::Client,
    pub(super) base: String,
    pub(super) token: String,
}

impl Client {
    pub(super) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, String), Failure> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| {
            Failure::new(
                exit::INTERNAL,
                format!("error: {}: {}", container_upgrader::redact::url(&url), chain(&e)),
            )
        })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            let reason = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
                .unwrap_or(text);
            return Err(Failure::new(
                exit::INVALID,
                format!("error: the server answered {status}: {reason}"),
            ));
        }
        Ok((status, text))
    }

    pub(super) async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Failure> {
        let (_, text) = self.send(method, path, body).await?;
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text)
            .map_err(|e| Failure::new(exit::INTERNAL, format!("error: the server's answer is not JSON: {e}")))
    }
}

/// An error and its causes, `: `-separated (reqwest's own message alone
/// says only "error sending request").
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// One URL path segment, percent-encoded (target names hold spaces, `=`).
pub(super) fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub(super) fn print(value: &Value, output: Output, table: fn(&Value) -> String) -> Result<u8, Failure> {
    match output {
        Output::Json => out!("{}", serde_json::to_string_pretty(value).unwrap_or_default()),
        Output::Table => {
            let t = table(value);
            out!("{}", t.trim_end());
        }
    }
    Ok(exit::OK)
}

/// A JSON value as table text (`-` for none).
pub(super) fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Aligned columns.
pub(super) fn columns(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("  ").trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_names_are_encoded_as_one_path_segment() {
        assert_eq!(segment("label tier=edge"), "label%20tier%3Dedge");
        assert_eq!(segment("web-1.a_b~"), "web-1.a_b~");
        assert_eq!(segment("a/b"), "a%2Fb");
    }
}
