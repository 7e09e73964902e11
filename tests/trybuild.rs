//! The compile errors of `#[tasker::step]` and `#[tasker::task]` misuses, pinned by trybuild
//! snapshots: each points at the offending token and says what is wrong and what is valid.

#[test]
fn misuses_are_compile_errors_at_the_offending_token() {
    trybuild::TestCases::new().compile_fail("tests/ui/fail/*.rs");
}
