//! Rebuilds the coordinator when the web UI's build (`web/dist`) appears or changes, so the binary
//! always embeds the UI that exists when it is built (the embedding itself is `rust-embed`'s, in
//! `src/web.rs`, which cannot tell cargo about files that appear later).
//!
//! With `web/dist` present, cargo watches that directory (every file in it). Without it, cargo
//! watches `web/` itself, whose contents change when the UI is built, and the build says how to get
//! the UI: a clone without Node.js still builds, and serves a page with the same instructions.

use std::path::Path;

fn main() {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web");
    let dist = web.join("dist");
    if dist.join("index.html").is_file() {
        println!("cargo:rerun-if-changed={}", dist.display());
    } else {
        println!("cargo:rerun-if-changed={}", web.display());
        println!(
            "cargo:warning=web/dist is not built: this reelay serves a page saying how to build the \
             UI. For the UI: npm --prefix web ci && npm --prefix web run build, then build again \
             (scripts/dev.sh does both)"
        );
    }
}
