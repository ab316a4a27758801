//! The daemon's configuration from three places, in this order of precedence: flags, then
//! environment variables, then a TOML file (`--config FILE`, RROCKERD_CONFIG) whose keys
//! are the flags' long names (`listen = "127.0.0.1:50051"`, `max-tasks = 100`,
//! `no-spawner = true`; `_` may stand for `-`); then the defaults. `--print-config` prints
//! the result as such a file.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};

use crate::config::Config;
use crate::startup_error::StartupError;

/// Flags that are not settings: never read from the file nor printed.
const NOT_SETTINGS: [&str; 4] = ["config", "print-config", "help", "version"];

/// Parses the configuration from `args` (argv, program name first), the environment and the
/// file `--config` names. Bad flags exit the way clap does.
pub fn load(args: Vec<OsString>) -> Result<Config, StartupError> {
    let matches = matches(args)?;
    Ok(Config::from_arg_matches(&matches).unwrap_or_else(|error| error.exit()))
}

/// Flags and environment first; then, if a file is named, again with the file's settings
/// as flags before the command line's.
fn matches(args: Vec<OsString>) -> Result<clap::ArgMatches, StartupError> {
    let first = Config::command().get_matches_from(args.clone());
    let Some(path) = first.get_one::<PathBuf>("config").cloned() else { return Ok(first) };
    let mut merged = vec![args.first().cloned().unwrap_or_else(|| "rrockerd".into())];
    merged.extend(file_flags(&path, &first)?);
    merged.extend(args.into_iter().skip(1));
    Ok(Config::command().get_matches_from(merged))
}

/// The file's settings as flags, leaving out those the command line or the environment set.
fn file_flags(path: &Path, given: &clap::ArgMatches) -> Result<Vec<OsString>, StartupError> {
    let invalid = |reason: String| StartupError::Config(format!("{}: {reason}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|error| invalid(error.to_string()))?;
    let table: toml::Table =
        text.parse().map_err(|error: toml::de::Error| invalid(error.message().to_owned()))?;
    let command = Config::command();
    let mut flags = Vec::new();
    for (key, value) in table {
        let long = key.replace('_', "-");
        let arg = command
            .get_arguments()
            .find(|arg| arg.get_long() == Some(long.as_str()))
            .filter(|_| !NOT_SETTINGS.contains(&long.as_str()))
            .ok_or_else(|| invalid(format!("unknown setting '{key}'")))?;
        let id = arg.get_id().as_str();
        if matches!(
            given.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        match value {
            toml::Value::Boolean(true) => flags.push(format!("--{long}").into()),
            toml::Value::Boolean(false) => {}
            // `--flag=value`, so that a value may start with a dash (a negative number).
            toml::Value::String(text) => flags.push(format!("--{long}={text}").into()),
            toml::Value::Integer(number) => flags.push(format!("--{long}={number}").into()),
            other => {
                return Err(invalid(format!(
                    "'{key}' must be a string, a number or a boolean, not {other}"
                )));
            }
        }
    }
    Ok(flags)
}

/// The effective configuration as a TOML file `--config` reads back: every setting with
/// its value (the defaults included); settings without a value are left out.
pub fn print(args: Vec<OsString>) -> Result<String, StartupError> {
    let matches = matches(args)?;
    let mut table = toml::Table::new();
    for arg in Config::command().get_arguments() {
        let Some(long) = arg.get_long().filter(|long| !NOT_SETTINGS.contains(long)) else {
            continue;
        };
        let id = arg.get_id().as_str();
        let value = if arg.get_action().takes_values() {
            match matches.get_raw(id).and_then(|mut values| values.next()) {
                Some(raw) => {
                    let text = raw.to_string_lossy();
                    text.parse().map_or_else(
                        |_| toml::Value::String(text.into_owned()),
                        toml::Value::Integer,
                    )
                }
                None => continue,
            }
        } else {
            toml::Value::Boolean(matches.get_flag(id))
        };
        table.insert(long.to_owned(), value);
    }
    Ok(toml::to_string(&table).unwrap_or_default())
}
