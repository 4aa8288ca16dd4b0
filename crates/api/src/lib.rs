//! Generated protobuf messages and gRPC clients/servers for every BankTransfer contract.
//!
//! Map (one module per protobuf package in `proto/`, checked by `make proto-lint`):
//! - [`money::v1`]: `Money`, integer minor units.
//! - [`reservation::v1`]: `ReservationService` (Reserve, Confirm, Cancel, GetReservation),
//!   served by both participants, and the `Reservation` and `Account` they answer with.
//! - [`external::v1`]: the external institution's own `ExternalInstitutionService`
//!   (accounts) and `FaultInjectionApi`.
//! - [`balance_store::v1`]: the balance store's own `BalanceStoreService` (accounts).
//! - [`gateway::v1`]: the public `TransferService`.
//! - [`reconciler::v1`]: the operator's `ReconcilerService`.
//!
//! - [`codec`]: the codec of every generated client and server: prost's, with an
//!   undecodable body answered INVALID_ARGUMENT.
//!
//! Protobuf types stop at the service boundary: each service converts them into the
//! domain types of `banktransfer-protocol` exactly once (see each service's `convert`
//! module). The file descriptor set is exported for gRPC server reflection.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

pub mod codec;

pub mod money {
    pub mod v1 {
        tonic::include_proto!("banktransfer.money.v1");
    }
}

pub mod reservation {
    pub mod v1 {
        tonic::include_proto!("banktransfer.reservation.v1");
    }
}

pub mod gateway {
    pub mod v1 {
        tonic::include_proto!("banktransfer.gateway.v1");
    }
}

pub mod external {
    pub mod v1 {
        tonic::include_proto!("banktransfer.external.v1");
    }
}

pub mod balance_store {
    pub mod v1 {
        tonic::include_proto!("banktransfer.balance_store.v1");
    }
}

pub mod reconciler {
    pub mod v1 {
        tonic::include_proto!("banktransfer.reconciler.v1");
    }
}

/// Every contract's descriptors, for `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("banktransfer_descriptor");
