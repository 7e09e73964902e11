//! `cargo tasker telemetry setup` run against projects made by `cargo new` in temporary
//! directories: each TOML form of the `tasker` dependency, with and without an initializer of
//! the user's, a second run, the errors; and one `cargo check` of an edited project.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const TEMPLATE: &str = include_str!("../templates/telemetry.rs");

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// A project made by `cargo new`, with `dependency` inserted under its `[dependencies]` (or
/// appended, when it is a table of its own). Returns the directory and the manifest as
/// generated plus the dependency.
fn new_project(dependency: &str) -> (tempfile::TempDir, PathBuf, String) {
    let temp = tempfile::tempdir().expect("a temporary directory");
    let dir = temp.path().join("shop");
    let status = Command::new(cargo())
        .args(["new", "--quiet", "--vcs", "none", "--bin", "--name", "shop"])
        .arg(&dir)
        .status()
        .expect("cargo new runs");
    assert!(status.success(), "cargo new failed");
    let generated = fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    assert!(generated.ends_with("[dependencies]\n"), "{generated}");
    let manifest = if dependency.starts_with('[') {
        format!("{generated}\n{dependency}")
    } else {
        format!("{generated}{dependency}")
    };
    fs::write(dir.join("Cargo.toml"), &manifest).unwrap();
    (temp, dir, manifest)
}

fn cargo_tasker(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cargo-tasker"))
        .arg("tasker")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("cargo-tasker runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs setup on a project with `before` as its dependency, checks the manifest becomes
/// `after` exactly and the initializer is written, then that a second run changes nothing.
fn assert_setup_edits(before: &str, after: &str) {
    let (_temp, dir, manifest) = new_project(before);
    let output = cargo_tasker(&dir, &["telemetry", "setup"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        fs::read_to_string(dir.join("Cargo.toml")).unwrap(),
        manifest.replace(before, after)
    );
    assert_eq!(
        fs::read_to_string(dir.join("src/telemetry.rs")).unwrap(),
        TEMPLATE
    );
    let report = stdout(&output);
    assert!(
        report.contains("Cargo.toml: enabled the `opentelemetry` feature"),
        "{report}"
    );
    assert!(report.contains("src/telemetry.rs: written"), "{report}");
    assert!(
        report.contains("declare the module in src/main.rs: `mod telemetry;`"),
        "{report}"
    );

    let manifest_after = fs::read(dir.join("Cargo.toml")).unwrap();
    let again = cargo_tasker(&dir, &["telemetry", "setup"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(fs::read(dir.join("Cargo.toml")).unwrap(), manifest_after);
    assert_eq!(
        fs::read_to_string(dir.join("src/telemetry.rs")).unwrap(),
        TEMPLATE
    );
    let report = stdout(&again);
    assert!(
        report.contains("Cargo.toml: the `opentelemetry` feature is already enabled; unchanged"),
        "{report}"
    );
    assert!(
        report.contains("src/telemetry.rs: already Tasker's initializer; unchanged"),
        "{report}"
    );
}

#[test]
fn a_version_string_becomes_a_table_with_the_feature() {
    assert_setup_edits(
        "tasker = \"0.1\"\n",
        "tasker = { version = \"0.1\", features = [\"opentelemetry\"] }\n",
    );
}

#[test]
fn an_inline_table_with_features_and_a_comment_gets_one_more_feature() {
    assert_setup_edits(
        "tasker = { version = \"0.1\", features = [\"serde\"] } # workflows\n",
        "tasker = { version = \"0.1\", features = [\"serde\", \"opentelemetry\"] } # workflows\n",
    );
}

#[test]
fn a_dependency_table_gets_a_features_key() {
    assert_setup_edits(
        "[dependencies.tasker]\n# pinned for the audit\nversion = \"0.1.0\"\n",
        "[dependencies.tasker]\n# pinned for the audit\nversion = \"0.1.0\"\nfeatures = [\"opentelemetry\"]\n",
    );
}

#[test]
fn a_path_dependency_gets_the_feature() {
    assert_setup_edits(
        "tasker = { path = \"../tasker\" }\n",
        "tasker = { path = \"../tasker\", features = [\"opentelemetry\"] }\n",
    );
}

#[test]
fn a_workspace_dependency_gets_the_feature_in_its_own_form() {
    assert_setup_edits(
        "tasker = { workspace = true }\n",
        "tasker = { workspace = true, features = [\"opentelemetry\"] }\n",
    );
    assert_setup_edits(
        "tasker.workspace = true\n",
        "tasker.workspace = true\ntasker.features = [\"opentelemetry\"]\n",
    );
}

#[test]
fn an_initializer_the_user_wrote_is_kept_and_the_run_fails_without_force() {
    let (_temp, dir, manifest) = new_project("tasker = \"0.1\"\n");
    let mine = "// my own telemetry setup\npub fn init() {}\n";
    fs::write(dir.join("src/telemetry.rs"), mine).unwrap();

    let output = cargo_tasker(&dir, &["telemetry", "setup"]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert_eq!(
        fs::read_to_string(dir.join("src/telemetry.rs")).unwrap(),
        mine
    );
    assert!(
        stdout(&output).contains(
            "src/telemetry.rs: exists and differs from Tasker's initializer; left unchanged \
             (run again with --force to replace it"
        ),
        "{}",
        stdout(&output)
    );
    // The manifest edit is independent of the initializer, and done.
    assert_eq!(
        fs::read_to_string(dir.join("Cargo.toml")).unwrap(),
        manifest.replace(
            "tasker = \"0.1\"",
            "tasker = { version = \"0.1\", features = [\"opentelemetry\"] }"
        )
    );

    let forced = cargo_tasker(&dir, &["telemetry", "setup", "--force"]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert_eq!(
        fs::read_to_string(dir.join("src/telemetry.rs")).unwrap(),
        TEMPLATE
    );
    assert!(
        stdout(&forced).contains("src/telemetry.rs: replaced with Tasker's initializer (--force)")
    );
}

#[test]
fn outside_a_cargo_project_the_error_says_where_it_looked() {
    let temp = tempfile::tempdir().unwrap();
    let output = cargo_tasker(temp.path(), &["telemetry", "setup"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).starts_with(&format!(
            "error: no Cargo.toml in {} or any parent directory; run this inside a cargo package",
            temp.path().display()
        )),
        "{}",
        stderr(&output)
    );
}

#[test]
fn without_a_tasker_dependency_nothing_is_written() {
    let (_temp, dir, manifest) = new_project("serde = \"1\"\n");
    let output = cargo_tasker(&dir, &["telemetry", "setup"]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr(&output),
        format!(
            "error: {} has no `tasker` dependency in [dependencies]; add it first (`cargo add \
             tasker`) and run this again\n",
            dir.join("Cargo.toml").display()
        )
    );
    assert_eq!(
        fs::read_to_string(dir.join("Cargo.toml")).unwrap(),
        manifest
    );
    assert!(!dir.join("src/telemetry.rs").exists());
}

#[test]
fn an_edited_project_compiles_with_the_feature_on() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cargo-tasker lives in the workspace");
    let dependency = format!(
        "tasker = {{ path = {:?} }}\n",
        workspace.display().to_string()
    );
    let (_temp, dir, _) = new_project(&dependency);
    let output = cargo_tasker(&dir, &["telemetry", "setup"]);
    assert!(output.status.success(), "{}", stderr(&output));
    fs::write(
        dir.join("src/main.rs"),
        "mod telemetry;\n\nfn main() -> Result<(), Box<dyn std::error::Error>> {\n    \
         let _telemetry = telemetry::init()?;\n    Ok(())\n}\n",
    )
    .unwrap();
    // The workspace's lock file pins the versions this workspace builds with, so the check
    // reuses them offline; a target directory under the workspace's keeps the build between runs.
    fs::copy(workspace.join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
        .join("cargo-tasker-check");
    let check = Command::new(cargo())
        .args(["check", "--offline", "--quiet"])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("cargo check runs");
    let diagnostics = stderr(&check);
    assert!(check.status.success(), "{diagnostics}");
    assert!(
        !diagnostics.contains("src/telemetry.rs") && !diagnostics.contains("src/main.rs"),
        "the initializer compiles without warnings:\n{diagnostics}"
    );
}
