//! Build script: the optional link-time function order of the `postern` binary.
//!
//! `POSTERN_SYMBOL_ORDER=FILE` (one symbol name a line, as `scripts/symbol-order.sh` writes
//! it) has the linker place those functions first and together. Code pages are mapped 64 KiB
//! or a page-cache folio at a time, so the few MiB of functions a session runs, scattered over
//! 21 MB of `.text`, otherwise map most of it (issue 22: an idle shell's file-backed RSS fell
//! from 18.0 to 9.5 MiB). LLD's and mold's `--symbol-ordering-file`; GNU ld has no such
//! option, so it stays opt-in. Names the binary lacks are skipped without a warning.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=POSTERN_SYMBOL_ORDER");
    let Some(order) = std::env::var_os("POSTERN_SYMBOL_ORDER").filter(|v| !v.is_empty()) else {
        return;
    };
    let order = Path::new(&order);
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        println!(
            "cargo::error=POSTERN_SYMBOL_ORDER is for Linux builds linked by LLD or mold; unset \
             it to build for this target"
        );
        return;
    }
    let Some(text) = order.to_str().filter(|p| !p.contains(',')) else {
        println!(
            "cargo::error=POSTERN_SYMBOL_ORDER={}: the path must be UTF-8 without commas (it is \
             passed as -Wl,...); move the file",
            order.display()
        );
        return;
    };
    if !order.is_file() {
        println!(
            "cargo::error=POSTERN_SYMBOL_ORDER={text}: no such file; write it with \
             scripts/symbol-order.sh or unset the variable"
        );
        return;
    }
    println!("cargo:rerun-if-changed={text}");
    println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={text}");
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
}
