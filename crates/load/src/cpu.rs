//! CPU time of the system's processes, from `/proc/<pid>/stat` (utime + stime, in clock
//! ticks). Our four services are counted by pid; PostgreSQL as the sum over every process
//! named `postgres` owned by the `postgres` user (the server and its backends; a backend
//! that exits inside the window takes its ticks with it, which pooled connections make
//! rare). On SQLite the database lives inside our processes and is counted with them.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;

use serde::Serialize;

/// What to sample.
#[derive(Clone, Debug, Default)]
pub struct CpuProbe {
    /// Name and pid of each process of ours.
    pub processes: Vec<(String, u32)>,
    /// The uid whose `postgres` processes are summed, when the database is PostgreSQL.
    pub postgres_uid: Option<u32>,
}

/// Ticks per process at one instant.
#[derive(Clone, Debug, Default)]
pub struct CpuSample {
    pub ticks: BTreeMap<String, u64>,
}

/// CPU consumed over a window, in milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CpuReport {
    pub per_process_ms: BTreeMap<String, f64>,
    pub total_ms: f64,
    /// Total over the SUCCEEDED transfers of the window.
    pub per_succeeded_ms: Option<f64>,
    pub note: String,
}

impl CpuProbe {
    pub fn sample(&self) -> CpuSample {
        let mut ticks = BTreeMap::new();
        for (name, pid) in &self.processes {
            if let Some(t) = ticks_of(*pid) {
                ticks.insert(name.clone(), t);
            }
        }
        if let Some(uid) = self.postgres_uid {
            ticks.insert("postgres".to_owned(), postgres_ticks(uid));
        }
        CpuSample { ticks }
    }

    pub fn note(&self) -> String {
        match self.postgres_uid {
            Some(_) => "our four processes plus every `postgres` process of the postgres user \
                        (other databases on the same server included)"
                .to_owned(),
            None => "our four processes only (SQLite runs inside them)".to_owned(),
        }
    }
}

/// The CPU used between `before` and `after` by each process present in both.
pub fn report(before: &CpuSample, after: &CpuSample, succeeded: u64, note: String) -> CpuReport {
    let ms_per_tick = 1000.0 / ticks_per_second() as f64;
    let mut per_process_ms = BTreeMap::new();
    for (name, t_after) in &after.ticks {
        if let Some(t_before) = before.ticks.get(name) {
            let ms = t_after.saturating_sub(*t_before) as f64 * ms_per_tick;
            per_process_ms.insert(name.clone(), ms);
        }
    }
    let total_ms: f64 = per_process_ms.values().sum();
    CpuReport {
        per_process_ms,
        total_ms,
        per_succeeded_ms: (succeeded > 0).then(|| total_ms / succeeded as f64),
        note,
    }
}

fn ticks_per_second() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .filter(|t| *t > 0)
        .unwrap_or(100)
}

/// utime + stime of `pid`, or `None` when it is gone.
pub fn ticks_of(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat).map(|(_, ticks)| ticks)
}

/// `(comm, utime + stime)` of a `/proc/<pid>/stat` line. The command name is in
/// parentheses and may itself hold spaces and parentheses: the fields after it start
/// after the last `)`.
pub fn parse_stat(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let rest: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `rest` starts at field 3 (state).
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

fn postgres_ticks(uid: u32) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut total = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if entry.metadata().map(|m| m.uid()).ok() != Some(uid) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some((comm, ticks)) = parse_stat(&stat)
            && comm == "postgres"
        {
            total += ticks;
        }
    }
    total
}

/// The uid of the `postgres` user, if there is one.
pub fn postgres_uid() -> Option<u32> {
    nix::unistd::User::from_name("postgres")
        .ok()
        .flatten()
        .map(|u| u.uid.as_raw())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_are_parsed_after_the_command_name() {
        let line = "1234 (post gres) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0 \
                    100 0 0";
        assert_eq!(parse_stat(line), Some(("post gres".to_owned(), 325)));
        let tricky = "7 (a) b)) R 1 1 1 0 -1 0 0 0 0 0 3 4 0 0";
        assert_eq!(parse_stat(tricky), Some(("a) b)".to_owned(), 7)));
        assert_eq!(parse_stat("garbage"), None);
        // This process has used some CPU by now.
        assert!(ticks_of(std::process::id()).is_some());
    }

    #[test]
    fn a_report_is_the_difference_per_process() {
        let before = CpuSample {
            ticks: BTreeMap::from([("gateway".to_owned(), 100), ("gone".to_owned(), 5)]),
        };
        let after = CpuSample {
            ticks: BTreeMap::from([("gateway".to_owned(), 100 + ticks_per_second())]),
        };
        let r = report(&before, &after, 500, String::new());
        assert_eq!(r.per_process_ms.len(), 1);
        assert!((r.total_ms - 1000.0).abs() < 1e-9);
        assert_eq!(r.per_succeeded_ms, Some(2.0));
        assert_eq!(
            report(&before, &after, 0, String::new()).per_succeeded_ms,
            None
        );
    }
}
