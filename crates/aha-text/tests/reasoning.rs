use aha_text::{prompt_opens_reasoning, split_reasoning, ReasoningSplit, StreamingReasoningParser};

fn split(reasoning: &str, content: &str, closed: bool) -> ReasoningSplit {
    ReasoningSplit {
        reasoning: reasoning.into(),
        content: content.into(),
        reasoning_closed: closed,
    }
}

/// (text, starts_in_reasoning, expected)
fn cases() -> Vec<(&'static str, bool, ReasoningSplit)> {
    vec![
        (
            "<think>a b</think>answer",
            false,
            split("a b", "answer", true),
        ),
        (
            "\n <think>\nR\n</think>\n\nC",
            false,
            split("\nR\n", "\n\nC", true),
        ),
        // Pre-filled `<think>\n` in the prompt: no opening tag in the output.
        (
            "R1 thinks</think>\n\n42",
            true,
            split("R1 thinks", "\n\n42", true),
        ),
        // Missing close: everything is reasoning.
        ("<think>still going", false, split("still going", "", false)),
        ("still going", true, split("still going", "", false)),
        // A truncated close tag at the end stays reasoning text.
        ("<think>abc</thi", false, split("abc</thi", "", false)),
        // No tags at all.
        ("plain answer", false, split("", "plain answer", false)),
        ("", false, split("", "", false)),
        ("  ", false, split("", "  ", false)),
        ("<thi", false, split("", "<thi", false)),
        // Not a tag, just looks like one; and a tag not at the start.
        (
            "<thinking>x</thinking>",
            false,
            split("", "<thinking>x</thinking>", false),
        ),
        (
            "ok <think>x</think>",
            false,
            split("", "ok <think>x</think>", false),
        ),
        // Only the first close tag counts; later ones are content.
        (
            "<think>é 思考 😀</think>a</think>b",
            false,
            split("é 思考 😀", "a</think>b", true),
        ),
        ("</think>", true, split("", "", true)),
        ("<think></think>", false, split("", "", true)),
        ("<<think>>", false, split("", "<<think>>", false)),
        ("x<</think>y", true, split("x<", "y", true)),
    ]
}

#[test]
fn batch_split_cases() {
    for (text, pre, want) in cases() {
        assert_eq!(split_reasoning(text, pre), want, "{text:?} pre={pre}");
    }
}

fn stream(pieces: &[&str], pre: bool) -> ReasoningSplit {
    let mut p = StreamingReasoningParser::new(pre);
    let mut out = ReasoningSplit::default();
    for piece in pieces {
        let d = p.push(piece);
        out.reasoning.push_str(&d.reasoning);
        out.content.push_str(&d.content);
    }
    let d = p.finish();
    out.reasoning.push_str(&d.reasoning);
    out.content.push_str(&d.content);
    out.reasoning_closed = p.reasoning_closed();
    out
}

fn boundaries(s: &str) -> Vec<usize> {
    (0..=s.len()).filter(|&i| s.is_char_boundary(i)).collect()
}

#[test]
fn streaming_with_every_single_split() {
    for (text, pre, want) in cases() {
        for &i in &boundaries(text) {
            let got = stream(&[&text[..i], &text[i..]], pre);
            assert_eq!(got, want, "{text:?} split at {i}");
        }
    }
}

#[test]
fn streaming_with_every_pair_of_splits() {
    for (text, pre, want) in cases() {
        let b = boundaries(text);
        for (x, &i) in b.iter().enumerate() {
            for &j in &b[x..] {
                let got = stream(&[&text[..i], &text[i..j], &text[j..]], pre);
                assert_eq!(got, want, "{text:?} split at {i},{j}");
            }
        }
    }
}

#[test]
fn streaming_char_by_char() {
    for (text, pre, want) in cases() {
        let chars: Vec<String> = text.chars().map(String::from).collect();
        let refs: Vec<&str> = chars.iter().map(String::as_str).collect();
        assert_eq!(stream(&refs, pre), want, "{text:?}");
    }
}

#[test]
fn streaming_emits_eagerly_and_holds_back_only_tag_prefixes() {
    let mut p = StreamingReasoningParser::new(false);
    assert!(p.push("  <thi").is_empty()); // could still be <think>
    assert!(p.push("nk>").is_empty());
    assert!(p.in_reasoning());
    assert_eq!(p.push("step 1 <").reasoning, "step 1 "); // '<' may start </think>
    assert_eq!(p.push("b> ").reasoning, "<b> ");
    let d = p.push("done</");
    assert_eq!((d.reasoning.as_str(), d.content.as_str()), ("done", ""));
    let d = p.push("think>\n\nAns");
    assert_eq!((d.reasoning.as_str(), d.content.as_str()), ("", "\n\nAns"));
    assert!(!p.in_reasoning() && p.reasoning_closed());
    assert_eq!(p.push("wer").content, "wer");
    assert!(p.finish().is_empty());
}

#[test]
fn custom_tags_and_prompt_detection() {
    let mut p = StreamingReasoningParser::with_tags(false, "[T]", "[/T]");
    let mut d = p.push("[T]x[/");
    d.reasoning.push_str(&p.push("T]y").reasoning);
    assert_eq!(d.reasoning, "x");
    assert_eq!(p.finish().content, "");
    assert!(p.reasoning_closed());

    assert!(prompt_opens_reasoning(
        "<｜User｜>hi<｜Assistant｜><think>\n"
    ));
    assert!(!prompt_opens_reasoning("<｜User｜>hi<｜Assistant｜>"));
    assert!(StreamingReasoningParser::for_prompt("...<think>\n").in_reasoning());
}
