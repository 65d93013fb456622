//! Rewards under the think/answer template: the answer is the last complete
//! `<answer>…</answer>` block after the reasoning, or else a final `\boxed{}` after it;
//! nothing else. Free-form responses (no tags) keep the lenient extraction.

use aha_reward::tasks::{arithmetic, gsm8k, Countdown};
use aha_reward::{extract_answer, ExtractConfig, Reward};

fn accuracy(response: &str, gold: &str) -> f32 {
    Reward::parse("accuracy")
        .unwrap()
        .score(response, Some(gold))
}

/// Every reward-side checker of a numeric answer agrees on `response`.
fn all_checkers(response: &str, gold: &str) -> [bool; 3] {
    [
        arithmetic(response, gold),
        gsm8k(response, &format!("work\n#### {gold}")),
        accuracy(response, gold) == 1.0,
    ]
}

#[test]
fn truncated_completion_has_no_answer() {
    // Cut inside the reasoning: the last number is 18, but nothing was answered.
    let r = "<think>She sells 16 - 3 - 4 = 9 eggs, 9 * 2 = 18";
    assert_eq!(all_checkers(r, "18"), [false; 3]);
    // Cut inside the answer block.
    let r = "<think>9 * 2 = 18</think> <answer>18";
    assert_eq!(all_checkers(r, "18"), [false; 3]);
    let cd = Countdown {
        numbers: vec![25, 5, 3, 4],
        target: 64,
    };
    assert!(!cd.check_response("<think>try (25-5)*3+4"));
    assert!(!cd.check_response("<think>try</think><answer>(25-5)*3+4"));
    assert!(cd.check_response("<think>try</think><answer>(25-5)*3+4</answer>"));
}

#[test]
fn no_answer_block_means_no_answer() {
    for r in [
        "<think>9 * 2 = 18</think> so 18",
        "<think>9 * 2 = 18</think> The answer is 18.",
        "<think>9 * 2 = 18</think>\n#### 18",
        "<think>the answer is 18</think>",
    ] {
        assert_eq!(all_checkers(r, "18"), [false; 3], "{r}");
    }
    let cd = Countdown {
        numbers: vec![1, 2],
        target: 3,
    };
    // Without the template the last line is the expression; with it, only the answer block.
    assert!(cd.check_response("1 + 2"));
    assert!(!cd.check_response("<think>1 + 2</think>\n1 + 2"));
}

#[test]
fn last_answer_block_wins() {
    let r = "<think>first 17</think><answer>17</answer> wait, no <answer>18</answer>";
    assert_eq!(all_checkers(r, "18"), [true; 3]);
    assert_eq!(all_checkers(r, "17"), [false; 3]);
    // An answer block inside the reasoning is reasoning.
    let r = "<think>maybe <answer>18</answer></think> <answer>17</answer>";
    assert_eq!(all_checkers(r, "18"), [false; 3]);
    // A complete block followed by one that never closes: the final answer was cut.
    let r = "<think>x</think><answer>18</answer> hmm <answer>1";
    assert_eq!(all_checkers(r, "18"), [false; 3]);
}

#[test]
fn final_box_after_the_reasoning_counts() {
    let r = "<think>9 * 2 = 18</think>\nSo the answer is $\\boxed{18}$.";
    assert_eq!(all_checkers(r, "18"), [true; 3]);
    // Distilled models: the prompt opens <think>, the completion only closes it.
    let r = "9 * 2 = 18, maybe \\boxed{17}\n</think>\n\\boxed{18}";
    assert_eq!(all_checkers(r, "18"), [true; 3]);
    assert_eq!(all_checkers(r, "17"), [false; 3]);
    // A box inside the reasoning only is not an answer.
    let r = "<think>\\boxed{18}</think> done";
    assert_eq!(all_checkers(r, "18"), [false; 3]);
}

#[test]
fn free_form_responses_stay_lenient() {
    assert_eq!(all_checkers("so she makes $18.\n#### 18", "18"), [true; 3]);
    assert_eq!(all_checkers("The answer is 18.", "18"), [true; 3]);
    assert_eq!(all_checkers("we get 12 then 18 apples", "18"), [true; 3]);
    // The lenient default (evaluation, the dev set) is unchanged.
    let r = "<think>The answer is 9.</think>";
    assert!(aha_reward::verify("9", r).correct);
    assert!(extract_answer(r, &ExtractConfig::default()).is_some());
    assert_eq!(extract_answer(r, &ExtractConfig::reward()), None);
}
