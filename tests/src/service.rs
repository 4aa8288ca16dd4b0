//! The four services of a cluster.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    /// The public TransferService and the coordinator.
    Gateway,
    /// The mock external institution (the other bank), with fault injection.
    External,
    /// Our internal balance store.
    BalanceStore,
    /// Recovery and audit.
    Reconciler,
}

impl Service {
    pub const ALL: [Service; 4] = [
        Service::External,
        Service::BalanceStore,
        Service::Gateway,
        Service::Reconciler,
    ];

    /// The cargo binary name.
    pub fn binary_name(self) -> &'static str {
        match self {
            Service::Gateway => "gateway-coordinator",
            Service::External => "mock-external-institution",
            Service::BalanceStore => "internal-balance-store",
            Service::Reconciler => "reconciler",
        }
    }

    /// Short name used for the config and log files.
    pub fn short_name(self) -> &'static str {
        match self {
            Service::Gateway => "gateway",
            Service::External => "external",
            Service::BalanceStore => "balance_store",
            Service::Reconciler => "reconciler",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.binary_name())
    }
}
