//! Free TCP ports on the loopback interface.

use std::net::TcpListener;

/// A port nothing listens on right now: bind port 0, read what the kernel chose, release
/// it. Another process may take it before the service binds; with ephemeral ports handed
/// out round-robin that is rare enough for tests.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// `n` distinct free ports.
pub fn free_ports(n: usize) -> Vec<u16> {
    // Hold every listener until all are chosen, so the kernel cannot hand one out twice.
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local address").port())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_bindable() {
        let ports = free_ports(4);
        let mut sorted = ports.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 4);
        for port in ports {
            TcpListener::bind(("127.0.0.1", port)).expect("a free port binds");
        }
        assert_ne!(free_port(), 0);
    }
}
