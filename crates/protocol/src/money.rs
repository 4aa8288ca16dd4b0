//! Money: integer minor units of an ISO 4217 currency. Never a float; arithmetic is checked.
//!
//! A currency is accepted only when it is on the ISO 4217 list (the `iso_currency` crate's
//! copy of it) and names money: the "special" X codes (precious metals, SDR, units of
//! account, XTS for testing, XXX for no currency) are refused. Superseded codes are still
//! ISO 4217 codes and are accepted: an account opened in one keeps it, and whether a
//! transfer matches its account's currency is the reservation book's business.
//!
//! Every error is safe to send back and to log: a malformed code is never echoed, and a
//! well-formed one is three ASCII upper-case letters.

use std::fmt;

/// An ISO 4217 alphabetic currency code in use: three ASCII upper-case letters on the
/// ISO 4217 list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    pub const USD: Currency = Currency(*b"USD");

    /// Parses "USD"-style codes. Lower case is refused rather than fixed up, so that what is
    /// stored is exactly what the client sent.
    pub fn parse(code: &str) -> Result<Currency, MoneyError> {
        let bytes = code.as_bytes();
        if bytes.len() != 3 || !bytes.iter().all(u8::is_ascii_uppercase) {
            return Err(MoneyError::MalformedCurrency);
        }
        let is_money = iso_currency::Currency::from_code(code).is_some_and(|c| !c.is_special());
        if !is_money {
            return Err(MoneyError::UnknownCurrency(code.to_owned()));
        }
        Ok(Currency([bytes[0], bytes[1], bytes[2]]))
    }

    pub fn as_str(&self) -> &str {
        // The constructor only admits ASCII upper-case letters.
        std::str::from_utf8(&self.0).expect("currency code is ASCII")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A non-negative amount of money.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Money {
    minor_units: i64,
    currency: Currency,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MoneyError {
    /// Not three ASCII upper-case letters. The code is not kept: it may be anything, of
    /// any length.
    MalformedCurrency,
    /// Three upper-case letters, but not an ISO 4217 currency (or a special X code).
    UnknownCurrency(String),
    NotPositive(i64),
    Negative(i64),
    /// Above the largest amount one transfer may move.
    AboveMax {
        minor_units: i64,
        max_minor: i64,
    },
}

impl MoneyError {
    /// Whether the currency (rather than the number of minor units) is what to fix.
    pub fn is_about_currency(&self) -> bool {
        matches!(
            self,
            MoneyError::MalformedCurrency | MoneyError::UnknownCurrency(_)
        )
    }
}

impl fmt::Display for MoneyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MoneyError::MalformedCurrency => {
                f.write_str("is not an ISO 4217 code: use three upper-case letters such as \"USD\"")
            }
            MoneyError::UnknownCurrency(code) => write!(
                f,
                "{code:?} is not an ISO 4217 currency: use a code from the ISO 4217 list \
                 such as \"USD\" or \"EUR\""
            ),
            MoneyError::NotPositive(units) => {
                write!(f, "amount must be positive, got {units} minor units")
            }
            MoneyError::Negative(units) => {
                write!(f, "amount must not be negative, got {units} minor units")
            }
            MoneyError::AboveMax {
                minor_units,
                max_minor,
            } => write!(
                f,
                "amount must be at most {max_minor} minor units per transfer, got {minor_units}"
            ),
        }
    }
}

impl std::error::Error for MoneyError {}

impl Money {
    /// An amount: strictly positive.
    pub fn positive(minor_units: i64, currency: &str) -> Result<Money, MoneyError> {
        let currency = Currency::parse(currency)?;
        if minor_units <= 0 {
            return Err(MoneyError::NotPositive(minor_units));
        }
        Ok(Money {
            minor_units,
            currency,
        })
    }

    /// A transfer amount a client asks for: strictly positive and at most `max_minor`.
    pub fn transfer(minor_units: i64, currency: &str, max_minor: i64) -> Result<Money, MoneyError> {
        assert!(max_minor > 0, "the transfer maximum must be positive");
        let money = Money::positive(minor_units, currency)?;
        if minor_units > max_minor {
            return Err(MoneyError::AboveMax {
                minor_units,
                max_minor,
            });
        }
        Ok(money)
    }

    /// A balance: zero or more.
    pub fn non_negative(minor_units: i64, currency: &str) -> Result<Money, MoneyError> {
        let currency = Currency::parse(currency)?;
        if minor_units < 0 {
            return Err(MoneyError::Negative(minor_units));
        }
        Ok(Money {
            minor_units,
            currency,
        })
    }

    pub fn minor_units(&self) -> i64 {
        self.minor_units
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} minor units", self.currency, self.minor_units)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currencies_are_iso_4217_codes_of_money() {
        assert_eq!(Currency::parse("USD").unwrap(), Currency::USD);
        for good in ["EUR", "JPY", "CHF", "XOF", "XCG", "BOV", "HRK"] {
            assert_eq!(Currency::parse(good).unwrap().as_str(), good);
        }
        for malformed in ["usd", "US", "USDX", "", "U$D", "ÜSD", "US\u{0}", "\u{1b}[m"] {
            assert_eq!(
                Currency::parse(malformed),
                Err(MoneyError::MalformedCurrency),
                "{malformed:?}"
            );
        }
        // Well-formed, but no currency: made up, test, no currency, gold.
        for unknown in ["ABC", "ZZZ", "XTS", "XXX", "XAU"] {
            assert_eq!(
                Currency::parse(unknown),
                Err(MoneyError::UnknownCurrency(unknown.to_owned())),
                "{unknown:?}"
            );
        }
    }

    #[test]
    fn currency_errors_never_echo_a_malformed_code() {
        let long = "A".repeat(10_000);
        for bad in [long.as_str(), "US\nD", "usd"] {
            let err = Currency::parse(bad).unwrap_err();
            assert!(err.is_about_currency());
            let message = err.to_string();
            assert!(!message.contains(bad), "{message}");
            assert!(message.len() < 200, "{message}");
        }
        let unknown = Currency::parse("ABC").unwrap_err().to_string();
        assert!(unknown.contains("\"ABC\""), "{unknown}");
    }

    #[test]
    fn transfer_amounts_are_positive_balances_non_negative() {
        assert!(Money::positive(1, "USD").is_ok());
        assert_eq!(Money::positive(0, "USD"), Err(MoneyError::NotPositive(0)));
        assert_eq!(Money::positive(-5, "USD"), Err(MoneyError::NotPositive(-5)));
        assert!(Money::non_negative(0, "EUR").is_ok());
        assert_eq!(
            Money::non_negative(-1, "EUR"),
            Err(MoneyError::Negative(-1))
        );
        assert!(!MoneyError::NotPositive(0).is_about_currency());
    }

    #[test]
    fn transfer_amounts_are_bounded_by_the_maximum() {
        assert_eq!(
            Money::transfer(1_000, "USD", 1_000).unwrap().minor_units(),
            1_000
        );
        let above = Money::transfer(1_001, "USD", 1_000).unwrap_err();
        assert_eq!(
            above,
            MoneyError::AboveMax {
                minor_units: 1_001,
                max_minor: 1_000
            }
        );
        assert!(above.to_string().contains("at most 1000"), "{above}");
        assert_eq!(
            Money::transfer(i64::MAX, "USD", 1_000),
            Err(MoneyError::AboveMax {
                minor_units: i64::MAX,
                max_minor: 1_000
            })
        );
        assert_eq!(
            Money::transfer(0, "USD", 1_000),
            Err(MoneyError::NotPositive(0))
        );
        assert_eq!(
            Money::transfer(5, "usd", 1_000),
            Err(MoneyError::MalformedCurrency)
        );
    }
}
