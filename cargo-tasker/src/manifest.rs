//! Enabling a feature of the `tasker` dependency in a `Cargo.toml`, keeping its formatting and
//! comments (`toml_edit`).

use std::path::{Path, PathBuf};

use toml_edit::{Array, DocumentMut, InlineTable, Item, Table, Value};

/// Why a manifest cannot be edited.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// No `Cargo.toml` here or above.
    #[error(
        "no Cargo.toml in {} or any parent directory; run this inside a cargo package (or pass \
         --manifest-path path/to/Cargo.toml)",
        .0.display()
    )]
    NotFound(PathBuf),
    /// The file cannot be read or written.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{} is not valid TOML: {source}", .path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        source: toml_edit::TomlError,
    },
    /// A workspace root without a package of its own.
    #[error(
        "{} is a virtual workspace manifest (no [package]); run this in the member package that \
         depends on `tasker`, or pass its --manifest-path",
        .0.display()
    )]
    VirtualManifest(PathBuf),
    /// No `tasker` among the dependencies.
    #[error(
        "{} has no `tasker` dependency in [dependencies]{}; add it first (`cargo add tasker`) \
         and run this again",
        .path.display(),
        if *.only_dev { " (only in [dev-dependencies])" } else { "" }
    )]
    NoTaskerDependency {
        /// The manifest.
        path: PathBuf,
        /// Whether `tasker` is a dev-dependency only.
        only_dev: bool,
    },
    /// The dependency has a shape the command does not understand.
    #[error("{}: {reason}", .path.display())]
    Unsupported {
        /// The manifest.
        path: PathBuf,
        /// What is wrong, and what would be expected.
        reason: String,
    },
}

/// The nearest `Cargo.toml` in `start` or above.
pub fn find(start: &Path) -> Result<PathBuf, ManifestError> {
    start
        .ancestors()
        .map(|dir| dir.join("Cargo.toml"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| ManifestError::NotFound(start.to_owned()))
}

/// What [`enable_feature`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeatureEdit {
    /// The feature was added; the new text of the manifest.
    Added(String),
    /// The feature was already there; nothing to write.
    AlreadyEnabled,
}

/// Adds `feature` to the `tasker` dependency of the manifest text `text` (read from `path`,
/// which only names it in errors). Every form is handled: `tasker = "0.1"`, an inline table
/// (with or without `features`, `path`, `workspace = true`), a `[dependencies.tasker]` table,
/// dotted keys (`tasker.workspace = true`), a renamed dependency (`package = "tasker"`), and
/// target-specific `[target.….dependencies]`.
pub fn enable_feature(
    path: &Path,
    text: &str,
    feature: &str,
) -> Result<FeatureEdit, ManifestError> {
    let mut document: DocumentMut = text.parse().map_err(|source| ManifestError::Parse {
        path: path.to_owned(),
        source,
    })?;
    if !document.contains_key("package") {
        return Err(ManifestError::VirtualManifest(path.to_owned()));
    }
    let unsupported = |reason: String| ManifestError::Unsupported {
        path: path.to_owned(),
        reason,
    };

    let mut found = false;
    let mut changed = false;
    for dependencies in dependency_tables(&mut document) {
        let keys: Vec<String> = dependencies
            .iter()
            .filter(|(key, item)| is_tasker(key, item))
            .map(|(key, _)| key.to_owned())
            .collect();
        for key in keys {
            found = true;
            let Some(item) = dependencies.get_mut(&key) else {
                continue;
            };
            changed |= add_to_dependency(item, feature)
                .map_err(|reason| unsupported(format!("the `{key}` dependency {reason}")))?;
        }
    }
    if !found {
        let only_dev = ["dev-dependencies", "build-dependencies"]
            .iter()
            .any(|table| {
                document
                    .get(table)
                    .and_then(Item::as_table_like)
                    .is_some_and(|deps| deps.iter().any(|(key, item)| is_tasker(key, item)))
            });
        return Err(ManifestError::NoTaskerDependency {
            path: path.to_owned(),
            only_dev,
        });
    }
    Ok(if changed {
        FeatureEdit::Added(document.to_string())
    } else {
        FeatureEdit::AlreadyEnabled
    })
}

/// `[dependencies]` and every `[target.<cfg>.dependencies]`.
fn dependency_tables(document: &mut DocumentMut) -> Vec<&mut dyn toml_edit::TableLike> {
    let mut tables: Vec<&mut dyn toml_edit::TableLike> = Vec::new();
    let (root_dependencies, targets) = {
        let root = document.as_table_mut();
        let mut dependencies = None;
        let mut targets = None;
        for (key, item) in root.iter_mut() {
            match key.get() {
                "dependencies" => dependencies = item.as_table_like_mut(),
                "target" => targets = item.as_table_like_mut(),
                _ => {}
            }
        }
        (dependencies, targets)
    };
    tables.extend(root_dependencies);
    if let Some(targets) = targets {
        for (_, target) in targets.iter_mut() {
            if let Some(dependencies) = target
                .as_table_like_mut()
                .and_then(|target| target.get_mut("dependencies"))
                .and_then(Item::as_table_like_mut)
            {
                tables.push(dependencies);
            }
        }
    }
    tables
}

/// Whether the dependency `key = item` is the `tasker` crate (by name, or renamed with
/// `package = "tasker"`).
fn is_tasker(key: &str, item: &Item) -> bool {
    let package = item
        .as_table_like()
        .and_then(|table| table.get("package"))
        .and_then(Item::as_str);
    match package {
        Some(package) => package == "tasker",
        None => key == "tasker",
    }
}

/// Adds `feature` to one dependency entry; `Ok(false)` if it was there already.
fn add_to_dependency(item: &mut Item, feature: &str) -> Result<bool, String> {
    match item {
        Item::Value(Value::String(version)) => {
            // `tasker = "0.1"` becomes `tasker = { version = "0.1", features = [...] }`,
            // keeping the comment that followed the version.
            let decor = version.decor().clone();
            let mut table = InlineTable::new();
            table.insert("version", Value::from(version.value().as_str()));
            table.insert("features", Value::Array(Array::from_iter([feature])));
            let mut value = Value::InlineTable(table);
            *value.decor_mut() = decor;
            *item = Item::Value(value);
            Ok(true)
        }
        Item::Value(Value::InlineTable(table)) => add_to_features(table, feature),
        Item::Table(table) => add_to_table(table, feature),
        _ => Err(
            "is neither a version string nor a table; expected `tasker = \"0.1\"`, \
             `tasker = { … }` or a [dependencies.tasker] table"
                .to_owned(),
        ),
    }
}

fn add_to_features(table: &mut InlineTable, feature: &str) -> Result<bool, String> {
    match table.get_mut("features") {
        Some(features) => push_feature(features, feature),
        None => {
            // `{ version = "0.1" }`: the space before `}` belongs to the last value; keep it last.
            let suffix = take_last_suffix(table.iter_mut().map(|(_, value)| value));
            table.insert("features", Value::Array(Array::from_iter([feature])));
            if let (Some(suffix), Some(features)) = (suffix, table.get_mut("features")) {
                features.decor_mut().set_suffix(suffix);
            }
            Ok(true)
        }
    }
}

/// Clears and returns the suffix decor of the last of `values`.
fn take_last_suffix<'a>(
    values: impl Iterator<Item = &'a mut Value>,
) -> Option<toml_edit::RawString> {
    let last = values.last()?;
    let suffix = last.decor().suffix().cloned();
    last.decor_mut().set_suffix("");
    suffix
}

fn add_to_table(table: &mut Table, feature: &str) -> Result<bool, String> {
    match table.get_mut("features") {
        Some(Item::Value(features)) => push_feature(features, feature),
        Some(_) => Err("has a `features` key that is not an array of strings".to_owned()),
        None => {
            table.insert(
                "features",
                Item::Value(Value::Array(Array::from_iter([feature]))),
            );
            Ok(true)
        }
    }
}

fn push_feature(features: &mut Value, feature: &str) -> Result<bool, String> {
    let Value::Array(array) = features else {
        return Err("has a `features` key that is not an array of strings".to_owned());
    };
    if array.iter().any(|value| value.as_str() == Some(feature)) {
        return Ok(false);
    }
    // `["a" ]`: the space before `]` belongs to the last element; keep it last.
    let suffix = take_last_suffix(array.iter_mut());
    array.push(feature);
    if let (Some(suffix), Some(last)) = (suffix, array.iter_mut().last()) {
        last.decor_mut().set_suffix(suffix);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enable(text: &str) -> FeatureEdit {
        enable_feature(Path::new("Cargo.toml"), text, "opentelemetry").unwrap()
    }

    fn added(text: &str) -> String {
        match enable(text) {
            FeatureEdit::Added(text) => text,
            FeatureEdit::AlreadyEnabled => panic!("nothing was added to:\n{text}"),
        }
    }

    const PACKAGE: &str = "[package]\nname = \"shop\"\nversion = \"0.1.0\"\n\n";

    #[test]
    fn a_version_string_becomes_an_inline_table_keeping_its_comment() {
        assert_eq!(
            added(&format!("{PACKAGE}[dependencies]\ntasker = \"0.1\" # workflows\nserde = \"1\"\n")),
            format!(
                "{PACKAGE}[dependencies]\ntasker = {{ version = \"0.1\", features = [\"opentelemetry\"] }} # workflows\nserde = \"1\"\n"
            )
        );
    }

    #[test]
    fn a_renamed_dependency_is_found_by_its_package() {
        assert_eq!(
            added(&format!("{PACKAGE}[dependencies]\nworkflows = {{ package = \"tasker\", version = \"0.1\" }}\n")),
            format!("{PACKAGE}[dependencies]\nworkflows = {{ package = \"tasker\", version = \"0.1\", features = [\"opentelemetry\"] }}\n")
        );
    }

    #[test]
    fn target_specific_dependencies_are_edited_too() {
        assert_eq!(
            added(&format!("{PACKAGE}[target.'cfg(unix)'.dependencies]\ntasker = {{ version = \"0.1\" }}\n")),
            format!("{PACKAGE}[target.'cfg(unix)'.dependencies]\ntasker = {{ version = \"0.1\", features = [\"opentelemetry\"] }}\n")
        );
    }

    #[test]
    fn an_enabled_feature_is_left_alone() {
        assert_eq!(
            enable(&format!("{PACKAGE}[dependencies]\ntasker = {{ version = \"0.1\", features = [\"opentelemetry\"] }}\n")),
            FeatureEdit::AlreadyEnabled
        );
    }

    #[test]
    fn a_dev_dependency_only_is_named_in_the_error() {
        let error = enable_feature(
            Path::new("shop/Cargo.toml"),
            &format!("{PACKAGE}[dev-dependencies]\ntasker = \"0.1\"\n"),
            "opentelemetry",
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "shop/Cargo.toml has no `tasker` dependency in [dependencies] (only in \
             [dev-dependencies]); add it first (`cargo add tasker`) and run this again"
        );
    }

    #[test]
    fn a_virtual_manifest_is_refused() {
        let error = enable_feature(
            Path::new("Cargo.toml"),
            "[workspace]\nmembers = [\"shop\"]\n",
            "opentelemetry",
        )
        .unwrap_err();
        assert!(
            matches!(error, ManifestError::VirtualManifest(_)),
            "{error}"
        );
    }

    #[test]
    fn features_that_are_not_an_array_are_refused() {
        let error = enable_feature(
            Path::new("Cargo.toml"),
            &format!(
                "{PACKAGE}[dependencies]\ntasker = {{ version = \"0.1\", features = \"x\" }}\n"
            ),
            "opentelemetry",
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "Cargo.toml: the `tasker` dependency has a `features` key that is not an array of \
             strings"
        );
    }
}
