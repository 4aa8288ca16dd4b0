--------------------------- MODULE NaiveTransfer ---------------------------
(***************************************************************************)
(* The naive design of the seed document (shared/seeds/000): the API       *)
(* gateway calls the external institution's StartTransfer, which moves the *)
(* money out at once, then our internal store's UpdateUserBalance; when    *)
(* that call fails, it enqueues a reversal that a background worker        *)
(* carries out (UndoStartTransfer).                                        *)
(*                                                                         *)
(* Written in the vocabulary of the second seed (shared/seeds/003): the    *)
(* two accounts are `ext_account` (the user's money at the external        *)
(* institution, alice's account there) and `int_account` (the user's       *)
(* balance with us, bob's), `account_total` is what must be conserved,     *)
(* and there are two invariants:                                           *)
(*                                                                         *)
(*   MoneyEventualInvariant  ext_account + int_account <= account_total,   *)
(*                           at every step: money may be "in transit"      *)
(*                           (withdrawn, not yet deposited), never created.*)
(*   MoneyInvariant          ext_account + int_account = account_total,    *)
(*                           at rest: nothing lost once everything stops.  *)
(*                                                                         *)
(* "At rest" (AtRest below) means: every gateway request has finished or   *)
(* crashed (its pc is "Done") and the reversal queue is empty. The         *)
(* worker's reversal is one atomic step, so no reversal is half done.      *)
(*                                                                         *)
(* Faults, as the seed's requirements list them:                           *)
(*  - the internal store may refuse (antifraud, limits, rate limit);       *)
(*  - LoseReplies: the internal store applies UpdateUserBalance but its    *)
(*    reply is lost, so the gateway sees a failure (timeout);              *)
(*  - GatewayCrashes: the gateway crashes between StartTransfer and        *)
(*    UpdateUserBalance. Nothing durable remembers the transfer, so nobody *)
(*    finishes or reverses it.                                             *)
(*                                                                         *)
(* THIS SPECIFICATION IS EXPECTED TO FAIL. With NaiveTransfer.cfg (both    *)
(* faults on, the default single TLC worker, breadth-first), TLC reports   *)
(* "Invariant MoneyInvariant is violated" with this 3-state trace:         *)
(*   1. Init: ext_account = 10, int_account = 0, account_total = 10,       *)
(*      queue = <<>>, pc[1] = "StartTransfer", pc[0] = "Reverse".          *)
(*   2. StartTransfer(1): the external institution moves 5 out:            *)
(*      ext_account = 5.                                                   *)
(*   3. UpdateUserBalance(1), crash branch: the gateway dies before        *)
(*      calling the internal store: pc[1] = "Done", queue = <<>>.          *)
(*      At rest, ext_account + int_account = 5 /= 10: MONEY LOST (5 left   *)
(*      the external account and never arrived, and no reversal exists).   *)
(* With NaiveTransferLostReply.cfg (no gateway crash), TLC reports         *)
(* "Invariant MoneyEventualInvariant is violated" with this 5-state trace: *)
(*   1. Init as above.                                                     *)
(*   2. StartTransfer(1): ext_account = 5.                                 *)
(*   3. UpdateUserBalance(1), lost-reply branch: the internal store        *)
(*      credits 5 (int_account = 5) but the gateway sees a failure:        *)
(*      ok[1] = FALSE.                                                     *)
(*   4. Answer(1): the gateway enqueues the reversal (queue = <<1>>) and   *)
(*      answers FAILED.                                                    *)
(*   5. Reverse: the worker undoes StartTransfer: ext_account = 10, while  *)
(*      int_account is still 5: 15 > 10, MONEY CREATED (the user has the   *)
(*      5 on both sides; the client was even told FAILED).                 *)
(*                                                                         *)
(* Our protocol (BankTransfer.tla) answers both: the intent is durable     *)
(* before any call, nothing moves before a durable decision, and the       *)
(* decision is taken once (compare-and-set), so neither trace exists.      *)
(*                                                                         *)
(* The PlusCal algorithm is in the comment below; the TLA+ between BEGIN   *)
(* and END TRANSLATION was written by hand to be what the PlusCal          *)
(* translator produces from it (re-translating gives an equivalent         *)
(* specification with the same names, so the definitions after it keep     *)
(* working). Run: see spec/README.md.                                      *)
(***************************************************************************)
EXTENDS Naturals, Sequences, TLC

CONSTANTS
    Requests,        \* the ApproveTransfer requests (gateway processes), e.g. {1}
    Funds,           \* the user's opening balance at the external institution
    Amount,          \* the amount of every transfer
    GatewayCrashes,  \* BOOLEAN: may a gateway crash between the two calls?
    LoseReplies      \* BOOLEAN: may the internal store's reply be lost?

ASSUME /\ Requests \subseteq Nat \ {0}   \* process 0 is the background worker
       /\ Funds \in Nat
       /\ Amount \in Nat \ {0}
       /\ GatewayCrashes \in BOOLEAN
       /\ LoseReplies \in BOOLEAN

(* --algorithm NaiveTransfer
variables
    ext_account = Funds,                        \* the user's money at the external institution
    int_account = 0,                            \* the user's balance in our internal store
    account_total = ext_account + int_account,  \* as in the seed: what must be conserved
    queue = <<>>;                               \* the reversal queue of the background worker

define
    AtRest == /\ \A r \in Requests : pc[r] = "Done"
              /\ queue = <<>>
    MoneyInvariant == AtRest => ext_account + int_account = account_total
    MoneyEventualInvariant == ext_account + int_account <= account_total
    NoOverdraft == ext_account >= 0 /\ int_account >= 0
end define;

fair process Gateway \in Requests
variables ok = FALSE;   \* what the gateway believes UpdateUserBalance did
begin
  StartTransfer:
    \* The external institution checks and moves the money in one step.
    if ext_account >= Amount then
        ext_account := ext_account - Amount;
    else
        goto Done;      \* refused: the client is told FAILED, nothing moved
    end if;
  UpdateUserBalance:
    either
        int_account := int_account + Amount;   \* applied; SUCCESS arrives
        ok := TRUE;
    or
        ok := FALSE;                           \* refused (antifraud...); FAILED arrives
    or
        await LoseReplies;
        int_account := int_account + Amount;   \* applied, but the reply is lost:
        ok := FALSE;                           \* the gateway sees a timeout
    or
        await GatewayCrashes;
        goto Done;                             \* the gateway crashes before the call
    end either;
  Answer:
    if ~ok then
        queue := Append(queue, self);          \* compensating transaction, for later
    end if;
end process;

fair process Worker = 0
begin
  Reverse:
    while queue /= <<>> \/ \E r \in Requests : pc[r] /= "Done" do
        await queue /= <<>>;
        ext_account := ext_account + Amount;   \* UndoStartTransfer
        queue := Tail(queue);
    end while;
end process;

end algorithm; *)
\* BEGIN TRANSLATION
VARIABLES ext_account, int_account, account_total, queue, pc

(* define statement *)
AtRest == /\ \A r \in Requests : pc[r] = "Done"
          /\ queue = <<>>
MoneyInvariant == AtRest => ext_account + int_account = account_total
MoneyEventualInvariant == ext_account + int_account <= account_total
NoOverdraft == ext_account >= 0 /\ int_account >= 0

VARIABLE ok

vars == << ext_account, int_account, account_total, queue, pc, ok >>

ProcSet == (Requests) \cup {0}

Init == (* Global variables *)
        /\ ext_account = Funds
        /\ int_account = 0
        /\ account_total = ext_account + int_account
        /\ queue = <<>>
        (* Process Gateway *)
        /\ ok = [self \in Requests |-> FALSE]
        /\ pc = [self \in ProcSet |-> CASE self \in Requests -> "StartTransfer"
                                        [] self = 0 -> "Reverse"]

StartTransfer(self) == /\ pc[self] = "StartTransfer"
                       /\ IF ext_account >= Amount
                             THEN /\ ext_account' = ext_account - Amount
                                  /\ pc' = [pc EXCEPT ![self] = "UpdateUserBalance"]
                             ELSE /\ pc' = [pc EXCEPT ![self] = "Done"]
                                  /\ UNCHANGED ext_account
                       /\ UNCHANGED << int_account, account_total, queue, ok >>

UpdateUserBalance(self) == /\ pc[self] = "UpdateUserBalance"
                           /\ \/ /\ int_account' = int_account + Amount
                                 /\ ok' = [ok EXCEPT ![self] = TRUE]
                                 /\ pc' = [pc EXCEPT ![self] = "Answer"]
                              \/ /\ ok' = [ok EXCEPT ![self] = FALSE]
                                 /\ pc' = [pc EXCEPT ![self] = "Answer"]
                                 /\ UNCHANGED int_account
                              \/ /\ LoseReplies
                                 /\ int_account' = int_account + Amount
                                 /\ ok' = [ok EXCEPT ![self] = FALSE]
                                 /\ pc' = [pc EXCEPT ![self] = "Answer"]
                              \/ /\ GatewayCrashes
                                 /\ pc' = [pc EXCEPT ![self] = "Done"]
                                 /\ UNCHANGED <<int_account, ok>>
                           /\ UNCHANGED << ext_account, account_total, queue >>

Answer(self) == /\ pc[self] = "Answer"
                /\ IF ~ok[self]
                      THEN /\ queue' = Append(queue, self)
                      ELSE /\ TRUE
                           /\ queue' = queue
                /\ pc' = [pc EXCEPT ![self] = "Done"]
                /\ UNCHANGED << ext_account, int_account, account_total, ok >>

Gateway(self) == StartTransfer(self) \/ UpdateUserBalance(self)
                    \/ Answer(self)

Reverse == /\ pc[0] = "Reverse"
           /\ IF queue /= <<>> \/ \E r \in Requests : pc[r] /= "Done"
                 THEN /\ queue /= <<>>
                      /\ ext_account' = ext_account + Amount
                      /\ queue' = Tail(queue)
                      /\ pc' = [pc EXCEPT ![0] = "Reverse"]
                 ELSE /\ pc' = [pc EXCEPT ![0] = "Done"]
                      /\ UNCHANGED << ext_account, queue >>
           /\ UNCHANGED << int_account, account_total, ok >>

Worker == Reverse

(* Allow infinite stuttering to prevent deadlock on termination. *)
Terminating == /\ \A self \in ProcSet: pc[self] = "Done"
               /\ UNCHANGED vars

Next == Worker
           \/ (\E self \in Requests: Gateway(self))
           \/ Terminating

Spec == /\ Init /\ [][Next]_vars
        /\ \A self \in Requests : WF_vars(Gateway(self))
        /\ WF_vars(Worker)

Termination == <>(\A self \in ProcSet: pc[self] = "Done")

\* END TRANSLATION

=============================================================================
