//! What one input came to, measured, and the rules every input must keep whatever its
//! bytes: the allocation budget, and refusals that are INVALID_ARGUMENT with a message
//! (bad input gets a precise status saying what to fix, never another code).

use std::fmt;

use crate::alloc_budget::{self, Usage};
use crate::{ALLOCATION_BYTES_MAX, Target};

/// The end of one input's way through a server's front door.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Longer than [`crate::MESSAGE_BYTES_MAX`]: the server refuses it before decoding.
    TooLarge,
    /// Not an encoding of the request message.
    DecodeError,
    /// Decoded and valid: the service would go on to its store.
    Valid,
    /// Decoded and refused by validation with this code and a message this long.
    Refused {
        code: tonic::Code,
        message_bytes: usize,
    },
}

impl Outcome {
    /// A stable name for tallies: `too_large`, `decode_error`, `valid`, or the refusal's
    /// code (`InvalidArgument`).
    pub fn label(&self) -> String {
        match self {
            Outcome::TooLarge => "too_large".into(),
            Outcome::DecodeError => "decode_error".into(),
            Outcome::Valid => "valid".into(),
            Outcome::Refused { code, .. } => format!("{code:?}"),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Refused {
                code,
                message_bytes,
            } => write!(f, "refused {code:?} ({message_bytes}-byte message)"),
            other => f.write_str(&other.label()),
        }
    }
}

/// One input's outcome and what it allocated on the way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Execution {
    pub outcome: Outcome,
    pub usage: Usage,
}

impl Execution {
    /// The rule this execution broke, if any.
    pub fn violation(&self) -> Option<String> {
        if self.usage.peak_bytes > ALLOCATION_BYTES_MAX
            || self.usage.largest_bytes > ALLOCATION_BYTES_MAX
        {
            return Some(format!(
                "allocated a peak of {} bytes (largest single allocation {} bytes); the \
                 budget for one request is {ALLOCATION_BYTES_MAX} bytes",
                self.usage.peak_bytes, self.usage.largest_bytes
            ));
        }
        match self.outcome {
            Outcome::Refused { code, .. } if code != tonic::Code::InvalidArgument => Some(format!(
                "validation refused with {code:?}: bad input must be INVALID_ARGUMENT"
            )),
            Outcome::Refused {
                message_bytes: 0, ..
            } => Some("validation refused without a message saying what to fix".into()),
            _ => None,
        }
    }
}

/// Runs `data` through `target`'s decode and validation, measuring its allocations.
pub fn execute(target: Target, data: &[u8]) -> Execution {
    let (outcome, usage) = alloc_budget::measure(|| target.check(data));
    Execution { outcome, usage }
}
