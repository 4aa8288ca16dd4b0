//! The external institution's settings: the keys every participant has, nothing else,
//! with the institution's defaults. Every key has a default, so the service starts
//! without a file.

use participant::config::{CommonSettings, Defaults};

/// The institution's defaults (`make run` listens there too).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstitutionDefaults;

impl Defaults for InstitutionDefaults {
    const SERVICE_NAME: &'static str = "mock-external-institution";
    const LISTEN_ADDR: &'static str = "127.0.0.1:50052";
    const DATABASE_URL: &'static str = "sqlite://data/external-institution.db";
}

pub type Settings = CommonSettings<InstitutionDefaults>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Loading without a file gives the defaults: `participant::config`'s tests.
    #[test]
    fn the_defaults_are_the_institutions_and_valid() {
        let defaults = Settings::default();
        assert_eq!(defaults.listen_addr, "127.0.0.1:50052");
        assert_eq!(
            defaults.database_url,
            "sqlite://data/external-institution.db"
        );
        defaults.validate().unwrap();
    }

    #[test]
    fn the_demo_configuration_loads() {
        let path = participant::config::demo_file("external-institution.toml");
        let demo: Settings = service_kit::config::load_with_env(Some(&path), Vec::new()).unwrap();
        demo.validate().unwrap();
        let funded = |id: &str| {
            demo.accounts
                .iter()
                .any(|a| a.account_id == id && a.opening_balance_minor == 100_000)
        };
        assert_eq!(demo.accounts.len(), 2);
        assert!(
            funded("ext-alice") && funded("ext-bob"),
            "{:?}",
            demo.accounts
        );
        let defaults = Settings::default();
        assert_eq!(
            (demo.listen_addr, demo.database_url),
            (defaults.listen_addr, defaults.database_url)
        );
    }
}
