//! This replica's name, which its leases carry.

/// `configured`, or `hostname-pid` when it is empty: unique per process on a host, and
/// readable in the transfer log's `lease_owner`.
pub fn replica_id(configured: &str) -> String {
    if !configured.is_empty() {
        return configured.to_owned();
    }
    format!("{}-{}", hostname(), std::process::id())
}

fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| {
            let name = std::fs::read_to_string(path).ok()?;
            let name = name.trim();
            (!name.is_empty()).then(|| name.to_owned())
        })
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "reconciler".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_id_wins_and_a_generated_one_names_the_process() {
        assert_eq!(replica_id("r-1"), "r-1");
        let generated = replica_id("");
        assert!(
            generated.ends_with(&format!("-{}", std::process::id())),
            "{generated}"
        );
        assert!(generated.len() > 2);
    }
}
