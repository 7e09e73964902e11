//! The tasks a runtime can run, by name and version.

use std::collections::HashMap;

use crate::descriptor::{TaskDescriptor, TaskRegistration};
use crate::runner::TaskRunner;
use crate::runtime::error::{BuildError, EnqueueError};

#[derive(Debug, Clone)]
pub(crate) struct Registered {
    pub(crate) descriptor: &'static TaskDescriptor,
    pub(crate) runner: Option<TaskRunner>,
}

#[derive(Debug, Default)]
pub(crate) struct Registry {
    /// Versions of each name, newest first.
    by_name: HashMap<&'static str, Vec<Registered>>,
}

impl Registry {
    /// Every linked task; two with the same name and version are an error.
    pub(crate) fn from_linked() -> Result<Registry, BuildError> {
        Registry::from_registrations(inventory::iter::<TaskRegistration>.into_iter())
    }

    pub(crate) fn from_registrations<'a>(
        registrations: impl Iterator<Item = &'a TaskRegistration>,
    ) -> Result<Registry, BuildError> {
        let mut by_name: HashMap<&'static str, Vec<Registered>> = HashMap::new();
        for registration in registrations {
            let descriptor = registration.descriptor();
            let versions = by_name.entry(descriptor.name).or_default();
            if let Some(twin) = versions
                .iter()
                .find(|other| other.descriptor.version == descriptor.version)
            {
                let mut places = [twin.descriptor, descriptor];
                places.sort_by_key(|place| (place.source.file, place.source.line));
                let [first, second] = places.map(location);
                return Err(BuildError::DuplicateTask {
                    name: descriptor.name.to_owned(),
                    version: descriptor.version.to_owned(),
                    first,
                    second,
                });
            }
            versions.push(Registered {
                descriptor,
                runner: registration.runner(),
            });
        }
        for versions in by_name.values_mut() {
            versions.sort_by(|a, b| compare_versions(b.descriptor.version, a.descriptor.version));
        }
        Ok(Registry { by_name })
    }

    /// The task `name`, in `version` or else its newest version.
    pub(crate) fn resolve(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<&Registered, EnqueueError> {
        let Some(versions) = self.by_name.get(name) else {
            let mut registered: Vec<String> =
                self.by_name.keys().map(|name| name.to_string()).collect();
            registered.sort();
            return Err(EnqueueError::UnknownTask {
                name: name.to_owned(),
                registered,
            });
        };
        match version {
            None => versions.first().ok_or_else(|| EnqueueError::UnknownTask {
                name: name.to_owned(),
                registered: Vec::new(),
            }),
            Some(version) => versions
                .iter()
                .find(|registered| registered.descriptor.version == version)
                .ok_or_else(|| EnqueueError::UnknownVersion {
                    name: name.to_owned(),
                    version: version.to_owned(),
                    available: versions
                        .iter()
                        .map(|registered| registered.descriptor.version.to_owned())
                        .collect(),
                }),
        }
    }

    /// The task `name` in exactly `version`.
    pub(crate) fn exact(&self, name: &str, version: &str) -> Option<&Registered> {
        self.by_name
            .get(name)?
            .iter()
            .find(|registered| registered.descriptor.version == version)
    }
}

fn location(descriptor: &TaskDescriptor) -> String {
    format!("{}:{}", descriptor.source.file, descriptor.source.line)
}

/// Compares dotted versions part by part, numerically where both parts are numbers.
fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    let mut left = a.split(['.', '-', '+']);
    let mut right = b.split(['.', '-', '+']);
    loop {
        match (left.next(), right.next()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => {
                let ordering = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(x), Ok(y)) => x.cmp(&y),
                    _ => x.cmp(y),
                };
                if ordering.is_ne() {
                    return ordering;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tasker_telemetry::SourceLocation;

    fn descriptor(name: &'static str, version: &'static str, line: u32) -> &'static TaskDescriptor {
        Box::leak(Box::new(TaskDescriptor {
            name,
            version,
            source: SourceLocation {
                function: "tests::task",
                file: "src/orders.rs",
                line,
            },
            policy: crate::RetryPolicy::TASK_DEFAULT,
            timeout: None,
        }))
    }

    fn registration(name: &'static str, version: &'static str, line: u32) -> TaskRegistration {
        TaskRegistration::new(descriptor(name, version, line), || None)
    }

    #[test]
    fn duplicate_name_and_version_names_both_locations() {
        let registrations = [
            registration("order", "1.0.0", 10),
            registration("order", "1.0.0", 42),
        ];
        let error = Registry::from_registrations(registrations.iter()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "task `order` version `1.0.0` is registered twice: at src/orders.rs:10 and at \
             src/orders.rs:42; give one of them another name or version"
        );
    }

    #[test]
    fn newest_version_is_chosen_when_none_is_asked() {
        let registrations = [
            registration("order", "1.9.0", 1),
            registration("order", "1.10.0", 2),
            registration("order", "1.2.0", 3),
        ];
        let registry = Registry::from_registrations(registrations.iter()).unwrap();
        assert_eq!(
            registry.resolve("order", None).unwrap().descriptor.version,
            "1.10.0"
        );
        assert_eq!(
            registry
                .resolve("order", Some("1.2.0"))
                .unwrap()
                .descriptor
                .version,
            "1.2.0"
        );
        assert_eq!(
            registry.resolve("order", Some("3.0.0")).unwrap_err().to_string(),
            "task `order` has no version `3.0.0`; registered versions are: `1.10.0`, `1.9.0`, `1.2.0`"
        );
        assert_eq!(
            registry.resolve("shipping", None).unwrap_err().to_string(),
            "no task is registered as `shipping`; registered tasks are: `order`"
        );
    }
}
