//! Configuration: a TOML file, then environment overrides, deserialized into the
//! service's own typed settings.
//!
//! An override names a key path with double underscores after the `BANKTRANSFER__`
//! prefix: `BANKTRANSFER__LISTEN_ADDR=0.0.0.0:50051` sets `listen_addr`, and
//! `BANKTRANSFER__BUDGET__TOTAL_MS=150` sets `total_ms` in table `[budget]`. Values are
//! read as TOML scalars when they parse as one (numbers, booleans), else as strings.

use std::path::Path;

use serde::de::DeserializeOwned;

pub const ENV_PREFIX: &str = "BANKTRANSFER__";

/// Every message is shown with the passwords of the URLs it quotes redacted
/// ([`crate::db::redact_passwords`]): a parse error quotes the offending line, a type
/// error the offending value, and either may be a `database_url`. The TOML parser's error
/// is kept as text only, never as a source that would be printed unredacted, and `Debug`
/// shows the redacted message too.
#[derive(thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "configuration file {path} is not valid TOML: {}",
        crate::db::redact_passwords(message)
    )]
    Parse { path: String, message: String },
    #[error("invalid configuration: {}", crate::db::redact_passwords(.0))]
    Invalid(String),
}

impl std::fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConfigError({:?})", self.to_string())
    }
}

/// Loads `path` (optional: defaults apply without a file) and the process environment.
pub fn load<T: DeserializeOwned>(path: Option<&Path>) -> Result<T, ConfigError> {
    load_with_env(path, std::env::vars())
}

/// As [`load`], with the environment given explicitly (for tests).
pub fn load_with_env<T: DeserializeOwned>(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, ConfigError> {
    let mut root = match path {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.display().to_string(),
                source,
            })?;
            text.parse::<toml::Table>()
                .map_err(|source| ConfigError::Parse {
                    path: path.display().to_string(),
                    message: source.to_string(),
                })?
        }
        None => toml::Table::new(),
    };
    for (name, value) in env {
        let Some(key_path) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let keys: Vec<String> = key_path.split("__").map(str::to_ascii_lowercase).collect();
        set_path(&mut root, &keys, scalar(&value))
            .map_err(|why| ConfigError::Invalid(format!("environment variable {name}: {why}")))?;
    }
    T::deserialize(toml::Value::Table(root)).map_err(|e| ConfigError::Invalid(e.to_string()))
}

fn scalar(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .filter(|v| !v.is_table())
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

fn set_path(table: &mut toml::Table, keys: &[String], value: toml::Value) -> Result<(), String> {
    match keys {
        [] => Err("empty key".into()),
        [last] => {
            table.insert(last.clone(), value);
            Ok(())
        }
        [first, rest @ ..] => {
            let entry = table
                .entry(first.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(inner) => set_path(inner, rest, value),
                _ => Err(format!("{first} is not a table")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Settings {
        listen_addr: String,
        #[serde(default)]
        budget: Budget,
    }

    #[derive(serde::Deserialize, Debug, PartialEq, Default)]
    struct Budget {
        #[serde(default)]
        total_ms: u64,
    }

    #[test]
    fn environment_overrides_the_file_with_typed_values() {
        let dir = std::env::temp_dir().join(format!("cfg-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("a.toml");
        std::fs::write(
            &file,
            "listen_addr = \"127.0.0.1:1\"\n[budget]\ntotal_ms = 200\n",
        )
        .unwrap();
        let env = vec![
            (
                "BANKTRANSFER__BUDGET__TOTAL_MS".to_string(),
                "150".to_string(),
            ),
            ("UNRELATED".to_string(), "x".to_string()),
        ];
        let s: Settings = load_with_env(Some(&file), env).unwrap();
        assert_eq!(s.listen_addr, "127.0.0.1:1");
        assert_eq!(s.budget.total_ms, 150);
        let env = vec![(
            "BANKTRANSFER__LISTEN_ADDR".to_string(),
            "0.0.0.0:9".to_string(),
        )];
        let s: Settings = load_with_env(Some(&file), env).unwrap();
        assert_eq!(s.listen_addr, "0.0.0.0:9");
    }

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)] // only deserialized
    struct WithDatabase {
        database_url: String,
        connections_max: u32,
    }

    #[test]
    fn errors_never_show_a_database_password() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        // A missing quote: the parser's message quotes the line.
        std::fs::write(
            &file,
            "database_url = \"postgres://app:hunter2@db/x\nconnections_max = 1\n",
        )
        .unwrap();
        let err = load_with_env::<WithDatabase>(Some(&file), vec![]).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
        // A value of the wrong type: serde's message quotes the value.
        std::fs::write(
            &file,
            "database_url = \"x\"\nconnections_max = \"postgres://app:hunter2@db/x\"\n",
        )
        .unwrap();
        let typed = load_with_env::<WithDatabase>(Some(&file), vec![]).unwrap_err();
        // And one from the environment.
        let env = vec![(
            "BANKTRANSFER__CONNECTIONS_MAX".to_string(),
            "postgres://app:hunter2@db/x".to_string(),
        )];
        let from_env = load_with_env::<WithDatabase>(None, env).unwrap_err();
        for err in [err, typed, from_env] {
            // `main` prints the message and its sources; `{:?}` shows up in logs.
            let shown = format!("{err} / {err:?} / {:?}", std::error::Error::source(&err));
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("postgres://app:***@db/x"), "{shown}");
            assert!(std::error::Error::source(&err).is_none(), "{shown}");
        }
    }

    #[test]
    fn errors_name_the_culprit() {
        let err =
            load_with_env::<Settings>(Some(Path::new("/nonexistent/x.toml")), vec![]).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/x.toml"));
        let err = load_with_env::<Settings>(None, vec![]).unwrap_err();
        assert!(err.to_string().contains("listen_addr"), "{err}");
    }
}
