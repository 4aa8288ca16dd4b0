//! Calling production code from a model: an assertion that fires inside the protocol core
//! becomes a recorded finding (a state the checker reports), not a crashed checker.

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    /// Set while production code runs under [`run`]: its panics are captured, not printed.
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` (a call into the protocol core) and returns the panic message if one of its
/// assertions fired. The panic hook stays quiet for such panics only; every other panic
/// (in tests, in the checker) is printed as usual.
pub fn run<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    static QUIET_HOOK: Once = Once::new();
    QUIET_HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !CAPTURING.with(Cell::get) {
                previous(info);
            }
        }));
    });
    let was_capturing = CAPTURING.with(|c| c.replace(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    CAPTURING.with(|c| c.set(was_capturing));
    result.map_err(|payload| {
        if let Some(text) = payload.downcast_ref::<&str>() {
            (*text).to_owned()
        } else if let Some(text) = payload.downcast_ref::<String>() {
            text.clone()
        } else {
            "a panic without a message".to_owned()
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn captures_assertions_and_passes_values_through() {
        assert_eq!(super::run(|| 7), Ok(7));
        let reserved_minor = std::hint::black_box(0);
        let err = super::run(|| assert!(reserved_minor >= 1, "money from nowhere")).unwrap_err();
        assert_eq!(err, "money from nowhere");
        let err = super::run(|| panic!("{} minor units", 3)).unwrap_err();
        assert_eq!(err, "3 minor units");
    }
}
