//! `docs/counterexamples.md` is generated; this test fails while it is out of date.

use std::path::Path;

use banktransfer_model::counterexamples::{DOCUMENT_PATH, REGENERATE, document};

#[test]
fn the_counterexamples_document_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DOCUMENT_PATH);
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    let fresh = document();
    assert!(
        on_disk == fresh,
        "{} is out of date: run `{REGENERATE}`",
        path.display()
    );
    assert!(fresh.contains(REGENERATE));
}
