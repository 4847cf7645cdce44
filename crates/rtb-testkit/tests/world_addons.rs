//! The proxy addons' own unit tests (tests/world/test_*.py: token bucket arithmetic, bucket
//! choice, price filters, windows and pages), run with the proxy's Python so that they run
//! with the rest of the suite. Add a tests/world/test_<addon>.py and it runs here too.

use std::path::Path;
use std::process::Command;

#[test]
fn addon_unit_tests_pass() {
    let world = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/world");
    let python = rtb_testkit::world_python();
    let out = Command::new(&python)
        .args([
            "-m",
            "unittest",
            "discover",
            "-s",
            ".",
            "-p",
            "test_*.py",
            "-v",
        ])
        .current_dir(&world)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    // unittest reports on stderr.
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the addons' unit tests failed:\n{report}"
    );
    let ran: usize = report
        .lines()
        .find_map(|l| {
            l.strip_prefix("Ran ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no 'Ran N tests' in:\n{report}"));
    // test_limits.py and test_prices.py hold 34; fewer means a file was not found.
    assert!(ran >= 34, "only {ran} unit tests ran:\n{report}");
}
