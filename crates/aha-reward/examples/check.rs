//! `cargo run -p aha-reward --example check -- GOLD PREDICTION`: one verdict.
fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: check GOLD PREDICTION");
        std::process::exit(2);
    }
    let v = aha_reward::verify(&args[1], &args[2]);
    println!("{v:?}");
}
