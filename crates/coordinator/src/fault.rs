//! TEST-ONLY fault points for the end-to-end crash tests: the driver pauses at a named
//! point of the protocol and logs it, so a test can SIGKILL the process exactly there
//! and check that the reconciler finishes the transfer. Off unless `[fault_points]
//! pause_at` names a point; never set it in production.

use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultPoint {
    /// Both reserves answered; the decision is not recorded yet.
    AfterReserve,
    /// The decision is recorded; no confirm or cancel has been sent.
    AfterDecision,
}

impl FaultPoint {
    pub fn as_str(self) -> &'static str {
        match self {
            FaultPoint::AfterReserve => "after_reserve",
            FaultPoint::AfterDecision => "after_decision",
        }
    }

    pub fn parse(name: &str) -> Option<FaultPoint> {
        [FaultPoint::AfterReserve, FaultPoint::AfterDecision]
            .into_iter()
            .find(|p| p.as_str() == name)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultPoints {
    pause_at: Option<FaultPoint>,
    pause: Duration,
}

impl FaultPoints {
    pub fn off() -> FaultPoints {
        FaultPoints::default()
    }

    pub fn is_off(&self) -> bool {
        self.pause_at.is_none()
    }

    /// `pause_at` is "" (off), "after_reserve" or "after_decision".
    pub fn parse(pause_at: &str, pause_ms: u64) -> Result<FaultPoints, String> {
        if pause_at.is_empty() {
            return Ok(FaultPoints::off());
        }
        let point = FaultPoint::parse(pause_at).ok_or_else(|| {
            format!(
                "fault_points.pause_at {pause_at:?}: use \"\", \"after_reserve\" or \"after_decision\""
            )
        })?;
        Ok(FaultPoints {
            pause_at: Some(point),
            pause: Duration::from_millis(pause_ms),
        })
    }

    /// Pauses here when this is the configured point.
    pub async fn reached(&self, point: FaultPoint) {
        if self.pause_at == Some(point) {
            // The exact text is what the crash tests wait for before they kill us.
            tracing::warn!(pause = ?self.pause, "fault point reached: {}", point.as_str());
            tokio::time::sleep(self.pause).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_points_are_accepted() {
        assert_eq!(FaultPoints::parse("", 10).unwrap(), FaultPoints::off());
        assert_eq!(
            FaultPoints::parse("after_decision", 10).unwrap().pause_at,
            Some(FaultPoint::AfterDecision)
        );
        assert_eq!(
            FaultPoints::parse("after_reserve", 10).unwrap().pause_at,
            Some(FaultPoint::AfterReserve)
        );
        let err = FaultPoints::parse("after_confirm", 10).unwrap_err();
        assert!(err.contains("pause_at"), "{err}");
    }
}
