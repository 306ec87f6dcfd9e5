//! Build script: how the `postern` binary is linked. Two things, both for memory (issue 22):
//! the link-time function order, and packed relative relocations.
//!
//! ## The function order
//!
//! Code pages are mapped 64 KiB or a page-cache folio at a time, so the few MiB of functions a
//! session runs, scattered over 21 MB of `.text`, otherwise map most of it (issue 22: a shell's
//! peak RSS after its prompt, 21.9 MiB before; 6.8 MiB with the order,
//! `setup_memory::release` and packed relocations). An order file (one symbol name a line, as
//! `scripts/symbol-order.sh` writes it) has the linker place those functions first and
//! together: the functions sessions run, then those only start-up runs.
//!
//! - Release builds for x86_64-unknown-linux-gnu with Rust's default linker (LLD, which has
//!   `--symbol-ordering-file`) use the committed `profile-data/symbol-order.txt`. Its names
//!   carry the hashes of this lockfile and toolchain; names a build lacks (another toolchain,
//!   updated dependencies) are skipped without a warning, and the binary is then as without
//!   the order, never wrong.
//! - `POSTERN_SYMBOL_ORDER=FILE` uses FILE (any Linux target linked by LLD or mold);
//!   `POSTERN_SYMBOL_ORDER=` (empty) uses none.
//!
//! ## Packed relative relocations
//!
//! A position-independent executable is relocated by the loader at start-up: one
//! `R_X86_64_RELATIVE` entry of 24 bytes per pointer in the relocated read-only data (vtables,
//! tables of pointers). postern has ~80,000 of them, a 1.9 MiB `.rela.dyn` section the loader
//! reads whole, so 1.9 MiB of the file was resident in every process until the start-up
//! release. `-z pack-relative-relocs` (DT_RELR) encodes the same relocations as bitmaps in a
//! few dozen KiB. The loader must know DT_RELR (glibc 2.36 and later; the linker records the
//! requirement as the `GLIBC_ABI_DT_RELR` version, so an older glibc refuses the binary with a
//! clear message instead of running it wrongly). Used for native builds for
//! x86_64-unknown-linux-gnu with Rust's default linker (LLD) when the build machine's glibc is
//! 2.36 or later; `POSTERN_PACK_RELOCS=` (empty) turns it off, any other value forces it on.

use std::path::{Path, PathBuf};

/// The committed order, relative to the package root.
const COMMITTED_ORDER: &str = "profile-data/symbol-order.txt";

fn main() {
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    pack_relocations();
    function_order();
}

/// Passes `-z pack-relative-relocs` when the loader that will run the binary surely knows
/// DT_RELR (see the module's documentation).
fn pack_relocations() {
    println!("cargo:rerun-if-env-changed=POSTERN_PACK_RELOCS");
    let wanted = match std::env::var_os("POSTERN_PACK_RELOCS") {
        Some(v) => !v.is_empty(),
        None => {
            let target = std::env::var("TARGET").ok();
            target.as_deref() == Some("x86_64-unknown-linux-gnu")
                && std::env::var("HOST").ok() == target
                && !own_linker()
                && host_glibc().is_some_and(|version| version >= (2, 36))
        }
    };
    if wanted {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// The build machine's glibc version, from `getconf GNU_LIBC_VERSION` (`glibc 2.36`).
fn host_glibc() -> Option<(u32, u32)> {
    let output = std::process::Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let version = text.trim().strip_prefix("glibc ")?;
    let mut parts = version.split('.').map(|part| part.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??))
}

/// Whether the user chose a linker (`target.*.linker`, `-C linker`, `-C linker-features`,
/// `-fuse-ld`), which could be GNU ld and lack LLD's options.
fn own_linker() -> bool {
    std::env::var_os("RUSTC_LINKER").is_some()
        || std::env::var("CARGO_ENCODED_RUSTFLAGS")
            .is_ok_and(|flags| flags.contains("linker") || flags.contains("fuse-ld"))
}

/// Passes the function order (see the module's documentation).
fn function_order() {
    println!("cargo:rerun-if-env-changed=POSTERN_SYMBOL_ORDER");
    println!("cargo:rerun-if-changed={COMMITTED_ORDER}");
    let order = match std::env::var_os("POSTERN_SYMBOL_ORDER") {
        Some(v) if v.is_empty() => return,
        Some(v) => PathBuf::from(v),
        None => match default_order() {
            Some(path) => path,
            None => return,
        },
    };
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        println!(
            "cargo::error=POSTERN_SYMBOL_ORDER is for Linux builds linked by LLD or mold; set it \
             empty (POSTERN_SYMBOL_ORDER=) to build for this target"
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
             scripts/symbol-order.sh or set the variable empty for no order"
        );
        return;
    }
    println!("cargo:rerun-if-changed={text}");
    println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={text}");
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
}

/// The committed order, for release builds that surely link with LLD: the target whose
/// default linker it is (Rust 1.90 and later; the workspace needs 1.95), and no linker chosen
/// by the user ([`own_linker`]), which could be GNU ld, which has no such option.
fn default_order() -> Option<PathBuf> {
    let release = std::env::var("PROFILE").as_deref() == Ok("release");
    let default_lld_target = std::env::var("TARGET").as_deref() == Ok("x86_64-unknown-linux-gnu");
    if !release || !default_lld_target || own_linker() {
        return None;
    }
    let root = std::env::var_os("CARGO_MANIFEST_DIR")?;
    let path = Path::new(&root).join(COMMITTED_ORDER);
    path.is_file().then_some(path)
}
