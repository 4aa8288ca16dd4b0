//! Storage failures as gRPC statuses. The client gets a short, stable message; the detail
//! goes to the log, where operators can act on it.

use tonic::Status;

use crate::book::StoreError;

pub fn storage_status(err: StoreError) -> Status {
    match err {
        StoreError::Unavailable(_) => {
            tracing::warn!(error = ?err, "database unavailable");
            Status::unavailable("the reservation book's database is unavailable; retry later")
        }
        StoreError::Failed(_) | StoreError::Corrupt(_) => {
            tracing::error!(error = ?err, "storage error");
            Status::internal("internal storage error")
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    #[test]
    fn unreachable_storage_is_unavailable_and_the_rest_internal() {
        let timed_out = storage_status(StoreError::Unavailable("pool timed out".into()));
        assert_eq!(timed_out.code(), Code::Unavailable);
        assert!(
            !timed_out.message().contains("pool"),
            "detail leaked: {timed_out:?}"
        );
        let corrupt = storage_status(StoreError::Corrupt("status \"lost\"".into()));
        assert_eq!(corrupt.code(), Code::Internal);
        assert!(
            !corrupt.message().contains("lost"),
            "detail leaked: {corrupt:?}"
        );
        let refused = storage_status(StoreError::Failed("no rows returned".into()));
        assert_eq!(refused.code(), Code::Internal);
    }
}
