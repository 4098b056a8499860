//! Embeds the files of `scenarios/` and `regressions/` in the crate (see
//! `scenario::builtin` and `hunt::committed`), so that the `loopwatch` binary does not
//! depend on where its sources were when it was built.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    embed(
        "scenarios",
        "BUILTIN",
        "builtin_scenarios.rs",
        "scenario file",
    );
    embed(
        "regressions",
        "REGRESSIONS",
        "regressions.rs",
        "regression file",
    );
}

/// Writes `OUT_DIR/out`: a constant `name` with (file name, text) of every `*.json`
/// file of `dir`, sorted by name.
fn embed(dir: &str, name: &str, out_file: &str, what: &str) {
    println!("cargo::rerun-if-changed={dir}");
    let path = Path::new(dir);
    let mut files: Vec<String> = std::fs::read_dir(path)
        .unwrap_or_else(|e| panic!("conformance/{dir} is readable: {e}"))
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".json"))
        .collect();
    files.sort();
    let mut out = format!(
        "/// (file name, text) of every {what} of `{dir}/`, sorted by name.\n\
         const {name}: &[(&str, &str)] = &[\n"
    );
    for file in &files {
        let _ = writeln!(
            out,
            "    ({file:?}, include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/{dir}/\", {file:?}))),"
        );
    }
    out.push_str("];\n");
    let target =
        Path::new(&std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join(out_file);
    std::fs::write(target, out).expect("OUT_DIR is writable");
}
