//! One service running as a child process: started with `--config <file>`, stdout and
//! stderr appended to its log file, `RUST_LOG=info`; signalled by pid.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use crate::logs;

#[derive(Debug)]
pub struct ServiceProcess {
    child: Child,
    log_path: PathBuf,
    /// Size of the log when this process started: its own lines come after.
    log_offset: u64,
}

impl ServiceProcess {
    /// Starts `binary --config <config>`, appending its output to `log_path`.
    pub fn spawn(
        binary: &Path,
        config: &Path,
        environment: &[(String, String)],
        log_path: &Path,
    ) -> std::io::Result<ServiceProcess> {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)?;
        writeln!(
            log,
            "===== e2e harness: starting {} --config {} =====",
            binary.display(),
            config.display()
        )?;
        let log_offset = logs::len(log_path);
        let stderr = log.try_clone()?;
        let mut command = Command::new(binary);
        command
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr))
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1");
        // Only the configuration file (and `environment`) configures the service: neither
        // our variables nor a developer's OpenTelemetry ones leak in.
        for (name, _) in std::env::vars_os() {
            if name.to_str().is_some_and(|n| {
                n.starts_with(service_kit::config::ENV_PREFIX) || n.starts_with("OTEL_")
            }) {
                command.env_remove(name);
            }
        }
        command.envs(environment.iter().map(|(k, v)| (k, v)));
        let child = command.spawn()?;
        Ok(ServiceProcess {
            child,
            log_path: log_path.to_path_buf(),
            log_offset,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub fn log_offset(&self) -> u64 {
        self.log_offset
    }

    /// What this process wrote so far.
    pub fn own_log(&self) -> String {
        logs::read_from(&self.log_path, self.log_offset)
    }

    /// `Some(status)` once the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn signal(&self, sig: Signal) -> nix::Result<()> {
        let pid = i32::try_from(self.child.id()).expect("pid fits in i32");
        signal::kill(Pid::from_raw(pid), sig)
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(status) = self.try_wait() {
            return status;
        }
        let _ = self.signal(Signal::SIGKILL);
        self.child.wait().expect("wait for a killed child")
    }

    /// Waits up to `timeout` for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if started.elapsed() >= timeout {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
