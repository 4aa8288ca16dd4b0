//! Where the built service binaries are: the directory of the running executable
//! (`target/<profile>/`), or its parent when the executable is a test in
//! `target/<profile>/deps/`.

use std::path::{Path, PathBuf};

use crate::service::Service;

/// The directory holding the four service binaries next to the running executable.
pub fn default_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the running executable");
    let dir = exe
        .parent()
        .expect("the executable lives in a directory")
        .to_path_buf();
    if dir.file_name().is_some_and(|name| name == "deps") {
        dir.parent().map(Path::to_path_buf).unwrap_or(dir)
    } else {
        dir
    }
}

/// The path of `service`'s binary in `dir`; panics with how to build it when missing.
pub fn locate(dir: &Path, service: Service) -> PathBuf {
    let path = dir.join(service.binary_name());
    assert!(
        path.is_file(),
        "binary {} not found at {}: run `cargo build --bins` (make test does it)",
        service.binary_name(),
        path.display()
    );
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_executable_finds_the_profile_directory() {
        let dir = default_dir();
        assert_ne!(dir.file_name().unwrap(), "deps", "{}", dir.display());
        assert!(dir.join("deps").is_dir(), "{}", dir.display());
    }

    #[test]
    #[should_panic(expected = "run `cargo build --bins`")]
    fn a_missing_binary_says_how_to_build_it() {
        locate(Path::new("/nonexistent"), Service::Gateway);
    }
}
