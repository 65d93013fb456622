//! A minimal HTTP/1.1 client over a TcpStream (no client crate needed) and SSE parsing.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `data:` payloads of an event stream, in order.
    pub fn events(&self) -> Vec<String> {
        self.body
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.trim_start().to_string())
            .collect()
    }
}

pub fn send_raw(addr: SocketAddr, raw: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
    s.write_all(raw).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).expect("read reply");
    parse(&buf)
}

pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    key: Option<&str>,
) -> Reply {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(k) = key {
        req.push_str(&format!("Authorization: Bearer {k}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        ));
    } else {
        req.push_str("\r\n");
    }
    send_raw(addr, req.as_bytes())
}

pub fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path, None, None)
}

/// A metric's value from `/metrics` (the first line of that name without labels).
pub fn metric(a: SocketAddr, name: &str) -> f64 {
    let m = get(a, "/metrics");
    assert_eq!(m.status, 200);
    m.body
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in metrics:\n{}", m.body))
}

pub fn post(addr: SocketAddr, path: &str, body: &Value) -> Reply {
    request(addr, "POST", path, Some(&body.to_string()), None)
}

fn parse(buf: &[u8]) -> Reply {
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = buf[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Reply {
        status,
        headers,
        body: String::from_utf8(body).expect("UTF-8 body"),
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size_line = String::from_utf8_lossy(&b[..eol]);
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
            .expect("chunk size");
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
    out
}

/// Concatenated streamed chat deltas per choice: (content, reasoning, finish_reason).
pub fn chat_stream_text(events: &[String], n: usize) -> Vec<(String, String, Option<String>)> {
    let mut out = vec![(String::new(), String::new(), None); n];
    for e in events {
        if e == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(e).expect("chunk JSON");
        for c in v["choices"].as_array().expect("choices") {
            let i = c["index"].as_u64().expect("index") as usize;
            let d = &c["delta"];
            if let Some(t) = d["content"].as_str() {
                out[i].0.push_str(t);
            }
            if let Some(t) = d["reasoning_content"].as_str() {
                assert_eq!(d["reasoning"].as_str(), Some(t));
                out[i].1.push_str(t);
            }
            if let Some(f) = c["finish_reason"].as_str() {
                out[i].2 = Some(f.to_string());
            }
        }
    }
    out
}

/// The real DeepSeek-R1 tokenizer's asset dir, or None (test skipped) when absent outside CI.
pub fn asset_dir() -> Option<PathBuf> {
    let base = std::env::var_os("AHA_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/assets"));
    let dir = base.join("deepseek-r1-tokenizer");
    if dir.join("tokenizer.json").is_file() && dir.join("tokenizer_config.json").is_file() {
        return Some(dir);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{} is missing and CI is set: run scripts/fetch_assets.sh",
            dir.display()
        );
    }
    eprintln!(
        "skipped: {} not found; run scripts/fetch_assets.sh",
        dir.display()
    );
    None
}

/// A random 1-layer model the size of R1's vocabulary: (model, EOS id, vocabulary size).
pub fn random_r1_model(tok: &aha_text::Tokenizer) -> (aha_model::Model, u32, usize) {
    let eos = tok.eos_token_id().expect("R1 has an EOS");
    let vocab = tok.vocab_size().max(129_280);
    let cfg = aha_train::pretrain::PretrainConfig {
        num_layers: 1,
        ..aha_train::pretrain::PretrainConfig::tiny(aha_train::tasks::Task::default())
    };
    let model = aha_train::pretrain::init_model(&cfg, vocab, eos, 0).unwrap();
    (model, eos, vocab)
}
