//! A private PostgreSQL server for the chaos mode: `initdb` into a temporary directory,
//! `pg_ctl start` on a free port of its own (Unix socket in the same directory), SIGKILL-
//! like stops (`pg_ctl stop -m immediate`: no checkpoint, crash recovery on the next start)
//! and restarts. It never touches the machine's server: every command names this data
//! directory. The binaries are found under /usr/lib/postgresql/<version>/bin (newest
//! first). PostgreSQL refuses to run as root: as root, the directory is given to the
//! `postgres` user and the commands run through `runuser -u postgres`.

use std::path::{Path, PathBuf};
use std::process::Command;

use nix::unistd::{Uid, User};

/// Where Debian puts the server binaries.
const BIN_ROOT: &str = "/usr/lib/postgresql";

pub struct PrivatePostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    /// Run the commands as this user (when the tool runs as root).
    run_as: Option<String>,
    running: bool,
}

/// The newest `<root>/<version>/bin` that holds `initdb` and `pg_ctl`.
pub fn find_bin(root: &Path) -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.split('.').next()?.parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

impl PrivatePostgres {
    /// initdb and start on a free port.
    pub fn start() -> Result<PrivatePostgres, String> {
        let bin = find_bin(Path::new(BIN_ROOT))
            .ok_or_else(|| format!("no initdb/pg_ctl under {BIN_ROOT}/*/bin"))?;
        let dir = tempfile::Builder::new()
            .prefix("banktransfer-chaos-pg-")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?;
        let run_as = if Uid::effective().is_root() {
            let user = User::from_name("postgres")
                .ok()
                .flatten()
                .ok_or("running as root and there is no postgres user to run PostgreSQL as")?;
            std::os::unix::fs::chown(dir.path(), Some(user.uid.as_raw()), Some(user.gid.as_raw()))
                .map_err(|e| format!("chown {}: {e}", dir.path().display()))?;
            Some("postgres".to_owned())
        } else {
            None
        };
        let mut pg = PrivatePostgres {
            bin,
            port: banktransfer_e2e::ports::free_port(),
            dir,
            run_as,
            running: false,
        };
        let data = pg.data_dir();
        pg.command(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-instructions",
            ],
        )?;
        pg.start_server()?;
        Ok(pg)
    }

    fn data_dir(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// The admin URL the harness creates its databases through.
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    fn command(&self, tool: &str, args: &[&str]) -> Result<(), String> {
        let program = self.bin.join(tool);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&program);
                c
            }
            None => Command::new(&program),
        };
        let output = command
            .args(args)
            .output()
            .map_err(|e| format!("{tool}: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{tool} {args:?}: {}\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    /// `pg_ctl start`, waiting until it accepts connections.
    pub fn start_server(&mut self) -> Result<(), String> {
        let data = self.data_dir();
        let log = self.dir.path().join("server.log").display().to_string();
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        self.command(
            "pg_ctl",
            &[
                "start", "-D", &data, "-l", &log, "-w", "-t", "60", "-o", &options,
            ],
        )?;
        self.running = true;
        Ok(())
    }

    /// `pg_ctl stop -m immediate`: every server process exits at once, as in a crash.
    pub fn kill(&mut self) -> Result<(), String> {
        let data = self.data_dir();
        self.command("pg_ctl", &["stop", "-D", &data, "-m", "immediate", "-w"])?;
        self.running = false;
        Ok(())
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.running {
            let _ = self.kill();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_version_with_both_tools_is_chosen() {
        let root = tempfile::tempdir().unwrap();
        for (version, tools) in [("14", true), ("16", true), ("17", false), ("notes", true)] {
            let bin = root.path().join(version).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            if tools {
                std::fs::write(bin.join("initdb"), "").unwrap();
                std::fs::write(bin.join("pg_ctl"), "").unwrap();
            }
        }
        assert_eq!(
            find_bin(root.path()),
            Some(root.path().join("16").join("bin"))
        );
        assert_eq!(find_bin(&root.path().join("missing")), None);
    }
}
