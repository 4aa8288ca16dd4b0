//! Exhaustive model checking (stateright) of BankTransfer's protocol. Map in progress.

pub mod check;
pub mod production;
pub mod protocol_model;
