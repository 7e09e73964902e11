//! Configuration, mirroring Tasker's: `enable_telemetry`, `telemetry_adapters`,
//! `telemetry_adapter_classes`.

use std::ffi::OsString;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;

use crate::adapter::{find_adapter, registered_adapters, Adapter, AdapterRegistration};
use crate::adapters::{ColorChoice, ConsoleAdapter, LogFormat, LoggerAdapter};
use crate::filter::DEFAULT_FILTER_PARAMETERS;
use crate::isolate::{panic_message, Isolated};
use crate::notice::Notice;
use crate::propagation::{self, Propagator};
use crate::{bus, telemetry::TelemetryObserver};

/// One entry of `telemetry_adapters`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TelemetryAdapter {
    /// The logger: one line per event through `tracing`.
    Default,
    /// OpenTelemetry: a trace per task, a span per step.
    OpenTelemetry,
    /// The console trace view: each task's tree printed to standard output when it ends
    /// ([`ConsoleAdapter`]; colours per `console_color`).
    Console,
    /// A custom adapter, named by the matching entry of `telemetry_adapter_classes`.
    Custom,
}

impl TelemetryAdapter {
    /// The lower-case word that names it in the environment.
    pub fn as_str(self) -> &'static str {
        match self {
            TelemetryAdapter::Default => "default",
            TelemetryAdapter::OpenTelemetry => "opentelemetry",
            TelemetryAdapter::Console => "console",
            TelemetryAdapter::Custom => "custom",
        }
    }

    const WORDS: &'static str = "default, opentelemetry, console, custom";
}

impl fmt::Display for TelemetryAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TelemetryAdapter {
    type Err = ConfigError;

    /// Parses `default`, `opentelemetry` or `custom`, ignoring case and surrounding spaces.
    fn from_str(word: &str) -> Result<Self, Self::Err> {
        match word.trim().to_ascii_lowercase().as_str() {
            "default" => Ok(TelemetryAdapter::Default),
            "opentelemetry" => Ok(TelemetryAdapter::OpenTelemetry),
            "console" => Ok(TelemetryAdapter::Console),
            "custom" => Ok(TelemetryAdapter::Custom),
            _ => Err(ConfigError::UnknownAdapter {
                value: word.to_owned(),
                valid: TelemetryAdapter::WORDS,
            }),
        }
    }
}

/// Everything `configure` can be wrong about. Each message names the bad value and what would be
/// valid.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A word that names no adapter.
    #[error("`{value}` is not a telemetry adapter; valid adapters are: {valid}")]
    UnknownAdapter {
        /// The word given.
        value: String,
        /// The valid words.
        valid: &'static str,
    },
    /// A class name that no `register_adapter!` registered.
    #[error(
        "no custom telemetry adapter is registered as `{name}`; {}",
        registered_list(.registered)
    )]
    UnknownAdapterClass {
        /// The class name given.
        name: String,
        /// The names that are registered.
        registered: Vec<&'static str>,
    },
    /// `telemetry_adapter_classes` does not have one name per `Custom` entry.
    #[error(
        "telemetry_adapters has {custom_entries} `custom` entr{} but telemetry_adapter_classes \
         has {classes} name{} ({}); give exactly one class name per `custom` entry, in order",
        if *.custom_entries == 1 { "y" } else { "ies" },
        if *.classes == 1 { "" } else { "s" },
        quoted(.class_names)
    )]
    AdapterClassCount {
        /// `Custom` entries in `telemetry_adapters`.
        custom_entries: usize,
        /// Names in `telemetry_adapter_classes`.
        classes: usize,
        /// Those names.
        class_names: Vec<String>,
    },
    /// A built-in adapter listed twice, which would report every event twice.
    #[error("telemetry_adapters lists `{adapter}` twice; list each built-in adapter once")]
    DuplicateAdapter {
        /// The adapter listed twice.
        adapter: TelemetryAdapter,
    },
    /// An adapter whose cargo feature is not enabled.
    #[error(
        "the `{adapter}` telemetry adapter needs the `{feature}` feature of the `tasker` crate; \
         enable it in Cargo.toml (tasker = {{ features = [\"{feature}\"] }}) or remove `{adapter}`"
    )]
    FeatureDisabled {
        /// The adapter asked for.
        adapter: TelemetryAdapter,
        /// The feature it needs.
        feature: &'static str,
    },
    /// An environment variable whose value cannot be parsed.
    #[error("{variable}={value:?} is not valid: {reason}")]
    InvalidEnvironment {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
        /// What would be valid.
        reason: String,
    },
    /// A variable whose value is not valid UTF-8.
    #[error(
        "{variable} is not valid UTF-8 (its value, shown lossily: {value:?}); Tasker's variables \
         must be text"
    )]
    NotUnicode {
        /// The variable.
        variable: &'static str,
        /// Its value, invalid bytes replaced by U+FFFD.
        value: String,
    },
    /// An empty pattern in `filter_parameters`, which would mask every value.
    #[error(
        "filter_parameters contains an empty pattern, which would mask every key; remove it \
         (patterns match keys containing them, ignoring case)"
    )]
    EmptyFilterParameter,
    /// A custom adapter's constructor panicked.
    #[error("the constructor of telemetry adapter `{name}` panicked: {message}")]
    AdapterConstructorPanicked {
        /// The adapter's registered name.
        name: String,
        /// The panic message.
        message: String,
    },
}

crate::__debug_shows_message!(ConfigError {
    UnknownAdapter,
    UnknownAdapterClass,
    AdapterClassCount,
    DuplicateAdapter,
    FeatureDisabled,
    InvalidEnvironment,
    NotUnicode,
    EmptyFilterParameter,
    AdapterConstructorPanicked
});

fn registered_list(registered: &[&'static str]) -> String {
    if registered.is_empty() {
        "no custom adapter is registered in this program (a crate that registers adapters but is \
         never referenced is not linked: add `tasker::use_adapters!(that_crate);`)"
            .to_owned()
    } else {
        format!(
            "registered adapters are: {} (a crate that is never referenced is not linked: see \
             `tasker::use_adapters!`)",
            quoted(registered)
        )
    }
}

fn adapter_words(adapters: &[TelemetryAdapter]) -> String {
    quoted(
        &adapters
            .iter()
            .map(|adapter| adapter.as_str())
            .collect::<Vec<_>>(),
    )
}

fn quoted<S: AsRef<str>>(names: &[S]) -> String {
    if names.is_empty() {
        return "none".to_owned();
    }
    names
        .iter()
        .map(|name| format!("`{}`", name.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Tasker's configuration.
///
/// ```
/// use tasker::{configure, TelemetryAdapter};
/// configure(|config| {
///     config.enable_telemetry = true;
///     config.telemetry_adapters = vec![TelemetryAdapter::Default];
/// })
/// .unwrap();
/// # configure(|config| config.enable_telemetry = false).unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Configuration {
    /// Whether adapters receive events. Off by default, as in Tasker; while off, telemetry costs
    /// one relaxed atomic load per instrumented call.
    pub enable_telemetry: bool,
    /// The adapters, in the order they receive each event. Default: `[Default]`.
    pub telemetry_adapters: Vec<TelemetryAdapter>,
    /// One registered adapter name per `Custom` entry of `telemetry_adapters`, in order.
    pub telemetry_adapter_classes: Vec<String>,
    /// Keys whose values are replaced by `[FILTERED]` in custom payloads and recorded fields: a
    /// key matches when it contains a pattern, ignoring case.
    pub filter_parameters: Vec<String>,
    /// Whether `TelemetryAdapter::Console` colours its trees. Default: `Auto` (on a terminal).
    pub console_color: ColorChoice,
    /// How `TelemetryAdapter::Default` (the logger) writes its lines. Default: `Compact`, the
    /// event's name with its payload as `tracing` fields; `Json` adds the payload as JSON to the
    /// message, as Tasker's Ruby logger does.
    pub log_format: LogFormat,
    /// The tracer provider of the OpenTelemetry adapter; `None`: the global one, as installed
    /// when `configure` runs.
    #[cfg(feature = "opentelemetry")]
    pub tracer_provider: Option<crate::otel::TracerProviderHandle>,
    /// The meter provider of the OpenTelemetry adapter's metrics; `None`: the global one, as
    /// installed when `configure` runs.
    #[cfg(feature = "opentelemetry")]
    pub meter_provider: Option<crate::otel::MeterProviderHandle>,
    /// Whether the OpenTelemetry adapter records its metrics (`tasker.task.duration`,
    /// `tasker.step.duration`, `tasker.step.attempts`, `tasker.step.retries`,
    /// `tasker.task.queue_latency`). Default: `true`; `false` leaves spans only.
    #[cfg(feature = "opentelemetry")]
    pub otel_metrics: bool,
}

impl Default for Configuration {
    fn default() -> Self {
        Self {
            enable_telemetry: false,
            telemetry_adapters: vec![TelemetryAdapter::Default],
            telemetry_adapter_classes: Vec::new(),
            filter_parameters: DEFAULT_FILTER_PARAMETERS.map(String::from).to_vec(),
            console_color: ColorChoice::Auto,
            log_format: LogFormat::Compact,
            #[cfg(feature = "opentelemetry")]
            tracer_provider: None,
            #[cfg(feature = "opentelemetry")]
            meter_provider: None,
            #[cfg(feature = "opentelemetry")]
            otel_metrics: true,
        }
    }
}

/// The environment variables [`Configuration::from_env`] reads.
pub mod env {
    /// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`).
    pub const ENABLE_TELEMETRY: &str = "TASKER_ENABLE_TELEMETRY";
    /// Comma-separated: `default,opentelemetry,custom`.
    pub const TELEMETRY_ADAPTERS: &str = "TASKER_TELEMETRY_ADAPTERS";
    /// Comma-separated class names, one per `custom`.
    pub const TELEMETRY_ADAPTER_CLASSES: &str = "TASKER_TELEMETRY_ADAPTER_CLASSES";
    /// Comma-separated sensitive-key patterns, replacing the defaults, or `none` to mask
    /// nothing. A value with no pattern in it (empty, only commas or blanks) is an error:
    /// masking fails closed.
    pub const FILTER_PARAMETERS: &str = "TASKER_FILTER_PARAMETERS";
    /// `auto`, `always` or `never`: colours of the console trace view.
    pub const CONSOLE_COLOR: &str = "TASKER_CONSOLE_COLOR";
    /// `compact` or `json`: how the default logger writes its lines.
    pub const LOG_FORMAT: &str = "TASKER_LOG_FORMAT";
}

impl Configuration {
    /// The defaults overridden by the `TASKER_*` variables that are set (see [`env`](mod@env)).
    ///
    /// Only parsing happens here; the result is validated when it is applied with `configure`.
    /// A variable whose value is not valid UTF-8 is an error, not "unset".
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_os_lookup(|name| std::env::var_os(name))
    }

    /// [`Configuration::from_env`] reading variables through `lookup`, for tests and embedding.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::from_os_lookup(|name| lookup(name).map(OsString::from))
    }

    /// [`Configuration::from_env`] reading variables through `lookup`, as the operating system
    /// stores them (so a value that is not UTF-8 can be tested).
    ///
    /// ```
    /// # #[cfg(unix)] {
    /// use std::os::unix::ffi::OsStringExt;
    /// use tasker::{ConfigError, Configuration};
    /// let error = Configuration::from_os_lookup(|name| {
    ///     (name == "TASKER_ENABLE_TELEMETRY").then(|| std::ffi::OsString::from_vec(b"on\xff".to_vec()))
    /// })
    /// .unwrap_err();
    /// assert_eq!(
    ///     error,
    ///     ConfigError::NotUnicode {
    ///         variable: "TASKER_ENABLE_TELEMETRY",
    ///         value: "on\u{fffd}".into()
    ///     }
    /// );
    /// # }
    /// ```
    pub fn from_os_lookup(lookup: impl Fn(&str) -> Option<OsString>) -> Result<Self, ConfigError> {
        let lookup = |variable: &'static str| -> Result<Option<String>, ConfigError> {
            match lookup(variable).map(OsString::into_string) {
                None => Ok(None),
                Some(Ok(value)) => Ok(Some(value)),
                Some(Err(raw)) => Err(ConfigError::NotUnicode {
                    variable,
                    value: raw.to_string_lossy().into_owned(),
                }),
            }
        };
        let mut config = Configuration::default();
        if let Some(value) = lookup(env::ENABLE_TELEMETRY)? {
            config.enable_telemetry = parse_bool(env::ENABLE_TELEMETRY, &value)?;
        }
        if let Some(value) = lookup(env::TELEMETRY_ADAPTERS)? {
            config.telemetry_adapters = split_list(&value)
                .map(|word| {
                    word.parse().map_err(|_| ConfigError::InvalidEnvironment {
                        variable: env::TELEMETRY_ADAPTERS,
                        value: value.clone(),
                        reason: format!(
                            "`{word}` is not a telemetry adapter; valid adapters are: {}",
                            TelemetryAdapter::WORDS
                        ),
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        if let Some(value) = lookup(env::TELEMETRY_ADAPTER_CLASSES)? {
            config.telemetry_adapter_classes = split_list(&value).map(String::from).collect();
        }
        if let Some(value) = lookup(env::FILTER_PARAMETERS)? {
            config.filter_parameters = parse_filter_parameters(&value)?;
        }
        if let Some(value) = lookup(env::CONSOLE_COLOR)? {
            config.console_color =
                value
                    .parse()
                    .map_err(|error: crate::adapters::UnknownColorChoice| {
                        ConfigError::InvalidEnvironment {
                            variable: env::CONSOLE_COLOR,
                            value: value.clone(),
                            reason: error.to_string(),
                        }
                    })?;
        }
        if let Some(value) = lookup(env::LOG_FORMAT)? {
            config.log_format =
                value
                    .parse()
                    .map_err(|error: crate::adapters::UnknownLogFormat| {
                        ConfigError::InvalidEnvironment {
                            variable: env::LOG_FORMAT,
                            value: value.clone(),
                            reason: error.to_string(),
                        }
                    })?;
        }
        Ok(config)
    }

    /// Checks the configuration and builds its adapters, and the propagator that goes with
    /// them (the OpenTelemetry adapter's), if any.
    fn build(&self) -> Result<(BuiltAdapters, Option<Box<dyn Propagator>>), ConfigError> {
        if self.filter_parameters.iter().any(String::is_empty) {
            return Err(ConfigError::EmptyFilterParameter);
        }
        let custom_entries = self
            .telemetry_adapters
            .iter()
            .filter(|adapter| **adapter == TelemetryAdapter::Custom)
            .count();
        if custom_entries != self.telemetry_adapter_classes.len() {
            return Err(ConfigError::AdapterClassCount {
                custom_entries,
                classes: self.telemetry_adapter_classes.len(),
                class_names: self.telemetry_adapter_classes.clone(),
            });
        }
        for (index, adapter) in self.telemetry_adapters.iter().enumerate() {
            if *adapter != TelemetryAdapter::Custom
                && self.telemetry_adapters[..index].contains(adapter)
            {
                return Err(ConfigError::DuplicateAdapter { adapter: *adapter });
            }
        }
        let mut classes = self.telemetry_adapter_classes.iter();
        let mut plan = Vec::with_capacity(self.telemetry_adapters.len());
        for adapter in &self.telemetry_adapters {
            match adapter {
                TelemetryAdapter::Default => plan.push(Planned::Logger),
                TelemetryAdapter::Console => plan.push(Planned::Console),
                #[cfg(feature = "opentelemetry")]
                TelemetryAdapter::OpenTelemetry => plan.push(Planned::OpenTelemetry),
                #[cfg(not(feature = "opentelemetry"))]
                TelemetryAdapter::OpenTelemetry => {
                    return Err(ConfigError::FeatureDisabled {
                        adapter: TelemetryAdapter::OpenTelemetry,
                        feature: "opentelemetry",
                    })
                }
                TelemetryAdapter::Custom => {
                    let name = classes.next().map(String::as_str).unwrap_or_default();
                    let registration =
                        find_adapter(name).ok_or_else(|| ConfigError::UnknownAdapterClass {
                            name: name.to_owned(),
                            registered: registered_adapters(),
                        })?;
                    plan.push(Planned::Custom(registration));
                }
            }
        }
        #[cfg_attr(not(feature = "opentelemetry"), allow(unused_mut))]
        let mut propagator: Option<Box<dyn Propagator>> = None;
        let adapters = plan
            .into_iter()
            .map(|planned| match planned {
                Planned::Logger => Ok((
                    Box::new(LoggerAdapter::new(self.log_format)) as Box<dyn Adapter>,
                    Isolated::new("adapter default".into()),
                )),
                Planned::Console => Ok((
                    Box::new(ConsoleAdapter::builder().color(self.console_color).build())
                        as Box<dyn Adapter>,
                    Isolated::new("adapter console".into()),
                )),
                #[cfg(feature = "opentelemetry")]
                Planned::OpenTelemetry => {
                    let (adapter, built) = crate::otel::build_adapter(self);
                    propagator = Some(Box::new(built));
                    Ok((adapter, Isolated::new("adapter opentelemetry".into())))
                }
                Planned::Custom(registration) => {
                    let built = std::panic::catch_unwind(|| registration.construct()).map_err(
                        |payload| ConfigError::AdapterConstructorPanicked {
                            name: registration.name().to_owned(),
                            message: panic_message(&*payload).to_owned(),
                        },
                    )?;
                    Ok((
                        built,
                        Isolated::new(format!("adapter {}", registration.name())),
                    ))
                }
            })
            .collect::<Result<BuiltAdapters, ConfigError>>()?;
        Ok((adapters, propagator))
    }
}

/// An adapter of the configuration, checked and about to be built.
enum Planned {
    Logger,
    Console,
    #[cfg(feature = "opentelemetry")]
    OpenTelemetry,
    Custom(&'static AdapterRegistration),
}

/// The adapters of a configuration, in order, each with its isolation.
type BuiltAdapters = Vec<(Box<dyn Adapter>, Isolated)>;

fn split_list(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

/// `TASKER_FILTER_PARAMETERS`: patterns, or `none`. Masking fails closed: a value that names
/// no pattern (a stray `,,` or an empty assignment) is refused rather than read as "mask
/// nothing".
fn parse_filter_parameters(value: &str) -> Result<Vec<String>, ConfigError> {
    let invalid = |reason: &str| ConfigError::InvalidEnvironment {
        variable: env::FILTER_PARAMETERS,
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    let patterns: Vec<String> = split_list(value).map(String::from).collect();
    let none = |pattern: &String| pattern.eq_ignore_ascii_case(NO_FILTERING);
    match patterns.as_slice() {
        [] => Err(invalid(
            "it names no pattern; write comma-separated fragments of sensitive keys, such as \
             `passw,secret,token` (a key containing one, ignoring case, is masked), or `none` to \
             mask nothing",
        )),
        [only] if none(only) => Ok(Vec::new()),
        _ if patterns.iter().any(none) => Err(invalid(
            "`none` turns masking off and cannot be combined with patterns; write either \
             `none` or the patterns",
        )),
        _ => Ok(patterns),
    }
}

/// The word of `TASKER_FILTER_PARAMETERS` that turns masking off.
const NO_FILTERING: &str = "none";

fn parse_bool(variable: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" | "" => Ok(false),
        _ => Err(ConfigError::InvalidEnvironment {
            variable,
            value: value.to_owned(),
            reason: "expected true or false (also 1/0, yes/no, on/off)".to_owned(),
        }),
    }
}

static APPLIED: Mutex<Option<Configuration>> = Mutex::new(None);
static FILTERS: ArcSwapOption<Vec<String>> = ArcSwapOption::const_empty();
/// Serializes `configure` calls. `APPLIED` itself is held only to read or swap the value, so the
/// closure and the adapters' constructors may call `configuration()` without deadlocking.
static CONFIGURING: Mutex<()> = Mutex::new(());

/// Changes the configuration: `change` receives the current one (the defaults at first); a valid
/// result replaces it atomically, an invalid one changes nothing and is returned as the error.
///
/// May be called again at any time; the adapter set is swapped atomically, so each event reaches
/// either the old adapters or the new ones.
pub fn configure(change: impl FnOnce(&mut Configuration)) -> Result<(), ConfigError> {
    let _configuring = CONFIGURING.lock().unwrap_or_else(|e| e.into_inner());
    let previous = configuration();
    let mut config = previous.clone();
    change(&mut config);
    let (adapters, propagator) = config.build()?;
    warn_if_silent(&previous, &config);
    let observer = (config.enable_telemetry && !adapters.is_empty())
        .then(|| Arc::new(TelemetryObserver::new(adapters)) as Arc<dyn bus::Observer>);
    // The OpenTelemetry adapter's propagator goes in and out with the adapter itself.
    let propagator = propagator.filter(|_| observer.is_some());
    let mut applied = APPLIED.lock().unwrap_or_else(|e| e.into_inner());
    FILTERS.store(Some(Arc::new(config.filter_parameters.clone())));
    let replaced = bus::set_telemetry(observer);
    propagation::set_configured_propagator(propagator);
    *applied = Some(config);
    drop(applied);
    // Its adapters get their last events from the collector before they are dropped, here.
    drop(replaced);
    Ok(())
}

/// Said when adapters are configured while telemetry is (and was) off.
static ADAPTERS_WITH_TELEMETRY_OFF: Notice = Notice::new();
/// Said when a `configure` drops the OpenTelemetry adapter while an `OtelGuard` exports.
#[cfg(feature = "opentelemetry")]
static OPENTELEMETRY_DROPPED: Notice = Notice::new();

/// Says, once per process, when a valid configuration cannot do what it asks for.
fn warn_if_silent(previous: &Configuration, config: &Configuration) {
    let default_adapters = [TelemetryAdapter::Default];
    // Turning telemetry off at run time is deliberate: only a configuration that was never on
    // while it names adapters is a mistake.
    if !config.enable_telemetry
        && !previous.enable_telemetry
        && (config.telemetry_adapters != default_adapters
            || !config.telemetry_adapter_classes.is_empty())
    {
        ADAPTERS_WITH_TELEMETRY_OFF.say(|| {
            format!(
                "telemetry_adapters lists {} but enable_telemetry is false, so no adapter \
                 receives any event; set `config.enable_telemetry = true` in `configure` (or \
                 TASKER_ENABLE_TELEMETRY=true with `Configuration::from_env`)",
                adapter_words(&config.telemetry_adapters)
            )
        });
    }
    #[cfg(feature = "opentelemetry")]
    {
        let otel = |config: &Configuration| {
            config.enable_telemetry
                && config
                    .telemetry_adapters
                    .contains(&TelemetryAdapter::OpenTelemetry)
        };
        if otel(previous)
            && !config
                .telemetry_adapters
                .contains(&TelemetryAdapter::OpenTelemetry)
            && crate::otel::guards_alive()
        {
            OPENTELEMETRY_DROPPED.say(|| {
                format!(
                    "this `configure` call removed the OpenTelemetry adapter (telemetry_adapters \
                     is now {}) while an OtelGuard (from `init_from_env`, e.g. in \
                     `telemetry::init()`) is alive, so no span or metric is exported any more; \
                     change the configuration `configure` hands you instead of replacing it, \
                     e.g. `config.telemetry_adapters.push(TelemetryAdapter::Default)`",
                    adapter_words(&config.telemetry_adapters)
                )
            });
        }
    }
}

/// The configuration in force.
pub fn configuration() -> Configuration {
    APPLIED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_default()
}

/// The sensitive-key patterns in force.
pub(crate) fn with_filter_parameters<R>(f: impl FnOnce(&[String]) -> R) -> R {
    match &*FILTERS.load() {
        Some(filters) => f(filters),
        None => f(&DEFAULT_FILTER_PARAMETERS.map(String::from)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    #[test]
    fn environment_sets_every_field() {
        let config = Configuration::from_lookup(lookup(&[
            ("TASKER_ENABLE_TELEMETRY", "true"),
            ("TASKER_TELEMETRY_ADAPTERS", "default, custom,custom"),
            ("TASKER_TELEMETRY_ADAPTER_CLASSES", "a::One,b::Two"),
            ("TASKER_FILTER_PARAMETERS", "iban,pin"),
        ]))
        .unwrap();
        assert!(config.enable_telemetry);
        assert_eq!(
            config.telemetry_adapters,
            [
                TelemetryAdapter::Default,
                TelemetryAdapter::Custom,
                TelemetryAdapter::Custom
            ]
        );
        assert_eq!(config.telemetry_adapter_classes, ["a::One", "b::Two"]);
        assert_eq!(config.filter_parameters, ["iban", "pin"]);
    }

    #[test]
    fn empty_environment_gives_the_defaults() {
        assert_eq!(
            Configuration::from_lookup(lookup(&[])).unwrap(),
            Configuration::default()
        );
    }

    #[test]
    fn unknown_adapter_word_names_the_variable_the_word_and_the_valid_words() {
        let error =
            Configuration::from_lookup(lookup(&[("TASKER_TELEMETRY_ADAPTERS", "default,jaeger")]))
                .unwrap_err();
        assert_eq!(
            error.to_string(),
            "TASKER_TELEMETRY_ADAPTERS=\"default,jaeger\" is not valid: `jaeger` is not a \
             telemetry adapter; valid adapters are: default, opentelemetry, console, custom"
        );
    }

    #[test]
    fn invalid_boolean_names_the_value_and_the_valid_ones() {
        let error = Configuration::from_lookup(lookup(&[("TASKER_ENABLE_TELEMETRY", "maybe")]))
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "TASKER_ENABLE_TELEMETRY=\"maybe\" is not valid: expected true or false (also 1/0, \
             yes/no, on/off)"
        );
    }

    #[test]
    fn adapter_words_parse_ignoring_case() {
        assert_eq!(
            " OpenTelemetry ".parse::<TelemetryAdapter>(),
            Ok(TelemetryAdapter::OpenTelemetry)
        );
        assert_eq!(
            "zipkin".parse::<TelemetryAdapter>().unwrap_err().to_string(),
            "`zipkin` is not a telemetry adapter; valid adapters are: default, opentelemetry, console, custom"
        );
    }

    #[test]
    fn class_count_mismatch_is_reported_with_both_counts() {
        let config = Configuration {
            telemetry_adapters: vec![TelemetryAdapter::Custom, TelemetryAdapter::Custom],
            telemetry_adapter_classes: vec!["a::One".into()],
            ..Configuration::default()
        };
        assert_eq!(
            config.build().unwrap_err().to_string(),
            "telemetry_adapters has 2 `custom` entries but telemetry_adapter_classes has 1 name \
             (`a::One`); give exactly one class name per `custom` entry, in order"
        );
    }

    #[cfg(not(feature = "opentelemetry"))]
    #[test]
    fn opentelemetry_without_the_feature_is_refused() {
        let config = Configuration {
            telemetry_adapters: vec![TelemetryAdapter::OpenTelemetry],
            ..Configuration::default()
        };
        assert_eq!(
            config.build().unwrap_err(),
            ConfigError::FeatureDisabled {
                adapter: TelemetryAdapter::OpenTelemetry,
                feature: "opentelemetry"
            }
        );
    }

    #[test]
    fn a_builtin_adapter_listed_twice_is_refused() {
        let config = Configuration {
            telemetry_adapters: vec![TelemetryAdapter::Default, TelemetryAdapter::Default],
            ..Configuration::default()
        };
        assert_eq!(
            config.build().unwrap_err(),
            ConfigError::DuplicateAdapter {
                adapter: TelemetryAdapter::Default
            }
        );
    }

    #[test]
    fn the_closure_may_read_the_configuration_in_force() {
        // On a thread of its own, so that a regression fails the test instead of hanging it.
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let result = configure(|config| {
                config.filter_parameters = configuration().filter_parameters;
            });
            let _ = sender.send(result);
        });
        let result = receiver
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("configure deadlocked on a call to configuration() in its closure");
        assert_eq!(result, Ok(()));
    }

    #[test]
    fn empty_filter_pattern_is_refused() {
        let config = Configuration {
            filter_parameters: vec!["token".into(), String::new()],
            ..Configuration::default()
        };
        assert_eq!(
            config.build().unwrap_err(),
            ConfigError::EmptyFilterParameter
        );
    }

    #[test]
    fn filter_parameters_with_no_pattern_are_refused_naming_the_value() {
        for value in ["", ",,", " , ,", "  "] {
            let error = Configuration::from_lookup(lookup(&[("TASKER_FILTER_PARAMETERS", value)]))
                .unwrap_err();
            assert_eq!(
                error.to_string(),
                format!(
                    "TASKER_FILTER_PARAMETERS={value:?} is not valid: it names no pattern; write \
                     comma-separated fragments of sensitive keys, such as `passw,secret,token` \
                     (a key containing one, ignoring case, is masked), or `none` to mask nothing"
                )
            );
        }
    }

    #[test]
    fn filter_parameters_none_alone_turns_masking_off() {
        for value in ["none", " NONE ", "none,"] {
            let config =
                Configuration::from_lookup(lookup(&[("TASKER_FILTER_PARAMETERS", value)])).unwrap();
            assert_eq!(config.filter_parameters, Vec::<String>::new(), "{value:?}");
        }
        let error =
            Configuration::from_lookup(lookup(&[("TASKER_FILTER_PARAMETERS", "token,none")]))
                .unwrap_err();
        assert_eq!(
            error.to_string(),
            "TASKER_FILTER_PARAMETERS=\"token,none\" is not valid: `none` turns masking off and \
             cannot be combined with patterns; write either `none` or the patterns"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_non_utf8_value_of_any_variable_is_an_error_naming_it() {
        use std::os::unix::ffi::OsStringExt;
        for variable in [
            env::ENABLE_TELEMETRY,
            env::TELEMETRY_ADAPTERS,
            env::TELEMETRY_ADAPTER_CLASSES,
            env::FILTER_PARAMETERS,
            env::CONSOLE_COLOR,
            env::LOG_FORMAT,
        ] {
            let error = Configuration::from_os_lookup(|name| {
                (name == variable).then(|| OsString::from_vec(b"tok\xffen".to_vec()))
            })
            .unwrap_err();
            assert_eq!(
                error,
                ConfigError::NotUnicode {
                    variable,
                    value: "tok\u{fffd}en".to_owned()
                }
            );
            assert_eq!(
                error.to_string(),
                format!(
                    "{variable} is not valid UTF-8 (its value, shown lossily: \"tok\u{fffd}en\"); \
                     Tasker's variables must be text"
                )
            );
        }
    }

    /// The process environment itself, in a child process (variables are process-global): the
    /// child is this test binary running [`from_env_in_child`] only.
    #[cfg(unix)]
    #[test]
    fn from_env_reports_a_non_utf8_variable_instead_of_ignoring_it() {
        use std::os::unix::ffi::OsStringExt;
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "config::tests::from_env_in_child", "--nocapture"])
            .env("TASKER_TEST_FROM_ENV_CHILD", "1")
            .env(
                env::FILTER_PARAMETERS,
                OsString::from_vec(b"passw,tok\xffen".to_vec()),
            )
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("the child test did not finish within 30 s");
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{stdout}");
        assert!(
            stdout.contains(
                "from_env: Err(ConfigError::NotUnicode: TASKER_FILTER_PARAMETERS is not valid \
                 UTF-8 (its value, shown lossily: \"passw,tok\u{fffd}en\"); Tasker's variables \
                 must be text)"
            ),
            "{stdout}"
        );
    }

    /// Half of the test above; does nothing unless that test started it.
    #[test]
    fn from_env_in_child() {
        if std::env::var_os("TASKER_TEST_FROM_ENV_CHILD").is_some() {
            println!("from_env: {:?}", Configuration::from_env().map(drop));
        }
    }
}
