//! Running the `segvault` binary under test and reading what it printed.

use serde_json::Value;
use std::process::{Command, Output};

/// A command for the `segvault` binary built with these tests.
pub fn segvault() -> Command {
    Command::new(env!("CARGO_BIN_EXE_segvault"))
}

/// Runs `cmd` to its end and returns what it printed; fails the test if it panicked (exit
/// code 101).
pub fn output(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert_ne!(out.status.code(), Some(101), "panic: {}", stderr(&out));
    out
}

/// The exit code, -1 if a signal ended the process.
pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// Asserts the exit code, showing stdout and stderr if it is another.
pub fn assert_exit(out: &Output, want: i32) {
    assert_eq!(
        code(out),
        want,
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(out)
    );
}

/// Stderr, lossily decoded.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Stdout as JSON lines: the output must be UTF-8 and every line one JSON value.
pub fn json_lines(stdout: &[u8]) -> Vec<Value> {
    std::str::from_utf8(stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The lines of `"type": ty`.
pub fn of_type<'a>(lines: &'a [Value], ty: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["type"] == ty).collect()
}

/// The problems that are not notes (warnings and errors).
pub fn failures(lines: &[Value]) -> Vec<&Value> {
    of_type(lines, "problem")
        .into_iter()
        .filter(|p| p["severity"] != "note")
        .collect()
}

/// The `"type": "total"` line.
pub fn total(lines: &[Value]) -> &Value {
    lines
        .iter()
        .find(|l| l["type"] == "total")
        .expect("a total line")
}
