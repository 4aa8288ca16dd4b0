//! Nothing to link: this crate's tests (`tests/manifests.rs`) read `deploy/` and the
//! services' own settings types, and fail when a manifest names a key, an environment
//! variable, a port, a probe or a mount that the binaries do not use.
