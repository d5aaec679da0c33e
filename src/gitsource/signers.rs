//! `--git-verify-ssh-signers FILE`: only a commit carrying an SSH signature
//! (`git commit -S` with `gpg.format=ssh`) by a key the file lists is
//! applied. The file is OpenSSH's `allowed_signers` format, as `git` itself
//! reads it (`gpg.ssh.allowedSignersFile`): one key per line,
//!
//! ```text
//! alice@example.com ssh-ed25519 AAAAC3Nza… [comment]
//! ops@example.com namespaces="git",valid-after="20260101" ecdsa-sha2-nistp256 AAAAE2Vj…
//! ```
//!
//! Options understood: `namespaces` (must then include `git`),
//! `valid-after` and `valid-before` (`YYYYMMDD[HHMM[SS]][Z]`, taken as UTC,
//! compared with the commit's committer time). `cert-authority` is refused
//! (certificates are not supported). Keys: Ed25519, ECDSA P-256 and P-384,
//! RSA (with SHA-256 or SHA-512 signatures). OpenSSH's key and signature
//! encodings are parsed by `ssh-key`; the signature is checked with `ring`.

use std::path::Path;

use ssh_key::public::KeyData;
use ssh_key::{Algorithm, EcdsaCurve, HashAlg, SshSig};

/// The namespace git signs commits in.
const NAMESPACE: &str = "git";
/// The largest signers file read.
const MAX_BYTES: u64 = 1024 * 1024;

/// The keys whose commits may apply.
#[derive(Debug, Clone)]
pub struct Signers {
    entries: Vec<Entry>,
    origin: String,
}

#[derive(Debug, Clone)]
struct Entry {
    principals: String,
    key: KeyData,
    namespaces: Option<Vec<String>>,
    valid_after: Option<u64>,
    valid_before: Option<u64>,
}

impl Signers {
    /// Reads and parses `path`.
    pub fn read(path: &Path) -> Result<Self, String> {
        let bytes = crate::private_fs::read_bounded(path, MAX_BYTES)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let text = String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8", path.display()))?;
        Self::parse(&path.display().to_string(), &text)
    }

    /// Parses an `allowed_signers` text; errors name `origin:line:column`.
    pub fn parse(origin: &str, text: &str) -> Result<Self, String> {
        let mut entries = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let at = |column: usize, why: String| format!("{origin}:{}:{}: {why}", index + 1, column + 1);
            let fields = split_fields(line);
            let [(_, principals), rest @ ..] = fields.as_slice() else { continue };
            let (options, key_fields) = match rest {
                [(c, first), tail @ ..] if !is_key_type(first) => (Some((*c, *first)), tail),
                _ => (None, rest),
            };
            let [(type_column, key_type), (key_column, key_b64), ..] = key_fields else {
                let column = line.len();
                return Err(at(
                    column,
                    "expected `principals [options] key-type base64-key [comment]`".into(),
                ));
            };
            let key = ssh_key::PublicKey::from_openssh(&format!("{key_type} {key_b64}"))
                .map_err(|e| at(*key_column, format!("not a `{key_type}` public key: {e}")))?;
            if !supported(key.key_data()) {
                return Err(at(
                    *type_column,
                    format!("key type `{key_type}`: expected ssh-ed25519, ecdsa-sha2-nistp256, ecdsa-sha2-nistp384 or ssh-rsa"),
                ));
            }
            let mut entry = Entry {
                principals: principals.to_string(),
                key: key.key_data().clone(),
                namespaces: None,
                valid_after: None,
                valid_before: None,
            };
            if let Some((column, options)) = options {
                for (offset, option) in split_options(options) {
                    let column = column + offset;
                    let (name, value) = match option.split_once('=') {
                        Some((n, v)) => (n, Some(v.trim_matches('"'))),
                        None => (option, None),
                    };
                    match (name.to_ascii_lowercase().as_str(), value) {
                        ("namespaces", Some(v)) => {
                            entry.namespaces = Some(v.split(',').map(|n| n.trim().to_string()).collect())
                        }
                        ("valid-after", Some(v)) => {
                            entry.valid_after = Some(timestamp(v).map_err(|why| at(column, why))?)
                        }
                        ("valid-before", Some(v)) => {
                            entry.valid_before = Some(timestamp(v).map_err(|why| at(column, why))?)
                        }
                        ("cert-authority", _) => {
                            return Err(at(column, "cert-authority: certificates are not supported; list the keys".into()))
                        }
                        _ => {
                            return Err(at(
                                column,
                                format!("unknown option `{option}`: expected namespaces=\"git\", valid-after=\"YYYYMMDD\" or valid-before=\"YYYYMMDD\""),
                            ))
                        }
                    }
                }
            }
            entries.push(entry);
        }
        if entries.is_empty() {
            return Err(format!("{origin}: lists no key: no commit could ever apply"));
        }
        Ok(Self { entries, origin: origin.to_string() })
    }

    /// Checks the signature `armored` (the commit's `gpgsig` header) over
    /// `payload` (the commit without it), made at `committed` (Unix
    /// seconds). `Ok`: the signer's principals.
    pub fn verify(&self, armored: &[u8], payload: &[u8], committed: u64) -> Result<String, String> {
        if !armored.starts_with(b"-----BEGIN SSH SIGNATURE-----") {
            return Err(
                "it is signed, but not with an SSH key (GPG or X.509): only SSH signatures are checked"
                    .into(),
            );
        }
        let sig = SshSig::from_pem(armored).map_err(|e| format!("its SSH signature is malformed: {e}"))?;
        if sig.namespace() != NAMESPACE || !sig.reserved().is_empty() {
            return Err(format!("its signature is for namespace `{}`, not `{NAMESPACE}`", sig.namespace()));
        }
        let fingerprint = sig.public_key().fingerprint(HashAlg::Sha256);
        let Some(entry) = self.entries.iter().find(|e| &e.key == sig.public_key()) else {
            return Err(format!("it is signed by {fingerprint}, a key {} does not list", self.origin));
        };
        if entry.namespaces.as_ref().is_some_and(|n| !n.iter().any(|n| n == NAMESPACE)) {
            return Err(format!("{} may not sign `{NAMESPACE}` (its namespaces option)", entry.principals));
        }
        if entry.valid_after.is_some_and(|t| committed < t)
            || entry.valid_before.is_some_and(|t| committed > t)
        {
            return Err(format!(
                "{}'s key was not valid at the commit's time (valid-after/valid-before)",
                entry.principals
            ));
        }
        let signed = SshSig::signed_data(NAMESPACE, sig.hash_alg(), payload)
            .map_err(|e| format!("its signature cannot be checked: {e}"))?;
        check(sig.public_key(), &sig.algorithm(), sig.signature_bytes(), &signed).map_err(|why| {
            format!("its signature by {} ({fingerprint}) does not verify: {why}", entry.principals)
        })?;
        Ok(entry.principals.clone())
    }
}

/// Whether a key of this kind can be checked.
fn supported(key: &KeyData) -> bool {
    match key {
        KeyData::Ed25519(_) | KeyData::Rsa(_) => true,
        KeyData::Ecdsa(k) => matches!(k.curve(), EcdsaCurve::NistP256 | EcdsaCurve::NistP384),
        _ => false,
    }
}

/// `signature` by `key` over `signed`, with ring.
fn check(key: &KeyData, algorithm: &Algorithm, signature: &[u8], signed: &[u8]) -> Result<(), String> {
    use ring::signature as rs;
    let bad = |_| "the signature does not match".to_string();
    match (key, algorithm) {
        (KeyData::Ed25519(k), Algorithm::Ed25519) => {
            rs::UnparsedPublicKey::new(&rs::ED25519, k.0.as_slice()).verify(signed, signature).map_err(bad)
        }
        (KeyData::Ecdsa(k), Algorithm::Ecdsa { curve }) if *curve == k.curve() => {
            let (verifier, size): (&dyn rs::VerificationAlgorithm, usize) = match curve {
                EcdsaCurve::NistP256 => (&rs::ECDSA_P256_SHA256_FIXED, 32),
                EcdsaCurve::NistP384 => (&rs::ECDSA_P384_SHA384_FIXED, 48),
                EcdsaCurve::NistP521 => return Err("P-521 is not supported".into()),
            };
            let fixed = ecdsa_fixed(signature, size).ok_or("a malformed ECDSA signature")?;
            rs::UnparsedPublicKey::new(verifier, k.as_sec1_bytes()).verify(signed, &fixed).map_err(bad)
        }
        (KeyData::Rsa(k), Algorithm::Rsa { hash }) => {
            let params = match hash {
                Some(HashAlg::Sha512) => &rs::RSA_PKCS1_2048_8192_SHA512,
                Some(HashAlg::Sha256) => &rs::RSA_PKCS1_2048_8192_SHA256,
                _ => {
                    return Err(
                        "an RSA signature with SHA-1 (ssh-rsa) is refused: sign with rsa-sha2-512".into()
                    )
                }
            };
            let (Some(n), Some(e)) = (k.n.as_positive_bytes(), k.e.as_positive_bytes()) else {
                return Err("a malformed RSA key".into());
            };
            rs::RsaPublicKeyComponents { n, e }.verify(params, signed, signature).map_err(bad)
        }
        _ => Err(format!("a `{}` signature from a `{}` key", algorithm.as_str(), key.algorithm().as_str())),
    }
}

/// OpenSSH's ECDSA signature (`mpint r, mpint s`) as ring's fixed `r ‖ s`.
fn ecdsa_fixed(mut bytes: &[u8], size: usize) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(size * 2);
    for _ in 0..2 {
        let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
        let value = bytes.get(4..4 + len)?;
        bytes = &bytes[4 + len..];
        let value = value.strip_prefix(&[0]).unwrap_or(value);
        if value.len() > size {
            return None;
        }
        out.extend(std::iter::repeat_n(0, size - value.len()));
        out.extend_from_slice(value);
    }
    bytes.is_empty().then_some(out)
}

/// Whether a field is a key type (else it is the options field).
fn is_key_type(field: &str) -> bool {
    field.starts_with("ssh-") || field.starts_with("ecdsa-") || field.starts_with("sk-")
}

/// Whitespace-separated fields with their columns; quotes keep spaces.
fn split_fields(line: &str) -> Vec<(usize, &str)> {
    let mut fields = Vec::new();
    let mut start = None;
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match (start, c) {
            (_, '"') => {
                quoted = !quoted;
                start.get_or_insert(i);
            }
            (Some(s), c) if c.is_whitespace() && !quoted => {
                fields.push((s, &line[s..i]));
                start = None;
            }
            (None, c) if !c.is_whitespace() => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        fields.push((s, &line[s..]));
    }
    fields
}

/// Comma-separated options with their offsets; quotes keep commas.
fn split_options(options: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in options.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push((start, &options[start..i]));
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push((start, &options[start..]));
    out
}

/// `YYYYMMDD[HHMM[SS]][Z]` as Unix seconds (UTC).
fn timestamp(value: &str) -> Result<u64, String> {
    let digits = value.strip_suffix(['Z', 'z']).unwrap_or(value);
    let bad = || format!("`{value}`: expected YYYYMMDD, YYYYMMDDHHMM or YYYYMMDDHHMMSS");
    if !digits.bytes().all(|b| b.is_ascii_digit()) || ![8, 12, 14].contains(&digits.len()) {
        return Err(bad());
    }
    let part = |range: std::ops::Range<usize>| digits.get(range).unwrap_or("00");
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        part(0..4),
        part(4..6),
        part(6..8),
        if digits.len() >= 12 { part(8..10) } else { "00" },
        if digits.len() >= 12 { part(10..12) } else { "00" },
        if digits.len() == 14 { part(12..14) } else { "00" },
    );
    let at = humantime::parse_rfc3339(&rfc3339).map_err(|_| bad())?;
    at.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINkxCVJNvIcVU6IuDt3StUgR957IuQfPUB/v1PdA1qYd";

    #[test]
    fn allowed_signers_lines_with_options_comments_and_blank_lines_are_read() {
        let text = format!(
            "# ops keys\n\nalice@example.com {ED25519} laptop\nops@example.com,bob@example.com namespaces=\"git,file\",valid-after=\"20260101\",valid-before=\"20270101120000Z\" {ED25519}\n"
        );
        let signers = Signers::parse("allowed_signers", &text).expect("valid");
        assert_eq!(signers.entries.len(), 2);
        let second = &signers.entries[1];
        assert_eq!(second.principals, "ops@example.com,bob@example.com");
        assert_eq!(second.namespaces.as_deref(), Some(&["git".to_string(), "file".to_string()][..]));
        assert_eq!(second.valid_after, Some(1_767_225_600));
        assert_eq!(second.valid_before, Some(1_798_804_800));
    }

    #[test]
    fn a_bad_line_is_named_with_its_line_and_column_and_what_is_allowed() {
        let why = |text: &str| Signers::parse("signers", text).expect_err(text);
        assert_eq!(why("# nothing\n"), "signers: lists no key: no commit could ever apply");
        let e = why(&format!("a@x {ED25519}\nb@x ssh-ed25519 AAAAnotakey\n"));
        assert!(e.starts_with("signers:2:17: not a `ssh-ed25519` public key"), "{e}");
        let e = why(&format!("a@x colour=\"red\" {ED25519}\n"));
        assert!(e.starts_with("signers:1:5: unknown option `colour=\"red\"`: expected namespaces"), "{e}");
        let e = why(&format!("a@x valid-after=\"2026\" {ED25519}\n"));
        assert!(e.starts_with("signers:1:5: `2026`: expected YYYYMMDD"), "{e}");
        let e = why(&format!("a@x cert-authority {ED25519}\n"));
        assert!(e.contains("certificates are not supported"), "{e}");
        let e = why("a@x\n");
        assert!(e.contains("expected `principals [options] key-type base64-key [comment]`"), "{e}");
    }

    #[test]
    fn a_non_ssh_or_malformed_signature_is_refused_with_the_reason() {
        let signers = Signers::parse("s", &format!("a@x {ED25519}\n")).expect("valid");
        let gpg = signers.verify(b"-----BEGIN PGP SIGNATURE-----\n...", b"tree x\n", 0).expect_err("gpg");
        assert!(gpg.contains("not with an SSH key"), "{gpg}");
        let broken =
            signers.verify(b"-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n", b"x", 0);
        assert!(broken.expect_err("malformed").contains("malformed"));
    }

    #[test]
    fn ecdsa_signatures_become_fixed_width_r_and_s() {
        // r with a leading zero (its high bit set), s short.
        let mut sig = Vec::new();
        sig.extend_from_slice(&33u32.to_be_bytes());
        sig.push(0);
        sig.extend_from_slice(&[0x80; 32]);
        sig.extend_from_slice(&2u32.to_be_bytes());
        sig.extend_from_slice(&[1, 2]);
        let fixed = ecdsa_fixed(&sig, 32).expect("well-formed");
        assert_eq!(fixed.len(), 64);
        assert_eq!(&fixed[..32], &[0x80; 32]);
        assert_eq!(&fixed[62..], &[1, 2]);
        assert!(ecdsa_fixed(&sig[..10], 32).is_none(), "truncated");
    }
}
