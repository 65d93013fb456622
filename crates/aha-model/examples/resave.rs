//! Load a model directory and save it elsewhere: `cargo run --release -p aha-model --example resave -- SRC DST`.
//! Used by scripts/ref/check_cli.py to check that transformers loads what aha writes.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, src, dst] = args.as_slice() else {
        return Err("usage: resave SRC_DIR DST_DIR".into());
    };
    let model = aha_model::Model::load(src.as_ref(), &Default::default())?;
    model.save(dst.as_ref())?;
    println!("saved {} parameters to {dst}", model.params().count());
    Ok(())
}
