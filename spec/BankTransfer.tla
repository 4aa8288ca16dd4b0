---------------------------- MODULE BankTransfer ----------------------------
(***************************************************************************)
(* BankTransfer's protocol: pull Amount from the user's account at an      *)
(* external institution into their account in our balance store, with a   *)
(* two-phase reserve/confirm and a durable compare-and-set decision.       *)
(*                                                                         *)
(*  gateway       records the intent `started` (durable), sends Reserve to *)
(*                both participants, decides by compare-and-set            *)
(*                started -> committed | aborted, and only then sends      *)
(*                Confirm (after a commit) or Cancel (after an abort) to   *)
(*                both; once both acknowledged, records succeeded |        *)
(*                failed. Its driver's state is volatile: a crash loses    *)
(*                it, the durable log stays.                               *)
(*  participants  the external institution (debit side: a hold moves funds *)
(*                from available to held, a confirm moves them out) and    *)
(*                our balance store (credit side: a hold is a pending      *)
(*                credit, a confirm makes it available). One reservation   *)
(*                per transfer, ever; every call is idempotent; a Cancel   *)
(*                that finds no reservation leaves a tombstone, which      *)
(*                refuses the late Reserve.                                *)
(*  reconciler    may abort any `started` transfer at any time (the same   *)
(*                compare-and-set), re-sends Confirm or Cancel for decided *)
(*                transfers, and records the outcome once both legs are    *)
(*                settled.                                                 *)
(*  network       the requests (Reserve, Confirm, Cancel) are a set of     *)
(*                messages. Delivering one does not remove it, so every    *)
(*                request may be delivered any number of times, at any     *)
(*                later moment, in any order: unbounded duplication, delay *)
(*                and reordering. Up to MaxLosses requests are lost.       *)
(*  answers       a caller learns what a participant answered by reading   *)
(*                what the answer can say (see GwOnReserved, GwOnSettled,  *)
(*                RcRecordOutcome): a Reserve answers HELD once the funds  *)
(*                were held, even after they were released (a late         *)
(*                answer), and not-held once the reservation was refused,  *)
(*                cancelled or tombstoned; Confirm and Cancel answer once  *)
(*                the reservation is confirmed, or released. A lost or     *)
(*                late answer is the caller's timeout, which may happen at *)
(*                any moment anyway, and a duplicated one is ignored.      *)
(*  faults        request loss (MaxLosses); gateway crashes (MaxCrashes); *)
(*                the coordinator's database unreachable when the gateway  *)
(*                records (GwGiveUp); timeouts at any moment. A            *)
(*                participant commits before it answers, so its crash is a *)
(*                lost request or a lost answer. The reconciler keeps      *)
(*                nothing that a crash could lose: it works from the log,  *)
(*                and RcRecordOutcome reads what the legs answer anew.     *)
(*                                                                         *)
(* In the seeds' vocabulary (shared/seeds/003), the user's money that is   *)
(* spendable somewhere is extAvail (at the external institution: alice's   *)
(* account) plus intAvail (with us: bob's); account_total is Funds.        *)
(*   MoneyEventualInvariant  extAvail + intAvail <= Funds at EVERY step:   *)
(*                           money is never created. A hold takes the      *)
(*                           money out of extAvail first, like the seed's  *)
(*                           "withdraw, then deposit": while held it is in *)
(*                           transit.                                      *)
(*   MoneyInvariant          at rest (every transfer succeeded or failed): *)
(*                           extAvail + intAvail = Funds, nothing held or  *)
(*                           pending, and exactly Amount per succeeded     *)
(*                           transfer moved: money is never lost.          *)
(* What does NOT hold at every step is intAvail <= extOut ("never credit   *)
(* before debit"): both confirms go out at once after the commit, and the  *)
(* balance store may apply its confirm first. What holds instead is        *)
(* CreditBacked: a confirmed credit is always backed by a committed hold   *)
(* or a confirmed debit at the external institution, and a committed hold  *)
(* can no longer be released (no Cancel is ever sent after a commit).      *)
(* MoneyEventualInvariant follows from it. CreditAfterDebit below is the   *)
(* stronger relation; TLC finds it violated if you add it to INVARIANTS.   *)
(*                                                                         *)
(* Plain TLA+, no PlusCal: the environment (network, faults) reads better  *)
(* as actions than as processes. spec/README.md maps each action to the    *)
(* Rust code it models and gives the expected TLC results.                 *)
(***************************************************************************)
EXTENDS Integers, FiniteSets

CONSTANTS
    Transfers,   \* the transfers the client asks for, e.g. {t1, t2}
    Amount,      \* the amount of every transfer, e.g. 1
    Funds,       \* the user's opening balance at the external institution, e.g. 1
    MaxLosses,   \* how many requests the network may lose, e.g. 1
    MaxCrashes   \* how many times the gateway may crash, e.g. 1

ASSUME /\ IsFiniteSet(Transfers)
       /\ Amount \in Nat \ {0}
       /\ Funds \in Nat
       /\ MaxLosses \in Nat
       /\ MaxCrashes \in Nat

VARIABLES
    rec,         \* the coordinator's transfer log (durable): rec[t]
    gw,          \* the gateway's driver of t (volatile): its phase
    gwHeld,      \* (volatile) legs that answered HELD to its reserves
    gwDec,       \* (volatile) the decision it proposes, then the one it read back
    book,        \* each participant's reservation book (durable): book[leg][t]
    extAvail,    \* the user's external account (durable): available,
    extHeld,     \*   held by reservations,
    extOut,      \*   moved out by confirmed reservations
    intPending,  \* the user's account with us (durable): pending credits,
    intAvail,    \*   available
    msgs,        \* the requests on the network
    losses,      \* requests lost so far
    crashes      \* gateway crashes so far

gwVars    == << gw, gwHeld, gwDec >>
extVars   == << extAvail, extHeld, extOut >>
intVars   == << intPending, intAvail >>
faultVars == << losses, crashes >>
vars == << rec, gwVars, book, extVars, intVars, msgs, faultVars >>

-----------------------------------------------------------------------------
(* Constants of the model *)

Legs == {"ext", "int"}      \* Leg::External, Leg::BalanceStore

\* "none": the client has not called yet (or its intent was never recorded).
RecStates == {"none", "started", "committed", "aborted", "succeeded", "failed"}
Decided == {"committed", "aborted"}
Final == {"succeeded", "failed"}
CommitStates == {"committed", "succeeded"}
AbortStates == {"aborted", "failed"}

\* "idle": no live driver (not begun, finished, handed to the reconciler, crashed).
GwPhases == {"idle", "intent", "reserving", "deciding", "decided", "settling", "recording"}

\* "tombstone": cancelled before any reserve arrived (a reservation without terms).
BookStates == {"none", "held", "confirmed", "cancelled", "refused", "tombstone"}
Released == {"cancelled", "refused", "tombstone"}   \* nothing held, and never again

\* A Reserve answers HELD once the funds were held, even after their release (a late
\* answer); it answers not-held once the reservation is refused, cancelled or a
\* tombstone (a replay, or a reserve that met the tombstone).
CanAnswerHeld(b) == b \in {"held", "confirmed", "cancelled"}
CanAnswerNotHeld(b) == b \in Released

\* Confirm answers once the reservation is confirmed; Cancel once it is released.
Settled(b, decision) == IF decision = "commit" THEN b = "confirmed" ELSE b \in Released

DecisionOf(state) == IF state \in CommitStates THEN "commit" ELSE "abort"

\* A request: Reserve, Confirm or Cancel of transfer t on one leg.
Msg(type, t, leg) == [type |-> type, t |-> t, leg |-> leg]
Msgs == [type : {"reserve", "confirm", "cancel"}, t : Transfers, leg : Legs]

Send(ms) == msgs' = msgs \cup ms

-----------------------------------------------------------------------------
(* Initial state *)

Init ==
    /\ rec = [t \in Transfers |-> "none"]
    /\ gw = [t \in Transfers |-> "idle"]
    /\ gwHeld = [t \in Transfers |-> {}]
    /\ gwDec = [t \in Transfers |-> "none"]
    /\ book = [leg \in Legs |-> [t \in Transfers |-> "none"]]
    /\ extAvail = Funds
    /\ extHeld = 0
    /\ extOut = 0
    /\ intPending = 0
    /\ intAvail = 0
    /\ msgs = {}
    /\ losses = 0
    /\ crashes = 0

-----------------------------------------------------------------------------
(* The gateway: ApproveTransfer, then the driver of the live request *)

\* ApproveTransfer arrives: the intent is recorded `started`, durable before anyone is
\* called. (A client's retry after a crash that came before this step is this step.)
Begin(t) ==
    /\ rec[t] = "none"
    /\ rec' = [rec EXCEPT ![t] = "started"]
    /\ gw' = [gw EXCEPT ![t] = "intent"]
    /\ UNCHANGED << gwHeld, gwDec, book, extVars, intVars, msgs, faultVars >>

\* Reserve on both legs at once.
SendReserves(t) ==
    /\ gw[t] = "intent"
    /\ gw' = [gw EXCEPT ![t] = "reserving"]
    /\ Send({Msg("reserve", t, leg) : leg \in Legs})
    /\ UNCHANGED << rec, gwHeld, gwDec, book, extVars, intVars, faultVars >>

\* A reserve answer reaches the live driver: commit needs both holds, one refusal is
\* an abort. (Answers arriving after the decision are ignored: the decision's confirm
\* or cancel takes care of whatever they say.)
GwOnReserved(t, leg) ==
    /\ gw[t] = "reserving"
    /\ leg \notin gwHeld[t]
    /\ \/ /\ CanAnswerHeld(book[leg][t])
          /\ gwHeld' = [gwHeld EXCEPT ![t] = @ \cup {leg}]
          /\ IF gwHeld'[t] = Legs
               THEN /\ gw' = [gw EXCEPT ![t] = "deciding"]
                    /\ gwDec' = [gwDec EXCEPT ![t] = "commit"]
               ELSE UNCHANGED << gw, gwDec >>
       \/ /\ CanAnswerNotHeld(book[leg][t])
          /\ gw' = [gw EXCEPT ![t] = "deciding"]
          /\ gwDec' = [gwDec EXCEPT ![t] = "abort"]
          /\ UNCHANGED gwHeld
    /\ UNCHANGED << rec, book, extVars, intVars, msgs, faultVars >>

\* The reserve deadline passes before both legs held, or a reserve call failed or its
\* answer was lost (unknown: a hold may or may not exist). Only an abort is safe.
GwReserveTimeout(t) ==
    /\ gw[t] = "reserving"
    /\ gw' = [gw EXCEPT ![t] = "deciding"]
    /\ gwDec' = [gwDec EXCEPT ![t] = "abort"]
    /\ UNCHANGED << rec, gwHeld, book, extVars, intVars, msgs, faultVars >>

\* Compare-and-set started -> committed | aborted, then read the row back. The driver
\* follows what the log holds, which may be a decision someone else recorded first;
\* if someone even finished the transfer meanwhile, nothing is left to do.
GwRecordDecision(t) ==
    /\ gw[t] = "deciding"
    /\ rec' = [rec EXCEPT ![t] = IF @ = "started"
                                   THEN IF gwDec[t] = "commit" THEN "committed" ELSE "aborted"
                                   ELSE @]
    /\ gwHeld' = [gwHeld EXCEPT ![t] = {}]   \* no longer needed
    /\ IF rec'[t] \in Final
         THEN /\ gw' = [gw EXCEPT ![t] = "idle"]
              /\ gwDec' = [gwDec EXCEPT ![t] = "none"]
         ELSE /\ gw' = [gw EXCEPT ![t] = "decided"]
              /\ gwDec' = [gwDec EXCEPT ![t] = DecisionOf(rec'[t])]
    /\ UNCHANGED << book, extVars, intVars, msgs, faultVars >>

\* Persist-before-send: only now that the decision is durable, Confirm (after a commit)
\* or Cancel (after an abort) both legs. A crash between the two steps is the crash
\* tests' "after_decision" pause point.
GwSendSettle(t) ==
    /\ gw[t] = "decided"
    /\ gw' = [gw EXCEPT ![t] = "settling"]
    /\ Send({Msg(IF gwDec[t] = "commit" THEN "confirm" ELSE "cancel", t, leg) : leg \in Legs})
    /\ UNCHANGED << rec, gwHeld, gwDec, book, extVars, intVars, faultVars >>

\* Both legs acknowledged the driver's confirms or cancels.
GwOnSettled(t) ==
    /\ gw[t] = "settling"
    /\ \A leg \in Legs : Settled(book[leg][t], gwDec[t])
    /\ gw' = [gw EXCEPT ![t] = "recording"]
    /\ UNCHANGED << rec, gwHeld, gwDec, book, extVars, intVars, msgs, faultVars >>

\* The settle deadline passes: the client is answered PROCESSING (after a commit) or
\* FAILED (after an abort), and the reconciler finishes.
GwSettleTimeout(t) ==
    /\ gw[t] = "settling"
    /\ gw' = [gw EXCEPT ![t] = "idle"]
    /\ gwDec' = [gwDec EXCEPT ![t] = "none"]
    /\ UNCHANGED << rec, gwHeld, book, extVars, intVars, msgs, faultVars >>

\* Record the outcome, guarded by the decision (committed -> succeeded, aborted ->
\* failed; already final: unchanged).
GwRecordOutcome(t) ==
    /\ gw[t] = "recording"
    /\ rec' = [rec EXCEPT ![t] = IF @ = "committed" THEN "succeeded"
                                 ELSE IF @ = "aborted" THEN "failed"
                                 ELSE @]
    /\ gw' = [gw EXCEPT ![t] = "idle"]
    /\ gwDec' = [gwDec EXCEPT ![t] = "none"]
    /\ UNCHANGED << gwHeld, book, extVars, intVars, msgs, faultVars >>

-----------------------------------------------------------------------------
(* The participants: a reservation book per leg, and the user's accounts *)

\* The balance changes of a hold, a confirm and a release, by side.
Hold(leg) ==
    IF leg = "ext"
      THEN /\ extAvail' = extAvail - Amount
           /\ extHeld' = extHeld + Amount
           /\ UNCHANGED << extOut, intVars >>
      ELSE /\ intPending' = intPending + Amount
           /\ UNCHANGED << extVars, intAvail >>

Move(leg) ==
    IF leg = "ext"
      THEN /\ extHeld' = extHeld - Amount
           /\ extOut' = extOut + Amount
           /\ UNCHANGED << extAvail, intVars >>
      ELSE /\ intPending' = intPending - Amount
           /\ intAvail' = intAvail + Amount
           /\ UNCHANGED extVars

Release(leg) ==
    IF leg = "ext"
      THEN /\ extHeld' = extHeld - Amount
           /\ extAvail' = extAvail + Amount
           /\ UNCHANGED << extOut, intVars >>
      ELSE /\ intPending' = intPending - Amount
           /\ UNCHANGED << extVars, intAvail >>

\* How a first reserve can end: the external institution holds the funds when they
\* are available; our balance store's screening (antifraud, limits, rate limit) may
\* refuse.
ReserveOutcomes(leg) ==
    IF leg = "ext"
      THEN IF extAvail >= Amount THEN {"held"} ELSE {"refused"}
      ELSE {"held", "refused"}

\* Reserve: one reservation per transfer, ever. The first reserve to arrive holds or
\* refuses; every later one (a duplicate, or one arriving after a cancel's tombstone)
\* replays what is recorded and changes nothing, so it is no step here.
Reserve(leg, t) ==
    /\ Msg("reserve", t, leg) \in msgs
    /\ book[leg][t] = "none"
    /\ \E outcome \in ReserveOutcomes(leg) :
          /\ book' = [book EXCEPT ![leg][t] = outcome]
          /\ IF outcome = "held" THEN Hold(leg) ELSE UNCHANGED << extVars, intVars >>
    /\ UNCHANGED << rec, gwVars, msgs, faultVars >>

\* Confirm: the hold becomes a movement. A replay changes nothing. Any other state
\* would be refused (FAILED_PRECONDITION): SettleRequestsApply shows none is met.
Confirm(leg, t) ==
    /\ Msg("confirm", t, leg) \in msgs
    /\ book[leg][t] = "held"
    /\ book' = [book EXCEPT ![leg][t] = "confirmed"]
    /\ Move(leg)
    /\ UNCHANGED << rec, gwVars, msgs, faultVars >>

\* Cancel: the hold is released; with no reservation yet, a tombstone is recorded so
\* that a late reserve is refused. A replay changes nothing.
Cancel(leg, t) ==
    /\ Msg("cancel", t, leg) \in msgs
    /\ book[leg][t] \in {"none", "held"}
    /\ book' = [book EXCEPT ![leg][t] = IF @ = "none" THEN "tombstone" ELSE "cancelled"]
    /\ IF book[leg][t] = "held" THEN Release(leg) ELSE UNCHANGED << extVars, intVars >>
    /\ UNCHANGED << rec, gwVars, msgs, faultVars >>

-----------------------------------------------------------------------------
(* The reconciler (and a retried request, which aborts a stale transfer the same way) *)

\* Abort a transfer still undecided: the same compare-and-set as the gateway's. The code
\* waits until the transfer is older than the gateway's budget; the model lets it
\* happen at any moment, racing the live driver.
RcAbort(t) ==
    /\ rec[t] = "started"
    /\ rec' = [rec EXCEPT ![t] = "aborted"]
    /\ UNCHANGED << gwVars, book, extVars, intVars, msgs, faultVars >>

\* Drive a decided transfer from its record alone: Confirm (committed) or Cancel
\* (aborted) both legs again; again after a loss (retries with backoff).
RcSend(t) ==
    /\ rec[t] \in Decided
    /\ Send({Msg(IF rec[t] = "committed" THEN "confirm" ELSE "cancel", t, leg) : leg \in Legs})
    /\ UNCHANGED << rec, gwVars, book, extVars, intVars, faultVars >>

\* Both legs acknowledged: record the outcome (guarded by the decision).
RcRecordOutcome(t) ==
    /\ rec[t] \in Decided
    /\ \A leg \in Legs : Settled(book[leg][t], DecisionOf(rec[t]))
    /\ rec' = [rec EXCEPT ![t] = IF @ = "committed" THEN "succeeded" ELSE "failed"]
    /\ UNCHANGED << gwVars, book, extVars, intVars, msgs, faultVars >>

-----------------------------------------------------------------------------
(* Faults *)

\* The network loses a request.
Lose(m) ==
    /\ losses < MaxLosses
    /\ msgs' = msgs \ {m}
    /\ losses' = losses + 1
    /\ UNCHANGED << rec, gwVars, book, extVars, intVars, crashes >>

\* The gateway crashes (and restarts): every driver is forgotten. Requests already sent
\* may still arrive. The log is intact; a restarted gateway drives nothing it did not
\* start.
GwCrash ==
    /\ crashes < MaxCrashes
    /\ \E t \in Transfers : gw[t] /= "idle"
    /\ gw' = [t \in Transfers |-> "idle"]
    /\ gwHeld' = [t \in Transfers |-> {}]
    /\ gwDec' = [t \in Transfers |-> "none"]
    /\ crashes' = crashes + 1
    /\ UNCHANGED << rec, book, extVars, intVars, msgs, losses >>

\* The coordinator's database is unreachable when the driver records the decision or the
\* outcome: the driver stops and the transfer stays as recorded.
GwGiveUp(t) ==
    /\ gw[t] \in {"deciding", "recording"}
    /\ gw' = [gw EXCEPT ![t] = "idle"]
    /\ gwHeld' = [gwHeld EXCEPT ![t] = {}]
    /\ gwDec' = [gwDec EXCEPT ![t] = "none"]
    /\ UNCHANGED << rec, book, extVars, intVars, msgs, faultVars >>

-----------------------------------------------------------------------------
(* The specification *)

\* Every step that is not a fault. Timeouts are here: a deadline always passes.
Progress ==
    \E t \in Transfers :
        \/ Begin(t)
        \/ SendReserves(t)
        \/ GwReserveTimeout(t)
        \/ GwRecordDecision(t)
        \/ GwSendSettle(t)
        \/ GwOnSettled(t)
        \/ GwSettleTimeout(t)
        \/ GwRecordOutcome(t)
        \/ RcAbort(t)
        \/ RcSend(t)
        \/ RcRecordOutcome(t)
        \/ \E leg \in Legs :
              \/ GwOnReserved(t, leg)
              \/ Reserve(leg, t)
              \/ Confirm(leg, t)
              \/ Cancel(leg, t)

Fault ==
    \/ \E m \in msgs : Lose(m)
    \/ GwCrash
    \/ \E t \in Transfers : GwGiveUp(t)

\* At rest, nothing is left to do (as PlusCal's Terminating: not a deadlock).
Terminating ==
    /\ \A t \in Transfers : rec[t] \in Final
    /\ UNCHANGED vars

Next == Progress \/ Fault \/ Terminating

\* Weak fairness of the non-fault steps taken together: the system does not stop while
\* some non-fault step can still change the state. Faults are never forced. Every
\* behaviour has finitely many non-stuttering steps (faults are bounded and each
\* non-fault step moves some part of the state forward for good), so fairness only
\* matters where a behaviour ends, and there weak fairness of each action separately
\* would forbid exactly the same endings. One condition keeps TLC's liveness check to
\* one pass.
Spec == Init /\ [][Next]_vars /\ WF_vars(Progress)

-----------------------------------------------------------------------------
(* Invariants *)

TypeOK ==
    /\ rec \in [Transfers -> RecStates]
    /\ gw \in [Transfers -> GwPhases]
    /\ gwHeld \in [Transfers -> SUBSET Legs]
    /\ gwDec \in [Transfers -> {"none", "commit", "abort"}]
    /\ book \in [Legs -> [Transfers -> BookStates]]
    /\ extAvail \in Int /\ extHeld \in Int /\ extOut \in Int
    /\ intPending \in Int /\ intAvail \in Int
    /\ msgs \subseteq Msgs
    /\ losses \in 0..MaxLosses
    /\ crashes \in 0..MaxCrashes

\* Balance::assert_valid: no balance component is ever negative.
NoNegativeBalance ==
    /\ extAvail >= 0 /\ extHeld >= 0 /\ extOut >= 0
    /\ intPending >= 0 /\ intAvail >= 0

\* The external institution conserves the user's money at every step.
ExternalConservation == extAvail + extHeld + extOut = Funds

\* The balances are what the reservation books say (a reservation's row and its
\* balance change are one database transaction).
Count(leg, state) == Cardinality({t \in Transfers : book[leg][t] = state})
BalancesMatchBooks ==
    /\ extHeld = Amount * Count("ext", "held")
    /\ extOut = Amount * Count("ext", "confirmed")
    /\ intPending = Amount * Count("int", "held")
    /\ intAvail = Amount * Count("int", "confirmed")

\* Seed 003's MoneyEventualInvariant (alice + bob <= account_total), at every step: the
\* money the user can spend, there and here, never exceeds what there was.
MoneyEventualInvariant == extAvail + intAvail <= Funds

\* A confirmed credit is backed by a committed hold or a confirmed debit; a confirmed
\* debit is matched by a committed pending credit or a confirmed credit.
CreditBacked ==
    \A t \in Transfers :
        book["int"][t] = "confirmed" =>
            /\ book["ext"][t] \in {"held", "confirmed"}
            /\ rec[t] \in CommitStates
DebitBacked ==
    \A t \in Transfers :
        book["ext"][t] = "confirmed" =>
            /\ book["int"][t] \in {"held", "confirmed"}
            /\ rec[t] \in CommitStates

\* Never confirmed on one side and cancelled (or refused, or never reserved) on the other.
AtomicOutcome ==
    \A t \in Transfers :
        ~ /\ \E leg \in Legs : book[leg][t] = "confirmed"
          /\ \E leg \in Legs : book[leg][t] \in {"none"} \cup Released

\* Persist-before-send: nothing is confirmed, and no Confirm is even on its way, unless
\* the commit is durable; no Cancel after a commit.
NoConfirmWithoutCommit ==
    /\ \A t \in Transfers, leg \in Legs :
          book[leg][t] = "confirmed" => rec[t] \in CommitStates
    /\ \A m \in msgs : m.type = "confirm" => rec[m.t] \in CommitStates
NoCancelAfterCommit ==
    \A m \in msgs : m.type = "cancel" => rec[m.t] \in AbortStates

\* Every Confirm or Cancel on its way meets a reservation it can settle (or has
\* settled): no participant ever refuses one with FAILED_PRECONDITION.
SettleRequestsApply ==
    \A m \in msgs :
        /\ m.type = "confirm" => book[m.leg][m.t] \in {"held", "confirmed"}
        /\ m.type = "cancel" => book[m.leg][m.t] /= "confirmed"

\* FAILED is told as soon as the abort is recorded: from then on nothing is or will be
\* confirmed (no Confirm exists for it, by NoConfirmWithoutCommit).
AbortMovesNothing ==
    \A t \in Transfers : rec[t] \in AbortStates =>
        \A leg \in Legs : book[leg][t] /= "confirmed"

SucceededMeansBothConfirmed ==
    \A t \in Transfers : rec[t] = "succeeded" =>
        \A leg \in Legs : book[leg][t] = "confirmed"

\* Failed: nothing held on either leg, and a late reserve can no longer hold (both legs
\* have a reservation, which it only replays).
FailedMeansNothingHeld ==
    \A t \in Transfers : rec[t] = "failed" =>
        \A leg \in Legs : book[leg][t] \in Released

\* A live driver past its decision acts on what the log holds.
DriverFollowsLog ==
    \A t \in Transfers : gw[t] \in {"decided", "settling", "recording"} =>
        \/ gwDec[t] = "commit" /\ rec[t] \in CommitStates
        \/ gwDec[t] = "abort" /\ rec[t] \in AbortStates

\* At rest: every transfer succeeded or failed. Requests may still be on their way
\* (duplicates, reserves behind a tombstone): none of them can change a balance.
AtRest == \A t \in Transfers : rec[t] \in Final

Succeeded == {t \in Transfers : rec[t] = "succeeded"}

\* Seed 003's MoneyInvariant (alice + bob = account_total), at rest; and exactly the
\* succeeded transfers moved.
MoneyInvariant ==
    AtRest =>
        /\ extHeld = 0
        /\ intPending = 0
        /\ extOut = Amount * Cardinality(Succeeded)
        /\ intAvail = extOut
        /\ extAvail + intAvail = Funds

\* NOT an invariant of this protocol (see the header): the balance store may apply its
\* confirm before the external institution applies its own. Add it to the INVARIANTS
\* to see TLC's counterexample.
CreditAfterDebit == intAvail <= extOut

-----------------------------------------------------------------------------
(* Properties *)

\* Liveness: with the faults bounded, every transfer ends succeeded or failed, and stays.
Termination == <>[](\A t \in Transfers : rec[t] \in Final)

\* Nothing stays held or pending forever.
HoldsReleased == <>[](extHeld = 0 /\ intPending = 0)

\* A decision is never changed: committed only becomes succeeded, aborted only failed.
DecisionIsFinal ==
    [][\A t \in Transfers :
          /\ rec[t] \in CommitStates => rec'[t] \in CommitStates
          /\ rec[t] \in AbortStates => rec'[t] \in AbortStates]_rec

=============================================================================
