//! Regenerates `docs/counterexamples.md`: every counterexample the checker finds in the
//! protocol's mutants and in the two seed designs, with a shortest trace of each.
//!
//! Run: `cargo run -p banktransfer-model --example counterexamples` (add `--release` to
//! make it quicker). `tests/counterexamples_doc.rs` fails while the file is out of date.

use std::path::Path;

use banktransfer_model::counterexamples::{DOCUMENT_PATH, document};

fn main() -> std::io::Result<()> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DOCUMENT_PATH);
    let text = document();
    std::fs::write(&path, &text)?;
    println!("wrote {} ({} bytes)", path.display(), text.len());
    Ok(())
}
