//! Pages of the audit's listings (ListReservations, ListAccounts): how many entries a
//! request may ask for, and the page token, which names the key the next page starts
//! after.
//!
//! A token is the hex of `<listing>:<last key of the page>`. Clients treat it as opaque;
//! on the way back in it must decode to this listing and a valid id, so a token made up,
//! cut short or taken from the other listing is refused (INVALID_ARGUMENT) rather than
//! read as "start somewhere". Tokens need no secret: knowing one only lets a caller start
//! a listing it may read anyway at another key.

use banktransfer_protocol::audit::BOOK_PAGE_SIZE_MAX;
use banktransfer_protocol::ids::check_id;
use tonic::Status;

/// Entries per page when a request asks for 0.
pub const PAGE_SIZE_DEFAULT: u32 = 100;
/// The most a request may ask for: the same bound every audit reader sizes its pages by.
pub const PAGE_SIZE_MAX: u32 = BOOK_PAGE_SIZE_MAX;

const _: () = assert!(PAGE_SIZE_DEFAULT >= 1 && PAGE_SIZE_DEFAULT <= PAGE_SIZE_MAX);

/// Which listing a page belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listing {
    Reservations,
    Accounts,
}

impl Listing {
    fn name(self) -> &'static str {
        match self {
            Listing::Reservations => "reservations",
            Listing::Accounts => "accounts",
        }
    }

    fn rpc(self) -> &'static str {
        match self {
            Listing::Reservations => "ListReservations",
            Listing::Accounts => "ListAccounts",
        }
    }
}

/// A page request, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// The key the page starts after; `None` for the first page.
    pub after: Option<String>,
    /// How many entries the page holds at most: 1..=[`PAGE_SIZE_MAX`].
    pub size: u32,
}

/// A request's `page_size` and `page_token`, checked.
pub fn page(listing: Listing, page_size: u32, page_token: &str) -> Result<Page, Status> {
    let size = match page_size {
        0 => PAGE_SIZE_DEFAULT,
        size if size > PAGE_SIZE_MAX => {
            return Err(Status::invalid_argument(format!(
                "page_size: at most {PAGE_SIZE_MAX} per page, got {size}; ask for fewer, or 0 \
                 for {PAGE_SIZE_DEFAULT}"
            )));
        }
        size => size,
    };
    let after = match page_token {
        "" => None,
        token => Some(after_key(listing, token).ok_or_else(|| {
            Status::invalid_argument(format!(
                "page_token: not a token {} issued; send the next_page_token of the page \
                 before, or an empty one for the first page",
                listing.rpc()
            ))
        })?),
    };
    Ok(Page { after, size })
}

/// The key a token this service issued for `listing` names, if it is one.
fn after_key(listing: Listing, token: &str) -> Option<String> {
    let decoded = String::from_utf8(hex::decode(token).ok()?).ok()?;
    let key = decoded.strip_prefix(listing.name())?.strip_prefix(':')?;
    check_id("page_token", key).ok()?;
    Some(key.to_owned())
}

/// Ends a page read with one entry more than `page.size` (how a page tells there is
/// another): drops that entry and returns the token of the next page, or "" when this
/// page is the last.
pub fn finish<T>(
    listing: Listing,
    page: &Page,
    entries: &mut Vec<T>,
    key: impl Fn(&T) -> &str,
) -> String {
    let size = usize::try_from(page.size).expect("a page size fits in usize");
    if entries.len() <= size {
        return String::new();
    }
    entries.truncate(size);
    let last = entries.last().expect("a page holds at least one entry");
    hex::encode(format!("{}:{}", listing.name(), key(last)))
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    fn invalid(result: Result<Page, Status>) -> String {
        let status = result.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        status.message().to_owned()
    }

    #[test]
    fn page_sizes_default_and_are_bounded() {
        let first = page(Listing::Reservations, 0, "").unwrap();
        assert_eq!(
            first,
            Page {
                after: None,
                size: PAGE_SIZE_DEFAULT
            }
        );
        assert_eq!(page(Listing::Accounts, 1_000, "").unwrap().size, 1_000);
        let message = invalid(page(Listing::Accounts, 1_001, ""));
        assert!(message.starts_with("page_size: at most 1000"), "{message}");
    }

    #[test]
    fn a_token_resumes_after_the_last_key_of_its_page() {
        let first = page(Listing::Reservations, 2, "").unwrap();
        let mut entries = vec!["t1", "t2", "t3"];
        let token = finish(Listing::Reservations, &first, &mut entries, |e| e);
        assert_eq!(entries, ["t1", "t2"]);
        let next = page(Listing::Reservations, 2, &token).unwrap();
        assert_eq!(next.after.as_deref(), Some("t2"));
        // The last page: no token.
        let mut last = vec!["t3"];
        assert_eq!(finish(Listing::Reservations, &next, &mut last, |e| e), "");
        let mut exactly_full = vec!["t3", "t4"];
        assert_eq!(
            finish(Listing::Reservations, &next, &mut exactly_full, |e| e),
            ""
        );
    }

    #[test]
    fn tokens_not_issued_here_are_refused() {
        let mut entries = vec!["acc-1", "acc-2"];
        let one = page(Listing::Accounts, 1, "").unwrap();
        let accounts_token = finish(Listing::Accounts, &one, &mut entries, |e| e);
        assert!(page(Listing::Accounts, 1, &accounts_token).is_ok());
        let garbage = [
            "garbage".to_owned(),
            "zz".to_owned(),
            accounts_token[..accounts_token.len() - 1].to_owned(),
            // The other listing's token.
            accounts_token.clone(),
            hex::encode("reservations:"),
            hex::encode("reservations:has space"),
            hex::encode([0xff, 0xfe]),
            hex::encode(format!("reservations:{}", "t".repeat(129))),
        ];
        for token in garbage {
            let message = invalid(page(Listing::Reservations, 1, &token));
            assert!(
                message.starts_with("page_token: not a token ListReservations issued"),
                "{token:?}: {message}"
            );
        }
    }
}
