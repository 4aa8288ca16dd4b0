#!/usr/bin/env bash
# Starts the four services from BIN_DIR (default target/release) with the demo
# configuration in config/, on SQLite files under data/, and stops them all on Ctrl-C.
# Logs go to data/logs/<service>.log. Every port speaks TLS: the development CA, one
# certificate per service, the operator's client certificate and the token signing key are
# created under data/pki/ on first start (only what is missing).
set -euo pipefail
cd "$(dirname "$0")/.."
bin_dir=${1:-target/release}
mkdir -p data/logs
grpcurl=.venv/bin/grpcurl
pki_dir=data/pki
"$bin_dir/banktransfer-pki" init --dir "$pki_dir" >/dev/null

pids=()
stop() {
    echo
    echo "stopping services (SIGTERM)..."
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait || true
    echo "stopped."
}
trap stop EXIT
trap 'exit 130' INT TERM

start() { # name config port
    "$bin_dir/$1" --config "config/$2.toml" >>"data/logs/$1.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 100); do
        if "$grpcurl" -cacert "$pki_dir/ca.pem" -max-time 1 "127.0.0.1:$3" grpc.health.v1.Health/Check >/dev/null 2>&1; then
            printf '  %-28s 127.0.0.1:%s  (log: data/logs/%s.log)\n' "$1" "$3" "$1"
            return 0
        fi
        if ! kill -0 "${pids[-1]}" 2>/dev/null; then
            echo "$1 exited during start-up; last log lines:" >&2
            tail -n 20 "data/logs/$1.log" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "$1 did not become healthy in 10 s; see data/logs/$1.log" >&2
    exit 1
}

echo "starting BankTransfer (SQLite under data/):"
start mock-external-institution external-institution 50052
start internal-balance-store balance-store 50053
start gateway-coordinator gateway-coordinator 50051
start reconciler reconciler 50054
cat <<TXT

All four services are up, with TLS (CA: $pki_dir/ca.pem). Demo users: alice (ext-alice
1000.00 USD -> int-alice 0), bob (ext-bob 1000.00 USD -> int-bob 0). Try, from another
terminal (README.md has the whole tour):

  .venv/bin/grpcurl -cacert $pki_dir/ca.pem -H "authorization: Bearer \$(make -s token USER=alice)" -d '{"idempotency_key":"demo-1","user_id":"alice","external_account_id":"ext-alice","internal_account_id":"int-alice","amount":{"minor_units":25000,"currency":"USD"}}' 127.0.0.1:50051 banktransfer.gateway.v1.TransferService/ApproveTransfer

Press Ctrl-C to stop.
TXT
wait
