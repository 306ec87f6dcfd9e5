//! The repository's copy of the golden vectors (`protocol/tests/vectors`) must stay
//! byte-identical to the shared originals (`<repo>/../shared/protocol/vectors`) when that
//! checkout is present: a copy that drifted would test against vectors the official client and
//! agent never produced. This is the only code that reads `../shared`.

use std::collections::BTreeMap;
use std::path::PathBuf;

#[test]
fn vectors_match_shared() {
    // The running test's package (cargo sets it at run time; the compiled-in path may name
    // another checkout that shared this target directory).
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    let manifest = manifest.as_path();
    let ours = manifest.join("tests/vectors");
    let shared = manifest.join("../../shared/protocol/vectors");
    let ours_files = files(&ours);
    assert!(
        ours_files.contains_key("client_messages.json"),
        "the repository's vectors are missing: {} holds no client_messages.json",
        ours.display()
    );
    if !shared.is_dir() {
        eprintln!(
            "note: {} is absent; the repository's copy is used as is",
            shared.display()
        );
        return;
    }
    let shared_files = files(&shared);
    let mut differences = Vec::new();
    for (name, bytes) in &shared_files {
        match ours_files.get(name) {
            None => differences.push(format!("{name}: missing from {}", ours.display())),
            Some(copy) if copy != bytes => differences.push(format!(
                "{name}: differs ({} bytes in shared, {} in the copy)",
                bytes.len(),
                copy.len()
            )),
            Some(_) => {}
        }
    }
    for name in ours_files.keys() {
        if !shared_files.contains_key(name) {
            differences.push(format!("{name}: not in {}", shared.display()));
        }
    }
    assert!(
        differences.is_empty(),
        "\n\n*** the repository's golden vectors differ from ../shared ***\n{}\n\
         refresh the copy: cp {}/* {}/\n",
        differences.join("\n"),
        shared.display(),
        ours.display()
    );
}

/// Every regular file of `dir`, by name.
fn files(dir: &PathBuf) -> BTreeMap<String, Vec<u8>> {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()));
    entries
        .map(|entry| entry.unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display())))
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
        .map(|entry| {
            let path = entry.path();
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
            (entry.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect()
}
