//! Embeds the files of `scenarios/` in the crate (see `scenario::builtin`), so that
//! the `loopwatch` binary does not depend on where its sources were when it was built.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    println!("cargo::rerun-if-changed=scenarios");
    let dir = Path::new("scenarios");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .expect("conformance/scenarios is readable")
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".json"))
        .collect();
    files.sort();
    let mut out = String::from(
        "/// (file name, text) of every scenario file of `scenarios/`, sorted by name.\n\
         const BUILTIN: &[(&str, &str)] = &[\n",
    );
    for file in &files {
        let _ = writeln!(
            out,
            "    ({file:?}, include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/scenarios/\", {file:?}))),"
        );
    }
    out.push_str("];\n");
    let target = Path::new(&std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("builtin_scenarios.rs");
    std::fs::write(target, out).expect("OUT_DIR is writable");
}
