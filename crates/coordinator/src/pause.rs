//! TEST-ONLY pause points for the end-to-end crash tests: the driver pauses at a named
//! point of the protocol and logs it, so a test can SIGKILL the process exactly there
//! and check that the reconciler finishes the transfer.
//!
//! The code exists only in builds with the `pause-points` cargo feature (the e2e build:
//! `make build`); without it [`PausePoints`] is an empty type whose [`PausePoints::reached`]
//! does nothing, so a release gateway cannot be paused by any setting. With the feature,
//! the point is named by the environment, never by the configuration file:
//! `BANKTRANSFER_TEST_PAUSE_AT` ("after_reserve" or "after_decision") and
//! `BANKTRANSFER_TEST_PAUSE_MS` (default 60000).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PausePoint {
    /// Both reserves answered; the decision is not recorded yet.
    AfterReserve,
    /// The decision is recorded; no confirm or cancel has been sent.
    AfterDecision,
}

/// Where this process pauses: nowhere, unless built with `pause-points` and told to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PausePoints {
    #[cfg(feature = "pause-points")]
    pause_at: Option<PausePoint>,
    #[cfg(feature = "pause-points")]
    pause: std::time::Duration,
}

impl PausePoints {
    pub fn off() -> PausePoints {
        PausePoints::default()
    }

    /// The pause point the environment names (see the module docs); always off in a
    /// build without the `pause-points` feature.
    pub fn from_env() -> Result<PausePoints, String> {
        #[cfg(feature = "pause-points")]
        {
            let pause_at = std::env::var("BANKTRANSFER_TEST_PAUSE_AT").unwrap_or_default();
            let pause_ms = match std::env::var("BANKTRANSFER_TEST_PAUSE_MS") {
                Ok(ms) => ms
                    .parse()
                    .map_err(|_| format!("BANKTRANSFER_TEST_PAUSE_MS {ms:?}: use milliseconds"))?,
                Err(_) => 60_000,
            };
            PausePoints::parse(&pause_at, pause_ms)
        }
        #[cfg(not(feature = "pause-points"))]
        Ok(PausePoints::off())
    }

    pub fn is_off(&self) -> bool {
        #[cfg(feature = "pause-points")]
        return self.pause_at.is_none();
        #[cfg(not(feature = "pause-points"))]
        true
    }

    /// Pauses here when this is the chosen point.
    pub async fn reached(&self, point: PausePoint) {
        #[cfg(feature = "pause-points")]
        if self.pause_at == Some(point) {
            // The exact text is what the crash tests wait for before they kill us.
            tracing::warn!(pause = ?self.pause, "pause point reached: {}", point.as_str());
            tokio::time::sleep(self.pause).await;
        }
        #[cfg(not(feature = "pause-points"))]
        let _ = point;
    }
}

#[cfg(feature = "pause-points")]
impl PausePoint {
    pub fn as_str(self) -> &'static str {
        match self {
            PausePoint::AfterReserve => "after_reserve",
            PausePoint::AfterDecision => "after_decision",
        }
    }

    pub fn parse(name: &str) -> Option<PausePoint> {
        [PausePoint::AfterReserve, PausePoint::AfterDecision]
            .into_iter()
            .find(|p| p.as_str() == name)
    }
}

#[cfg(feature = "pause-points")]
impl PausePoints {
    /// `pause_at` is "" (off), "after_reserve" or "after_decision".
    pub fn parse(pause_at: &str, pause_ms: u64) -> Result<PausePoints, String> {
        if pause_at.is_empty() {
            return Ok(PausePoints::off());
        }
        let point = PausePoint::parse(pause_at).ok_or_else(|| {
            format!(
                "BANKTRANSFER_TEST_PAUSE_AT {pause_at:?}: use \"\", \"after_reserve\" or \"after_decision\""
            )
        })?;
        Ok(PausePoints {
            pause_at: Some(point),
            pause: std::time::Duration::from_millis(pause_ms),
        })
    }
}

#[cfg(all(test, feature = "pause-points"))]
mod tests {
    use super::*;

    #[test]
    fn only_known_points_are_accepted() {
        assert_eq!(PausePoints::parse("", 10).unwrap(), PausePoints::off());
        assert_eq!(
            PausePoints::parse("after_decision", 10).unwrap().pause_at,
            Some(PausePoint::AfterDecision)
        );
        assert_eq!(
            PausePoints::parse("after_reserve", 10).unwrap().pause_at,
            Some(PausePoint::AfterReserve)
        );
        let err = PausePoints::parse("after_confirm", 10).unwrap_err();
        assert!(err.contains("PAUSE_AT"), "{err}");
    }
}
