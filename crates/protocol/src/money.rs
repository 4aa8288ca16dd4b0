//! Money: integer minor units of an ISO 4217 currency. Never a float; arithmetic is checked.

use std::fmt;

/// An ISO 4217 alphabetic currency code: exactly three ASCII upper-case letters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    pub const USD: Currency = Currency(*b"USD");

    /// Parses "USD"-style codes. Lower case is refused rather than fixed up, so that what is
    /// stored is exactly what the client sent.
    pub fn parse(code: &str) -> Result<Currency, MoneyError> {
        let bytes = code.as_bytes();
        if bytes.len() != 3 || !bytes.iter().all(u8::is_ascii_uppercase) {
            return Err(MoneyError::InvalidCurrency(code.to_owned()));
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
    InvalidCurrency(String),
    NotPositive(i64),
    Negative(i64),
}

impl fmt::Display for MoneyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MoneyError::InvalidCurrency(code) => write!(
                f,
                "currency {code:?} is not an ISO 4217 code: use three upper-case letters such as \"USD\""
            ),
            MoneyError::NotPositive(units) => {
                write!(f, "amount must be positive, got {units} minor units")
            }
            MoneyError::Negative(units) => {
                write!(f, "amount must not be negative, got {units} minor units")
            }
        }
    }
}

impl std::error::Error for MoneyError {}

impl Money {
    /// A transfer amount: strictly positive.
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
    fn currency_must_be_three_upper_case_letters() {
        assert_eq!(Currency::parse("USD").unwrap(), Currency::USD);
        for bad in ["usd", "US", "USDX", "", "U$D", "ÜSD"] {
            assert!(Currency::parse(bad).is_err(), "{bad:?} accepted");
        }
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
    }
}
