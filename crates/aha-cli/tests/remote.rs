//! Rollouts on two `aha serve` workers over loopback: `aha eval --url` writes the same samples
//! as in-process evaluation; GRPO gives the same metrics as with in-process rollouts for the
//! same seed; after a sync the servers hold the trainer's weights (full weights and a LoRA
//! adapter); a dead server is skipped.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// An `aha serve` process on a free loopback port, killed on drop.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(model: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_aha"))
            .args([
                "--threads",
                "1",
                "serve",
                "--port",
                "0",
                "--max-batch",
                "16",
            ])
            .args(["--logprobs-mode", "processed_logprobs", "--model"])
            .arg(model)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start aha serve");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let url = loop {
            let line = lines
                .next()
                .expect("aha serve exited before listening")
                .unwrap();
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.trim().to_string();
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server { child, url }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn aha(args: &[&str]) -> String {
    crate::common::stderr(&crate::common::ok(args))
}

fn metrics(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Every field but wall-clock times and remote-only fields equal; floats to `rel`.
fn same_metrics(a: &Value, b: &Value, rel: f64) {
    let skip = |k: &str| {
        k.starts_with("time_")
            || k.ends_with("tokens_per_s")
            || k == "logprob_mismatch"
            || k == "staleness_max"
    };
    let (a, b) = (a.as_object().unwrap(), b.as_object().unwrap());
    for (k, va) in a {
        if skip(k) {
            continue;
        }
        let vb = b.get(k).unwrap_or_else(|| panic!("{k} missing"));
        match (va.as_f64(), vb.as_f64()) {
            (Some(x), Some(y)) => assert!(
                (x - y).abs() <= rel * x.abs().max(y.abs()).max(1e-3),
                "{k}: {x} vs {y}"
            ),
            _ => assert_eq!(va, vb, "{k}"),
        }
    }
}

/// The server's greedy completion of `prompt` and its per-token log-probs.
fn greedy(url: &str, prompt: &[u32]) -> (Vec<u32>, Vec<f64>, Value) {
    let v: Value = ureq::post(&format!("{url}/v1/completions"))
        .send_json(
            json!({"prompt": prompt, "max_tokens": 8, "temperature": 0.0,
                          "logprobs": 0, "return_token_ids": true, "ignore_eos": true}),
        )
        .unwrap()
        .into_json()
        .unwrap();
    let c = &v["choices"][0];
    let ids = c["token_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect();
    let lps = c["logprobs"]["token_logprobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    (ids, lps, v["weight_version"].clone())
}

/// `aha logprobs` of `prompt ++ completion` under the trainer's model: the completion's part.
fn trainer_logprobs(
    model: &Path,
    adapter: Option<&Path>,
    prompt: &[u32],
    completion: &[u32],
) -> Vec<f64> {
    let ids: Vec<String> = prompt
        .iter()
        .chain(completion)
        .map(|x| x.to_string())
        .collect();
    let ids = ids.join(",");
    let mut args = vec!["logprobs", "--json", "--ids", &ids, "--model"];
    args.push(model.to_str().unwrap());
    if let Some(a) = adapter {
        args.extend(["--adapter", a.to_str().unwrap()]);
    }
    let out: Value =
        serde_json::from_str(&crate::common::stdout(&crate::common::ok(&args))).unwrap();
    let lp = out["logprobs"].as_array().unwrap();
    lp[prompt.len()..]
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn probe_matches(url: &str, model: &Path, adapter: Option<&Path>, version: &str) {
    let prompt = [3u32, 17, 5, 9];
    let (ids, lps, v) = greedy(url, &prompt);
    assert_eq!(v, json!(version), "the server reports the synced version");
    assert_eq!(ids.len(), lps.len());
    let want = trainer_logprobs(model, adapter, &prompt, &ids);
    for (g, w) in lps.iter().zip(&want) {
        assert!(
            (g - w).abs() <= 1e-4,
            "{url}: server {ids:?} {lps:?} vs trainer ({}) {want:?}",
            model.display()
        );
    }
}

#[test]
fn grpo_on_two_servers_matches_local_rollouts_and_syncs_weights() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let s = |n: &str| p(n).to_str().unwrap().to_string();
    aha(&[
        "--threads",
        "2",
        "pretrain",
        "--out",
        &s("base"),
        "--eval-n",
        "0",
        "--task",
        "arithmetic:1",
        "--steps",
        "30",
        "--batch-size",
        "8",
        "--hidden",
        "32",
        "--layers",
        "1",
    ]);
    let rows: String = (0..8)
        .map(|i| {
            format!(
                "{{\"question\": \"{i} + {} =\", \"answer\": \"{}\"}}\n",
                i + 1,
                2 * i + 1
            )
        })
        .collect();
    std::fs::write(p("data.jsonl"), rows).unwrap();
    let (base, data) = (s("base"), s("data.jsonl"));
    let grpo = |out: &str, extra: &[&str]| {
        let mut args = vec![
            "--threads",
            "2",
            "grpo",
            "--model",
            &base,
            "--dataset",
            &data,
            "--template",
            "none",
            "--reward",
            "repetition,tag_count",
            "--group-size",
            "4",
            "--batch-prompts",
            "2",
            "--steps",
            "3",
            "--max-tokens",
            "10",
            "--lr",
            "0.02",
            "--beta",
            "0.01",
            "--samples-every",
            "0",
            "--seed",
            "5",
            "--out",
            out,
        ];
        args.extend(extra);
        aha(&args)
    };
    grpo(&s("local"), &[]);
    let (a, b) = (Server::start(&p("base")), Server::start(&p("base")));

    // Evaluation on the servers writes the same samples as in-process.
    let eval = |out: &str, extra: &[&str]| {
        let mut args = vec![
            "--threads",
            "2",
            "eval",
            "--model",
            &base,
            "--task",
            "arithmetic:1",
            "--n",
            "6",
            "--samples",
            "3",
            "--max-tokens",
            "10",
            "--batch-size",
            "4",
            "--out",
            out,
        ];
        args.extend(extra);
        crate::common::ok(&args);
        std::fs::read_to_string(Path::new(out).join("samples.jsonl")).unwrap()
    };
    let in_process = eval(&s("eval-local"), &[]);
    let served = eval(&s("eval-remote"), &["--url", &a.url, "--url", &b.url]);
    assert_eq!(in_process.lines().count(), 18);
    assert_eq!(in_process, served);
    grpo(
        &s("remote"),
        &[
            "--rollout-url",
            &a.url,
            "--rollout-url",
            &b.url,
            "--sync-dir",
            &s("sync"),
        ],
    );
    let (local, remote) = (
        metrics(&p("local/metrics.jsonl")),
        metrics(&p("remote/metrics.jsonl")),
    );
    assert_eq!(local.len(), 3);
    assert_eq!(remote.len(), 3);
    assert!(
        local.iter().any(|m| m["grad_norm"].as_f64().unwrap() > 0.0),
        "the run must learn something for the comparison to mean anything"
    );
    for (l, r) in local.iter().zip(&remote) {
        same_metrics(l, r, 1e-3);
        let mismatch = r["logprob_mismatch"]
            .as_f64()
            .expect("servers report log-probs");
        assert!(mismatch < 1e-4, "sampler vs trainer log-probs: {mismatch}");
    }
    // Both servers now hold the final weights, version "3".
    for srv in [&a, &b] {
        probe_matches(&srv.url, &p("remote/final"), None, "3");
    }

    // LoRA, on a fresh server (the others now hold the trained full weights, and an adapter
    // applies to whatever base a server holds): the adapter is synced; one of the two URLs
    // is dead and is skipped.
    drop((a, b));
    let a = Server::start(&p("base"));
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    grpo(
        &s("lora"),
        &[
            "--lora-r",
            "4",
            "--rollout-url",
            &a.url,
            "--rollout-url",
            &dead,
            "--sync-dir",
            &s("sync-lora"),
        ],
    );
    let lora = metrics(&p("lora/metrics.jsonl"));
    assert_eq!(lora.len(), 3);
    probe_matches(&a.url, &p("base"), Some(&p("lora/final")), "3");
}
