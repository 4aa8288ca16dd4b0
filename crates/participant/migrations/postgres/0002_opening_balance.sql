-- What each account opened with, so that the audit can explain its balances: available
-- follows from the opening balance and the account's reservations. NULL for an account
-- opened before this column existed: which side of the protocol a book is on is not
-- known here, so its opening balance cannot be derived, and deriving it from the
-- balances would make any earlier edit of them look explained. The audit reports such
-- accounts as unexplained.
ALTER TABLE accounts ADD COLUMN opening_minor BIGINT NULL CHECK (opening_minor >= 0);
