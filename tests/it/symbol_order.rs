//! The committed link-time function order (build.rs, issue 22) is one the linker can read:
//! symbol names only, one a line, each once, with our own crate's functions in it.

use std::collections::HashSet;

#[test]
fn the_committed_symbol_order_is_a_list_of_distinct_mangled_names() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/profile-data/symbol-order.txt");
    let text = std::fs::read_to_string(path).expect("profile-data/symbol-order.txt is committed");
    let names: Vec<&str> = text.lines().collect();
    assert!(
        names.len() >= 1000,
        "only {} names: regenerate with scripts/symbol-order.sh",
        names.len()
    );
    let mut seen = HashSet::new();
    for name in &names {
        // Rust's mangled names, and C's (mimalloc, main): no space, comma or control.
        assert!(
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b','),
            "{name:?} is not a symbol name the linker reads"
        );
        assert!(seen.insert(*name), "{name:?} is listed twice");
    }
    let ours = names
        .iter()
        .filter(|n| n.starts_with("_ZN7postern"))
        .count();
    assert!(
        ours >= 100,
        "only {ours} of postern's own functions: was it profiled from postern?"
    );
}
