//! A fuzz harness for the manifest parser that runs on stable Rust (no
//! `cargo fuzz`, which needs nightly): arbitrary bytes, and structured
//! mutations of `desired-state.example.yaml` with valid-but-hostile values
//! (huge names, deep nesting, alias fans, every field given a wrong type).
//!
//! ```sh
//! cargo run --release --example fuzz_manifest -- --inputs 1000000 --seed 1
//! ```
//!
//! Prints the inputs tried, the refusals, the panics, the hangs (an input
//! taking over 2 s), the problems missing a position or a field path, and
//! those in a library's words rather than ours (serde's `invalid type:`,
//! the YAML parser's `did not find expected`, …), with the most common of
//! those; exits 1 on any of them (a watchdog aborts the run if one input
//! takes 30 s, naming the seed and index). CI runs it short, on a seed taken from the commit.

use std::collections::HashMap;
use std::panic;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use container_upgrader::manifest::Manifest;

const EXAMPLE: &str = include_str!("../desired-state.example.yaml");
/// The Swarm example, so mutations also start from service targets.
const SWARM_EXAMPLE: &str = include_str!("swarm/desired-state.yaml");
const HANG: Duration = Duration::from_secs(2);
const WATCHDOG: Duration = Duration::from_secs(30);

/// Phrases only serde, serde_yaml or yaml-rust2 write: a message with one
/// was not put in the manifest's terms.
const LIBRARY_WORDS: &[&str] = &[
    "untagged enum",
    "expected u64",
    "expected u16",
    "expected u8",
    "expected i64",
    "invalid type:",
    "invalid value:",
    "did not find expected",
    "unknown variant",
    "missing field",
    "expected struct",
    "repetition limit",
    "recursion limit",
    "while parsing",
    "while scanning",
    "found unexpected",
    "mapping values are not allowed",
];

/// xorshift64*: reproducible from the seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// Values that are valid YAML but wrong, hostile or at the edges.
fn hostile(rng: &mut Rng) -> String {
    const FIXED: &[&str] = &[
        "-0",
        "0",
        "-1",
        "1e400",
        "0x10",
        "5M",
        "1ns",
        "30",
        "1h30",
        "8d",
        "~",
        "null",
        "[]",
        "{}",
        "[[]]",
        "true",
        "yes",
        "\"\"",
        "''",
        "!!binary aGVsbG8=",
        "!http {port: 1}",
        "{http: {port: -0}}",
        "{http: {port: 70000}}",
        "{tcp: {port: \"80\"}}",
        "{http: {port: 1, status: 99999}}",
        "running",
        "auto",
        "always",
        "stop-first",
        "&a x",
        "*a",
        "*missing",
        "? complex",
        "\"\\u0000\"",
        "'multi\n line'",
        "UPPER/Case:1",
        "app@sha256:00",
        "registry.local:5000/*",
        "^1.4",
        ">=1, <",
        "v1",
        "..",
        "a=b=c",
        "key",
        "=value",
        "http://user:pw@host/x?token=t",
        "ftp://x",
        "|\n  block",
        ">\n  folded",
        "{label: x}",
        "{image: a, semver: '^1'}",
        "[1, 2, 3]",
        "{a: 1, a: 2}",
        ".inf",
        ".nan",
        "2024-01-01",
        "0o17",
        "+1",
        "1_000",
        "\t",
        "#comment",
    ];
    match rng.below(8) {
        0 => "a".repeat(1 + rng.below(80_000)),
        1 => {
            let depth = 1 + rng.below(200);
            format!("{}x{}", "[".repeat(depth), "]".repeat(depth))
        }
        2 => {
            let depth = 1 + rng.below(200);
            format!("{}x{}", "{a: ".repeat(depth), "}".repeat(depth))
        }
        3 => format!("app:{}", "9".repeat(1 + rng.below(300))),
        4 => format!("\"{}\"", "\\u00e9".repeat(1 + rng.below(1000))),
        _ => rng.pick(FIXED).to_string(),
    }
}

/// One structured mutation of `text`, applied 1–4 times.
fn mutate(rng: &mut Rng, text: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for _ in 0..1 + rng.below(4) {
        if lines.is_empty() {
            lines.push(String::new());
        }
        let i = rng.below(lines.len());
        match rng.below(9) {
            // A value replaced by a hostile one.
            0..=2 => {
                if let Some((key, _)) = lines[i].split_once(':') {
                    lines[i] = format!("{key}: {}", hostile(rng));
                } else {
                    lines[i] = format!("{}{}", lines[i], hostile(rng));
                }
            }
            3 => {
                lines.remove(i);
            }
            4 => {
                let l = lines[i].clone();
                lines.insert(i, l);
            }
            5 => {
                let indent = " ".repeat(rng.below(12));
                let key = rng.pick(&[
                    "version",
                    "defaults",
                    "policy",
                    "targets",
                    "report",
                    "container",
                    "selector",
                    "image",
                    "track",
                    "pull",
                    "order",
                    "rollback",
                    "cleanup",
                    "health",
                    "probe",
                    "timeout",
                    "stable",
                    "drift_interval",
                    "allowed_images",
                    "webhook",
                    "label",
                    "semver",
                    "prerelease",
                    "unknown",
                    "- container",
                    "- image",
                    "push_may_change_targets",
                    "service",
                    "service_selector",
                    "- service",
                    "update",
                    "parallelism",
                    "delay",
                    "max_failure_ratio",
                ]);
                lines.insert(i, format!("{indent}{key}: {}", hostile(rng)));
            }
            6 => {
                // Re-indent a line.
                let trimmed = lines[i].trim_start().to_string();
                lines[i] = format!("{}{trimmed}", " ".repeat(rng.below(12)));
            }
            7 => {
                // Flip a byte (kept as text: the parser takes a &str).
                let mut bytes = lines[i].clone().into_bytes();
                if !bytes.is_empty() {
                    let j = rng.below(bytes.len());
                    bytes[j] = (rng.next() % 128) as u8;
                }
                lines[i] = String::from_utf8_lossy(&bytes).into_owned();
            }
            _ => {
                // Alias fan-out: a billion-laughs attempt.
                let n = 2 + rng.below(20);
                let mut bomb = String::from("x0: &a0 [lol]\n");
                for k in 1..n {
                    let prev = format!("*a{}", k - 1);
                    bomb.push_str(&format!("x{k}: &a{k} [{}]\n", vec![prev; 9].join(", ")));
                }
                lines.insert(i, bomb);
            }
        }
    }
    lines.join("\n") + "\n"
}

fn arbitrary(rng: &mut Rng) -> String {
    let len = rng.below(512);
    let bytes: Vec<u8> = (0..len).map(|_| (rng.next() >> 24) as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[derive(Default)]
struct Tally {
    tried: u64,
    accepted: u64,
    refused: u64,
    panics: u64,
    hangs: u64,
    no_field: u64,
    no_position: u64,
    library_words: u64,
    slowest: Duration,
    unfielded: HashMap<String, u64>,
}

fn main() {
    let mut inputs: u64 = 100_000;
    let mut seed: u64 = 1;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let value = args.next().and_then(|v| v.parse().ok());
        match (a.as_str(), value) {
            ("--inputs", Some(v)) => inputs = v,
            ("--seed", Some(v)) => seed = v.max(1),
            _ => {
                eprintln!("usage: fuzz_manifest [--inputs N] [--seed S]");
                std::process::exit(2);
            }
        }
    }
    // Panics are counted, not printed one by one.
    panic::set_hook(Box::new(|_| {}));
    let current = Arc::new(AtomicU64::new(0));
    let started_at = Arc::new(AtomicU64::new(0));
    let epoch = Instant::now();
    {
        let (current, started_at) = (current.clone(), started_at.clone());
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_secs(1));
            let since = epoch.elapsed().as_millis() as u64 - started_at.load(Ordering::Relaxed);
            if since > WATCHDOG.as_millis() as u64 {
                eprintln!(
                    "HANG: input {} of seed {seed} ran for over {}s",
                    current.load(Ordering::Relaxed),
                    WATCHDOG.as_secs()
                );
                std::process::exit(1);
            }
        });
    }

    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut t = Tally::default();
    let run_started = Instant::now();
    for i in 0..inputs {
        let text = match i % 4 {
            0 => arbitrary(&mut rng),
            1 => mutate(&mut rng, SWARM_EXAMPLE),
            _ => mutate(&mut rng, EXAMPLE),
        };
        current.store(i, Ordering::Relaxed);
        started_at.store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        let began = Instant::now();
        let result = panic::catch_unwind(|| Manifest::parse("fuzz.yaml", &text));
        let took = began.elapsed();
        t.tried += 1;
        t.slowest = t.slowest.max(took);
        if took > HANG {
            t.hangs += 1;
        }
        match result {
            Err(_) => {
                t.panics += 1;
                eprintln!(
                    "PANIC on input {i} (seed {seed}): {:?}",
                    text.chars().take(300).collect::<String>()
                );
            }
            Ok(Ok(_)) => t.accepted += 1,
            Ok(Err(e)) => {
                t.refused += 1;
                for p in &e.problems {
                    if p.pos.line == 0 || p.pos.column == 0 {
                        t.no_position += 1;
                    }
                    // Our own messages may quote a semver parser's
                    // explanation in parentheses; that is not the refusal.
                    let ours = p.message.split(" (").next().unwrap_or(&p.message);
                    let foreign = LIBRARY_WORDS.iter().any(|w| ours.contains(w));
                    if foreign {
                        t.library_words += 1;
                    }
                    if p.path.is_empty() || foreign {
                        if p.path.is_empty() {
                            t.no_field += 1;
                        }
                        // Group by the message's shape: digits and quoted values out.
                        let shape: String = p
                            .message
                            .split('`')
                            .enumerate()
                            .map(|(k, part)| if k % 2 == 1 { "`…`" } else { part })
                            .collect::<String>()
                            .chars()
                            .map(|c| if c.is_ascii_digit() { '#' } else { c })
                            .take(100)
                            .collect();
                        *t.unfielded.entry(shape).or_default() += 1;
                    }
                }
            }
        }
    }
    let elapsed = run_started.elapsed();
    println!("inputs tried:            {}", t.tried);
    println!("accepted:                {}", t.accepted);
    println!("refused:                 {}", t.refused);
    println!("panics:                  {}", t.panics);
    println!("hangs (> {}s):            {}", HANG.as_secs(), t.hangs);
    println!("problems without field:  {}", t.no_field);
    println!("problems without line:   {}", t.no_position);
    println!("in a library's words:    {}", t.library_words);
    println!("slowest input:           {:?}", t.slowest);
    println!("elapsed:                 {elapsed:.1?} (seed {seed})");
    let mut shapes: Vec<(String, u64)> = t.unfielded.into_iter().collect();
    shapes.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    for (shape, n) in shapes.iter().take(15) {
        println!("  {n:>8}  {shape}");
    }
    if t.panics > 0 || t.hangs > 0 || t.no_field > 0 || t.no_position > 0 || t.library_words > 0 {
        std::process::exit(1);
    }
}
