//! The books half of the audit: both participants' whole books, read a page at a time
//! (each page one call with its deadline, at most `pages_max` pages of each listing),
//! then the transfer log for every transfer a reservation that holds or moved money
//! names, then the protocol's books rule (`banktransfer_protocol::audit::book_findings`).
//!
//! The books are read before the log is asked: the coordinator records a transfer's
//! intent durably before it sends any reserve, so a reservation the protocol made is in a
//! book only once its transfer is in the log, and the log read afterwards has it. (Read
//! the other way round, a transfer started between the two reads would look like a
//! theft.) Each account comes with its reservation totals read in the same statement
//! (ListAccounts), so a reserve landing while the pages are read cannot make a balance
//! look unexplained either.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use banktransfer_protocol::audit::{
    self, AccountStatement, BookReservation, Finding, LoggedTransfer,
};
use banktransfer_protocol::transfer::Leg;
use coordinator::participants::{CallError, Page, Participants};
use coordinator::store::{StoreError, TransferStore};

/// How an audit reads the books.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BookReading {
    /// Entries per page, 1..=`BOOK_PAGE_SIZE_MAX`.
    pub page_size: u32,
    /// Pages of each listing at most.
    pub pages_max: u32,
    /// Each page's deadline.
    pub call_timeout: Duration,
}

/// What the books rule found in both books.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BooksReport {
    pub reservations_checked: u32,
    pub accounts_checked: u32,
    pub findings: Vec<Finding>,
    /// A book had more pages than an audit reads: what lies beyond went unchecked.
    pub incomplete: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum BooksError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A page could not be read: the audit would call a book clean unread.
    #[error("cannot read the {}'s book: {error}", leg.name())]
    Participant { leg: Leg, error: CallError },
}

/// One participant's book as read.
struct Book {
    leg: Leg,
    reservations: Vec<BookReservation>,
    accounts: Vec<AccountStatement>,
    incomplete: bool,
}

/// Reads both books, looks up in the log the transfers that `logged` (transfers already
/// read from the log, by transfer id) lacks, and applies the books rule.
pub async fn audit_books<S: TransferStore, P: Participants>(
    store: &S,
    participants: &P,
    mut logged: BTreeMap<String, LoggedTransfer>,
    reading: BookReading,
) -> Result<BooksReport, BooksError> {
    let (external, balance_store) = tokio::join!(
        read_book(participants, Leg::External, reading),
        read_book(participants, Leg::BalanceStore, reading),
    );
    let books = [external?, balance_store?];
    look_up_transfers(store, &books, &mut logged).await?;
    let mut report = BooksReport::default();
    for book in &books {
        report.reservations_checked += count(book.reservations.len());
        report.accounts_checked += count(book.accounts.len());
        report.incomplete |= book.incomplete;
        report.findings.extend(audit::book_findings(
            book.leg,
            &book.reservations,
            &book.accounts,
            &logged,
        ));
        if book.incomplete {
            tracing::warn!(
                participant = book.leg.name(),
                pages_max = reading.pages_max,
                page_size = reading.page_size,
                "audit: the book is larger than one audit reads; the rest is unchecked"
            );
        }
    }
    for finding in &report.findings {
        tracing::error!(%finding, "audit: money the books cannot explain");
    }
    Ok(report)
}

async fn read_book<P: Participants>(
    participants: &P,
    leg: Leg,
    reading: BookReading,
) -> Result<Book, BooksError> {
    let BookReading {
        page_size,
        pages_max,
        call_timeout,
    } = reading;
    let failed = |error| BooksError::Participant { leg, error };
    let (reservations, reservations_whole) = read_pages(pages_max, |token| async move {
        let page = participants.list_reservations(leg, page_size, &token, call_timeout);
        page.await
    })
    .await
    .map_err(failed)?;
    let (accounts, accounts_whole) = read_pages(pages_max, |token| async move {
        let page = participants.list_accounts(leg, page_size, &token, call_timeout);
        page.await
    })
    .await
    .map_err(failed)?;
    Ok(Book {
        leg,
        reservations,
        accounts,
        incomplete: !(reservations_whole && accounts_whole),
    })
}

/// Every entry of at most `pages_max` pages, and whether that was all of them.
async fn read_pages<T, F, Fut>(
    pages_max: u32,
    mut read_page: F,
) -> Result<(Vec<T>, bool), CallError>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<Page<T>, CallError>>,
{
    let mut entries = Vec::new();
    let mut page_token = String::new();
    for _ in 0..pages_max {
        let page = read_page(page_token).await?;
        entries.extend(page.entries);
        if page.next_page_token.is_empty() {
            return Ok((entries, true));
        }
        page_token = page.next_page_token;
    }
    Ok((entries, false))
}

/// Adds to `logged` every transfer a money-moving reservation in `books` names that the
/// log has and `logged` lacks. Bounded by the reservations read.
async fn look_up_transfers<S: TransferStore>(
    store: &S,
    books: &[Book],
    logged: &mut BTreeMap<String, LoggedTransfer>,
) -> Result<(), StoreError> {
    let missing: BTreeSet<String> = books
        .iter()
        .flat_map(|book| &book.reservations)
        .filter(|reservation| reservation.moves_money())
        .filter(|reservation| !logged.contains_key(&reservation.transfer_id))
        .map(|reservation| reservation.transfer_id.clone())
        .collect();
    for transfer_id in missing {
        if let Some(record) = store.get(&transfer_id).await? {
            logged.insert(transfer_id, record.logged());
        }
    }
    Ok(())
}

/// A count of entries read, within the bound `config::AUDIT_PAGES_MAX` asserts fits.
fn count(entries: usize) -> u32 {
    u32::try_from(entries).expect("the entries an audit reads are bounded well within u32")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listing of `total` numbers in pages of `size`, its tokens the next index.
    fn pages(
        total: u32,
        size: u32,
    ) -> impl FnMut(String) -> std::future::Ready<Result<Page<u32>, CallError>> {
        move |token: String| {
            let start: u32 = if token.is_empty() {
                0
            } else {
                token.parse().unwrap()
            };
            let end = (start + size).min(total);
            let next_page_token = if end < total {
                end.to_string()
            } else {
                String::new()
            };
            std::future::ready(Ok(Page {
                entries: (start..end).collect(),
                next_page_token,
            }))
        }
    }

    #[tokio::test]
    async fn pages_are_read_to_the_end_within_their_bound() {
        let (all, whole) = read_pages(10, pages(25, 10)).await.unwrap();
        assert_eq!((all.len(), whole), (25, true));
        assert_eq!(all, (0..25).collect::<Vec<_>>());
        let (some, whole) = read_pages(2, pages(25, 10)).await.unwrap();
        assert_eq!((some.len(), whole), (20, false));
        let (none, whole) = read_pages(1, pages(0, 10)).await.unwrap();
        assert_eq!((none.len(), whole), (0, true));
    }

    #[tokio::test]
    async fn a_page_that_fails_fails_the_reading() {
        let mut calls = 0;
        let failing = |_token: String| {
            calls += 1;
            std::future::ready(Err::<Page<u32>, _>(CallError("down".into())))
        };
        assert!(read_pages(5, failing).await.is_err());
        assert_eq!(calls, 1);
    }
}
