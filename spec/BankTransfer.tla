---------------------------- MODULE BankTransfer ----------------------------
(***************************************************************************)
(* BankTransfer's protocol: pull Amount from the user's account at an      *)
(* external institution into their account in our balance store, with a   *)
(* two-phase reserve/confirm and a durable compare-and-set decision.       *)
(*                                                                         *)
(*  gateway (coordinator)    records the intent `started` (durable), asks  *)
(*                           both participants to Reserve, decides by      *)
(*                           compare-and-set started -> committed|aborted, *)
(*                           and only then sends Confirm (after a commit)  *)
(*                           or Cancel (after an abort) to both; once both *)
(*                           acknowledged, records succeeded|failed.       *)
(*                           Its driver's state is volatile: a crash loses *)
(*                           it, the durable record stays.                 *)
(*  participants             the external institution (debit side: a hold  *)
(*                           moves funds from available to held, a confirm *)
(*                           moves them out) and our balance store (credit *)
(*                           side: a hold is a pending credit, a confirm   *)
(*                           makes it available). One reservation per      *)
(*                           transfer, ever; every call is idempotent; a   *)
(*                           Cancel before any Reserve leaves a tombstone. *)
(*  reconciler               may abort any `started` transfer at any time  *)
(*                           (the same compare-and-set) and re-sends       *)
(*                           Confirm/Cancel for decided ones until both    *)
(*                           acknowledge, then records the outcome.        *)
(*  network                  a set of messages: delivery does not consume  *)
(*                           a message, so every message may be delivered  *)
(*                           any number of times, in any order (unbounded  *)
(*                           duplication and reordering); up to MaxLosses  *)
(*                           messages are lost.                            *)
(*  faults                   message loss (MaxLosses), crashes of the      *)
(*                           gateway or of the reconciler (MaxCrashes in   *)
(*                           all), the coordinator's database unreachable  *)
(*                           when the gateway records (GwGiveUp), timeouts *)
(*                           at any moment. A participant commits before   *)
(*                           it answers, so its crash is a lost request or *)
(*                           a lost reply: covered by message loss.        *)
(*                                                                         *)
(* In the seeds' vocabulary (shared/seeds/003): the user's money that is   *)
(* spendable somewhere is extAvail (at the external institution, alice's   *)
(* account) plus intAvail (with us, bob's); account_total is Funds.        *)
(*   MoneyEventualInvariant  extAvail + intAvail <= Funds at EVERY step:   *)
(*                           money is never created. A hold takes the      *)
(*                           money out of extAvail first, like the seed's  *)
(*                           "withdraw then deposit"; it is in transit     *)
(*                           while held.                                   *)
(*   MoneyInvariant          at rest (every transfer succeeded or failed): *)
(*                           extAvail + intAvail = Funds, nothing held,    *)
(*                           and exactly Amount * (number of succeeded     *)
(*                           transfers) moved: money is never lost.        *)
(* What does NOT hold at every step: intAvail <= extOut ("never credit     *)
(* before debit"). Both confirms are sent at once after the commit, and    *)
(* the balance store may confirm first. What holds instead is             *)
(* CreditBacked: a confirmed credit is always backed by a committed hold   *)
(* or a confirmed debit at the external institution, which can no longer  *)
(* be released (no Cancel is ever sent after a commit). MoneyEventual-     *)
(* Invariant follows from it. CreditAfterDebit below states the stronger   *)
(* relation; TLC finds it violated if you add it to the INVARIANTS.        *)
(*                                                                         *)
(* Plain TLA+ (no PlusCal): the environment (network, faults) reads better *)
(* as actions than as processes. spec/README.md maps every action to the   *)
(* Rust function it models.                                                *)
(***************************************************************************)
EXTENDS Integers, FiniteSets

CONSTANTS
    Transfers,   \* the transfers the client asks for, e.g. {t1, t2}
    Amount,      \* the amount of every transfer, e.g. 1
    Funds,       \* the user's opening balance at the external institution, e.g. 1
    MaxLosses,   \* how many messages the network may lose, e.g. 1
    MaxCrashes   \* how many crashes (gateway or reconciler), e.g. 1

ASSUME /\ IsFiniteSet(Transfers)
       /\ Amount \in Nat \ {0}
       /\ Funds \in Nat
       /\ MaxLosses \in Nat
       /\ MaxCrashes \in Nat

VARIABLES
    \* The coordinator's transfer log (durable): what TransferStore holds.
    rec,
    \* The gateway's driver of each transfer (volatile: a crash forgets it).
    gw,          \* its phase
    gwHeld,      \* legs that answered HELD to its reserves
    gwDec,       \* the decision it proposes, then the one it read back
    gwAcked,     \* legs that acknowledged its confirms or cancels
    \* The reconciler (volatile).
    rcAcked,     \* legs that acknowledged its confirms or cancels
    \* The participants (durable): reservation books and the user's accounts.
    book,        \* book[leg][t]
    extAvail, extHeld, extOut,   \* external account: available, held, moved out
    intPending, intAvail,        \* internal account: pending credit, available
    \* The network and the fault budget.
    msgs,
    losses,
    crashes

gwVars    == << gw, gwHeld, gwDec, gwAcked >>
extVars   == << extAvail, extHeld, extOut >>
intVars   == << intPending, intAvail >>
faultVars == << losses, crashes >>
vars == << rec, gwVars, rcAcked, book, extVars, intVars, msgs, faultVars >>

-----------------------------------------------------------------------------
(* Constants of the model *)

Legs == {"ext", "int"}           \* Leg::External, Leg::Internal
Peers == {"gw", "rc"}            \* who sent a confirm or cancel: gateway, reconciler

RecStates == {"none", "started", "committed", "aborted", "succeeded", "failed"}
Decided == {"committed", "aborted"}
Final == {"succeeded", "failed"}
CommitStates == {"committed", "succeeded"}
AbortStates == {"aborted", "failed"}

\* "none": the client has not called yet, or its intent was never recorded.
\* "idle": no live driver: not begun, finished, handed to the reconciler, or crashed.
GwPhases == {"idle", "intent", "reserving", "deciding", "decided", "settling", "recording"}

\* "tombstone": cancelled before any reserve arrived (a reservation without terms).
BookStates == {"none", "held", "confirmed", "cancelled", "refused", "tombstone"}

\* Every message has the same fields, so that any two can be compared.
\*   reserve   gateway -> leg           peer = "gw", status = "-"
\*   reserved  leg -> gateway           status = "held" | "refused"
\*   confirm   gateway/reconciler -> leg, peer = the sender, status = "-"
\*   cancel    gateway/reconciler -> leg, peer = the sender, status = "-"
\*   settled   leg -> peer              status = "confirmed" | "cancelled" | "rejected"
Msg(type, t, leg, peer, status) ==
    [type |-> type, t |-> t, leg |-> leg, peer |-> peer, status |-> status]

Msgs ==
    [type : {"reserve"}, t : Transfers, leg : Legs, peer : {"gw"}, status : {"-"}]
    \cup [type : {"reserved"}, t : Transfers, leg : Legs, peer : {"gw"},
          status : {"held", "refused"}]
    \cup [type : {"confirm", "cancel"}, t : Transfers, leg : Legs, peer : Peers,
          status : {"-"}]
    \cup [type : {"settled"}, t : Transfers, leg : Legs, peer : Peers,
          status : {"confirmed", "cancelled", "rejected"}]

Replies == {"reserved", "settled"}

Send(ms) == msgs' = msgs \cup ms

\* The settle call a decision calls for, and the acknowledgement it expects.
SettleCall(decision) == IF decision \in CommitStates THEN "confirm" ELSE "cancel"
SettleAck(decision) == IF decision \in CommitStates THEN "confirmed" ELSE "cancelled"

\* What a decision read back from the log means to a driver.
DecisionOf(state) == IF state \in CommitStates THEN "commit" ELSE "abort"

-----------------------------------------------------------------------------
(* Initial state *)

Init ==
    /\ rec = [t \in Transfers |-> "none"]
    /\ gw = [t \in Transfers |-> "idle"]
    /\ gwHeld = [t \in Transfers |-> {}]
    /\ gwDec = [t \in Transfers |-> "none"]
    /\ gwAcked = [t \in Transfers |-> {}]
    /\ rcAcked = [t \in Transfers |-> {}]
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
(* The gateway: ApproveTransfer and the driver of a live request *)

\* ApproveTransfer arrives: the intent is recorded `started`, durable before anyone is
\* called (a client retry after a crash that came before this step is this step too).
Begin(t) ==
    /\ rec[t] = "none"
    /\ rec' = [rec EXCEPT ![t] = "started"]
    /\ gw' = [gw EXCEPT ![t] = "intent"]
    /\ UNCHANGED << gwHeld, gwDec, gwAcked, rcAcked, book, extVars, intVars, msgs, faultVars >>

\* TransferMachine::begin: Reserve on both legs at once.
SendReserves(t) ==
    /\ gw[t] = "intent"
    /\ gw' = [gw EXCEPT ![t] = "reserving"]
    /\ Send({Msg("reserve", t, leg, "gw", "-") : leg \in Legs})
    /\ UNCHANGED << rec, gwHeld, gwDec, gwAcked, rcAcked, book, extVars, intVars, faultVars >>

\* A reserve answer reaches the live driver: commit needs both holds; a refusal aborts.
\* A late answer (after the driver decided) is ignored: the decision's confirm or cancel
\* takes care of whatever it says.
GwOnReserved(t, leg, status) ==
    /\ gw[t] = "reserving"
    /\ Msg("reserved", t, leg, "gw", status) \in msgs
    /\ IF status = "refused"
         THEN /\ gw' = [gw EXCEPT ![t] = "deciding"]
              /\ gwDec' = [gwDec EXCEPT ![t] = "abort"]
              /\ UNCHANGED gwHeld
         ELSE /\ gwHeld' = [gwHeld EXCEPT ![t] = @ \cup {leg}]
              /\ IF gwHeld'[t] = Legs
                   THEN /\ gw' = [gw EXCEPT ![t] = "deciding"]
                        /\ gwDec' = [gwDec EXCEPT ![t] = "commit"]
                   ELSE UNCHANGED << gw, gwDec >>
    /\ UNCHANGED << rec, gwAcked, rcAcked, book, extVars, intVars, msgs, faultVars >>

\* The reserve deadline passes before both legs held, or a reserve call failed (an
\* unknown answer: a hold may or may not exist): only an abort is safe.
GwReserveTimeout(t) ==
    /\ gw[t] = "reserving"
    /\ gw' = [gw EXCEPT ![t] = "deciding"]
    /\ gwDec' = [gwDec EXCEPT ![t] = "abort"]
    /\ UNCHANGED << rec, gwHeld, gwAcked, rcAcked, book, extVars, intVars, msgs, faultVars >>

\* RecordDecision: compare-and-set started -> committed | aborted, then read the row back.
\* The driver follows what the log holds, which may be a decision someone else recorded
\* first; if someone even finished the transfer meanwhile, there is nothing left to do.
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
    /\ UNCHANGED << gwAcked, rcAcked, book, extVars, intVars, msgs, faultVars >>

\* Persist-before-send: Confirm (after a commit) or Cancel (after an abort) both legs,
\* only now that the decision is durable. A crash between the two steps is the crash
\* tests' "after_decision" fault point.
GwSendSettle(t) ==
    /\ gw[t] = "decided"
    /\ gw' = [gw EXCEPT ![t] = "settling"]
    /\ Send({Msg(IF gwDec[t] = "commit" THEN "confirm" ELSE "cancel", t, leg, "gw", "-")
                : leg \in Legs})
    /\ UNCHANGED << rec, gwHeld, gwDec, gwAcked, rcAcked, book, extVars, intVars, faultVars >>

\* A leg acknowledged the driver's confirm or cancel.
GwOnSettled(t, leg) ==
    /\ gw[t] = "settling"
    /\ Msg("settled", t, leg, "gw",
           IF gwDec[t] = "commit" THEN "confirmed" ELSE "cancelled") \in msgs
    /\ gwAcked' = [gwAcked EXCEPT ![t] = @ \cup {leg}]
    /\ gw' = [gw EXCEPT ![t] = IF gwAcked'[t] = Legs THEN "recording" ELSE "settling"]
    /\ UNCHANGED << rec, gwHeld, gwDec, rcAcked, book, extVars, intVars, msgs, faultVars >>

\* The settle deadline passes: the client is answered PROCESSING (after a commit) or
\* FAILED (after an abort) and the reconciler finishes.
GwSettleTimeout(t) ==
    /\ gw[t] = "settling"
    /\ gw' = [gw EXCEPT ![t] = "idle"]
    /\ gwDec' = [gwDec EXCEPT ![t] = "none"]
    /\ gwAcked' = [gwAcked EXCEPT ![t] = {}]
    /\ UNCHANGED << rec, gwHeld, rcAcked, book, extVars, intVars, msgs, faultVars >>

\* Both legs acknowledged: record the outcome, guarded by the decision
\* (committed -> succeeded, aborted -> failed; already final: unchanged).
GwRecordOutcome(t) ==
    /\ gw[t] = "recording"
    /\ rec' = [rec EXCEPT ![t] = IF @ = "committed" THEN "succeeded"
                                 ELSE IF @ = "aborted" THEN "failed"
                                 ELSE @]
    /\ gw' = [gw EXCEPT ![t] = "idle"]
    /\ gwDec' = [gwDec EXCEPT ![t] = "none"]
    /\ gwAcked' = [gwAcked EXCEPT ![t] = {}]
    /\ UNCHANGED << gwHeld, rcAcked, book, extVars, intVars, msgs, faultVars >>

-----------------------------------------------------------------------------
(* The participants: the reservation book (one per leg) and the user's accounts *)

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
           /\ UNCHANGED << extVars >>

Release(leg) ==
    IF leg = "ext"
      THEN /\ extHeld' = extHeld - Amount
           /\ extAvail' = extAvail + Amount
           /\ UNCHANGED << extOut, intVars >>
      ELSE /\ intPending' = intPending - Amount
           /\ UNCHANGED << extVars, intAvail >>

\* How a first reserve can end: the external institution holds the funds if they are
\* available; our balance store's screening (antifraud, limits, rate limit) may refuse.
ReserveOutcomes(leg) ==
    IF leg = "ext"
      THEN IF extAvail >= Amount THEN {"held"} ELSE {"refused"}
      ELSE {"held", "refused"}

\* Reserve: one reservation per transfer, ever. A replay answers what is recorded: HELD
\* for held or confirmed; not held for refused, cancelled, or a tombstone.
Reserve(leg, t) ==
    /\ Msg("reserve", t, leg, "gw", "-") \in msgs
    /\ IF book[leg][t] = "none"
         THEN \E outcome \in ReserveOutcomes(leg) :
                /\ book' = [book EXCEPT ![leg][t] = outcome]
                /\ IF outcome = "held" THEN Hold(leg) ELSE UNCHANGED << extVars, intVars >>
                /\ Send({Msg("reserved", t, leg, "gw", outcome)})
         ELSE /\ Send({Msg("reserved", t, leg, "gw",
                           IF book[leg][t] \in {"held", "confirmed"} THEN "held" ELSE "refused")})
              /\ UNCHANGED << book, extVars, intVars >>
    /\ UNCHANGED << rec, gwVars, rcAcked, faultVars >>

\* Confirm: a hold becomes a movement; a replay answers CONFIRMED again; anything else
\* cannot be confirmed (FAILED_PRECONDITION, "rejected": NoRejectedSettle shows it never
\* happens).
Confirm(leg, t, peer) ==
    /\ Msg("confirm", t, leg, peer, "-") \in msgs
    /\ IF book[leg][t] = "held"
         THEN /\ book' = [book EXCEPT ![leg][t] = "confirmed"]
              /\ Move(leg)
              /\ Send({Msg("settled", t, leg, peer, "confirmed")})
         ELSE /\ Send({Msg("settled", t, leg, peer,
                           IF book[leg][t] = "confirmed" THEN "confirmed" ELSE "rejected")})
              /\ UNCHANGED << book, extVars, intVars >>
    /\ UNCHANGED << rec, gwVars, rcAcked, faultVars >>

\* Cancel: a hold is released; with no reservation yet, a tombstone is recorded so that
\* a late reserve is refused; a replay (cancelled, refused, tombstone) answers again; a
\* confirmed reservation cannot be cancelled ("rejected").
Cancel(leg, t, peer) ==
    /\ Msg("cancel", t, leg, peer, "-") \in msgs
    /\ IF book[leg][t] \in {"none", "held"}
         THEN /\ book' = [book EXCEPT ![leg][t] =
                            IF book[leg][t] = "none" THEN "tombstone" ELSE "cancelled"]
              /\ IF book[leg][t] = "held" THEN Release(leg) ELSE UNCHANGED << extVars, intVars >>
              /\ Send({Msg("settled", t, leg, peer, "cancelled")})
         ELSE /\ Send({Msg("settled", t, leg, peer,
                           IF book[leg][t] = "confirmed" THEN "rejected" ELSE "cancelled")})
              /\ UNCHANGED << book, extVars, intVars >>
    /\ UNCHANGED << rec, gwVars, rcAcked, faultVars >>

-----------------------------------------------------------------------------
(* The reconciler (and a retried request, which aborts a stale transfer the same way) *)

\* Abort a transfer still undecided: the same compare-and-set as the gateway's. The code
\* waits until the transfer is older than the gateway's budget; the model lets it happen
\* at any moment, racing the live driver.
RcAbort(t) ==
    /\ rec[t] = "started"
    /\ rec' = [rec EXCEPT ![t] = "aborted"]
    /\ UNCHANGED << gwVars, rcAcked, book, extVars, intVars, msgs, faultVars >>

\* Drive a decided transfer from its record alone: Confirm (committed) or Cancel
\* (aborted) both legs again; again after a loss (retries with backoff).
RcSend(t) ==
    /\ rec[t] \in Decided
    /\ Send({Msg(SettleCall(rec[t]), t, leg, "rc", "-") : leg \in Legs})
    /\ UNCHANGED << rec, gwVars, rcAcked, book, extVars, intVars, faultVars >>

RcOnSettled(t, leg) ==
    /\ rec[t] \in Decided
    /\ Msg("settled", t, leg, "rc", SettleAck(rec[t])) \in msgs
    /\ rcAcked' = [rcAcked EXCEPT ![t] = @ \cup {leg}]
    /\ UNCHANGED << rec, gwVars, book, extVars, intVars, msgs, faultVars >>

\* Both legs acknowledged: record the outcome (guarded by the decision).
RcRecordOutcome(t) ==
    /\ rec[t] \in Decided
    /\ rcAcked[t] = Legs
    /\ rec' = [rec EXCEPT ![t] = IF @ = "committed" THEN "succeeded" ELSE "failed"]
    /\ rcAcked' = [rcAcked EXCEPT ![t] = {}]
    /\ UNCHANGED << gwVars, book, extVars, intVars, msgs, faultVars >>

-----------------------------------------------------------------------------
(* Faults *)

\* The network loses a message (a request before it arrives, or a reply).
Lose(m) ==
    /\ losses < MaxLosses
    /\ m \in msgs
    /\ msgs' = msgs \ {m}
    /\ losses' = losses + 1
    /\ UNCHANGED << rec, gwVars, rcAcked, book, extVars, intVars, crashes >>

\* The gateway crashes (and restarts): every driver is forgotten and the replies on
\* their way to it are dropped. Requests already sent may still arrive. The durable log
\* is intact; a restarted gateway drives nothing it did not start.
GwCrash ==
    /\ crashes < MaxCrashes
    /\ \E t \in Transfers : gw[t] /= "idle"
    /\ gw' = [t \in Transfers |-> "idle"]
    /\ gwHeld' = [t \in Transfers |-> {}]
    /\ gwDec' = [t \in Transfers |-> "none"]
    /\ gwAcked' = [t \in Transfers |-> {}]
    /\ msgs' = {m \in msgs : ~(m.type \in Replies /\ m.peer = "gw")}
    /\ crashes' = crashes + 1
    /\ UNCHANGED << rec, rcAcked, book, extVars, intVars, losses >>

\* The reconciler crashes (and restarts): what it was told is forgotten.
RcCrash ==
    /\ crashes < MaxCrashes
    /\ \/ \E t \in Transfers : rcAcked[t] /= {}
       \/ \E m \in msgs : m.type \in Replies /\ m.peer = "rc"
    /\ rcAcked' = [t \in Transfers |-> {}]
    /\ msgs' = {m \in msgs : ~(m.type \in Replies /\ m.peer = "rc")}
    /\ crashes' = crashes + 1
    /\ UNCHANGED << rec, gwVars, book, extVars, intVars, losses >>

\* The coordinator's database is unreachable when the driver records the decision or the
\* outcome: the driver stops (StoreUnavailable) and the transfer stays as recorded.
GwGiveUp(t) ==
    /\ gw[t] \in {"deciding", "recording"}
    /\ gw' = [gw EXCEPT ![t] = "idle"]
    /\ gwHeld' = [gwHeld EXCEPT ![t] = {}]
    /\ gwDec' = [gwDec EXCEPT ![t] = "none"]
    /\ gwAcked' = [gwAcked EXCEPT ![t] = {}]
    /\ UNCHANGED << rec, rcAcked, book, extVars, intVars, msgs, faultVars >>

-----------------------------------------------------------------------------
(* The specification *)

\* Every step that is not a fault. Timeouts are here: a deadline always passes.
Progress ==
    \/ \E t \in Transfers :
          \/ Begin(t)
          \/ SendReserves(t)
          \/ GwReserveTimeout(t)
          \/ GwRecordDecision(t)
          \/ GwSendSettle(t)
          \/ GwSettleTimeout(t)
          \/ GwRecordOutcome(t)
          \/ RcAbort(t)
          \/ RcSend(t)
          \/ RcRecordOutcome(t)
          \/ \E leg \in Legs :
                \/ GwOnSettled(t, leg)
                \/ RcOnSettled(t, leg)
                \/ Reserve(leg, t)
                \/ \E status \in {"held", "refused"} : GwOnReserved(t, leg, status)
                \/ \E peer \in Peers : Confirm(leg, t, peer) \/ Cancel(leg, t, peer)

Fault ==
    \/ \E m \in msgs : Lose(m)
    \/ GwCrash
    \/ RcCrash
    \/ \E t \in Transfers : GwGiveUp(t)

Next == Progress \/ Fault

\* Weak fairness of the non-fault steps taken together: the system does not stop while
\* some non-fault step can still change the state. Faults are never forced. Every run
\* has finitely many non-stuttering steps (faults are bounded and every non-fault step
\* moves some part of the state forward for good), so fairness only matters where a run
\* ends; weak fairness of each action separately would forbid the same endings. One
\* fairness condition keeps TLC's liveness check to a single pass.
Spec == Init /\ [][Next]_vars /\ WF_vars(Progress)

-----------------------------------------------------------------------------
(* Invariants *)

TypeOK ==
    /\ rec \in [Transfers -> RecStates]
    /\ gw \in [Transfers -> GwPhases]
    /\ gwHeld \in [Transfers -> SUBSET Legs]
    /\ gwDec \in [Transfers -> {"none", "commit", "abort"}]
    /\ gwAcked \in [Transfers -> SUBSET Legs]
    /\ rcAcked \in [Transfers -> SUBSET Legs]
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

\* The balances are exactly what the reservation books say (each reservation row and
\* its balance change are one database transaction).
Count(leg, state) == Cardinality({t \in Transfers : book[leg][t] = state})
BalancesMatchBooks ==
    /\ extHeld = Amount * Count("ext", "held")
    /\ extOut = Amount * Count("ext", "confirmed")
    /\ intPending = Amount * Count("int", "held")
    /\ intAvail = Amount * Count("int", "confirmed")

\* Seed 003's MoneyEventualInvariant (alice + bob <= account_total), at every step:
\* the money the user can spend, there and here, never exceeds what there was.
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
          /\ \E leg \in Legs : book[leg][t] \in {"none", "cancelled", "refused", "tombstone"}

\* Persist-before-send: no Confirm exists (sent, let alone applied) unless the commit is
\* durable, and no Cancel after a commit.
NoConfirmWithoutCommit ==
    /\ \A t \in Transfers, leg \in Legs :
          book[leg][t] = "confirmed" => rec[t] \in CommitStates
    /\ \A m \in msgs : m.type = "confirm" => rec[m.t] \in CommitStates
NoCancelAfterCommit ==
    \A m \in msgs : m.type = "cancel" => rec[m.t] \in AbortStates

\* FAILED is told as soon as the abort is recorded: from then on nothing is or will be
\* confirmed (no Confirm exists for it, by NoConfirmWithoutCommit).
AbortMovesNothing ==
    \A t \in Transfers : rec[t] \in AbortStates =>
        \A leg \in Legs : book[leg][t] /= "confirmed"

SucceededMeansBothConfirmed ==
    \A t \in Transfers : rec[t] = "succeeded" =>
        \A leg \in Legs : book[leg][t] = "confirmed"

\* Failed: nothing held anywhere, and a late reserve can no longer hold (both legs have
\* a reservation: a replay changes nothing).
FailedMeansNothingHeld ==
    \A t \in Transfers : rec[t] = "failed" =>
        \A leg \in Legs : book[leg][t] \in {"cancelled", "refused", "tombstone"}

\* No confirm or cancel is ever refused by a participant.
NoRejectedSettle == \A m \in msgs : ~(m.type = "settled" /\ m.status = "rejected")

\* A live driver past its decision acts on what the log holds.
DriverFollowsLog ==
    \A t \in Transfers : gw[t] \in {"decided", "settling", "recording"} =>
        \/ gwDec[t] = "commit" /\ rec[t] \in CommitStates
        \/ gwDec[t] = "abort" /\ rec[t] \in AbortStates

\* At rest: every transfer succeeded or failed. Messages may still be in flight (late
\* duplicates, reserves after a tombstone): delivering them changes no balance.
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

\* NOT an invariant of this protocol (see the header): both confirms go out at once and
\* the balance store may apply its confirm first. Add it to the INVARIANTS to see TLC's
\* counterexample.
CreditAfterDebit == intAvail <= extOut

-----------------------------------------------------------------------------
(* Properties *)

\* Liveness: with the faults bounded, every transfer ends succeeded or failed, and stays.
Termination == <>[](\A t \in Transfers : rec[t] \in Final)

\* Nothing stays held forever.
HoldsReleased == <>[](extHeld = 0 /\ intPending = 0)

\* A decision is never changed: committed only becomes succeeded, aborted only failed.
DecisionIsFinal ==
    [][\A t \in Transfers :
          /\ rec[t] \in CommitStates => rec'[t] \in CommitStates
          /\ rec[t] \in AbortStates => rec'[t] \in AbortStates]_rec

=============================================================================
