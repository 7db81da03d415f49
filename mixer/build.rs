//! Refuse to build without nasm.
//!
//! openh264-sys2 compiles OpenH264's x86 assembly only when it finds `nasm`;
//! without it the build silently falls back to plain C, which encodes about
//! three times slower. A bridge built that way would pass every test and then
//! carry a third of the video calls it should, so the build fails instead.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PATH");

    // The assembly exists for x86 only; elsewhere there is nothing to lose.
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if arch != "x86_64" && arch != "x86" {
        return;
    }

    let ok = Command::new("nasm")
        .arg("-v")
        .output()
        .map(|out| out.status.success())
        .unwrap_or(false);
    if !ok {
        // `cargo::error` fails the build with just this line, no backtrace.
        println!(
            "cargo::error=nasm not found: apt-get install nasm — openh264 would build \
             without its assembly and run 3x slower"
        );
    }
}
