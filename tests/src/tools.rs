//! External tools the tests use.

use std::path::PathBuf;
use std::process::Command;

/// The contract checker: `../shared/conformance/check-contract` when present, else the copy in
/// `tests/conformance/`.
pub fn check_contract_script() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let shared = root.join("../shared/conformance/check-contract");
    if shared.exists() {
        shared
    } else {
        root.join("tests/conformance/check-contract")
    }
}

/// Runs the contract checker against a coordinator (and a worker); its output and success.
pub fn check_contract(coordinator: &str, worker: Option<&str>) -> (bool, String) {
    let mut command = Command::new("python3");
    command.arg(check_contract_script()).arg(coordinator);
    if let Some(worker) = worker {
        command.arg(worker);
    }
    let output = command.output().expect("run python3 check-contract");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}
