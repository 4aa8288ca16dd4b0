#!/usr/bin/env bash
# The container smoke test (CI, after `make images`): the four images as deployed (read-only
# root filesystem, non-root, no capabilities, configuration from deploy/ mounted read-only,
# secrets as mounted files, the database URL by environment) on host networking against
# this machine's PostgreSQL, with fresh databases. Waits for the plaintext health-only
# listeners (what kubelet probes), sends one transfer through the gateway with grpcurl,
# reads both ledgers back and the reconciler's audit, then stops every container with
# SIGTERM and checks that each exits 0.
#
# Peers and the database are named `localhost`, so that the static binary's name lookup
# (glibc's, linked in) is exercised inside the empty image.
# POSTGRES (default postgres://postgres@localhost:5432) names the server; IMAGE_TAG
# (default: scripts/image-tag.sh) the images. Ports: 5105x (services) and 5106x (health),
# so a `make run` on 5005x keeps going.
set -euo pipefail
cd "$(dirname "$0")/.."

POSTGRES=${POSTGRES:-postgres://postgres@localhost:5432}
PREFIX=${IMAGE_PREFIX:-banktransfer/}
TAG=${IMAGE_TAG:-$(scripts/image-tag.sh)}
TRIPLE=x86_64-unknown-linux-gnu
PKI_BIN=${CARGO_TARGET_DIR:-target}/$TRIPLE/release/banktransfer-pki
GRPCURL=.venv/bin/grpcurl

scripts/ensure-docker.sh
make -s tools >/dev/null
for service in gateway-coordinator mock-external-institution internal-balance-store reconciler; do
  docker image inspect "$PREFIX$service:$TAG" >/dev/null 2>&1 \
    || { echo "container-smoke: no image $PREFIX$service:$TAG: run make images" >&2; exit 1; }
done

run_id=smoke-$$
work=$(mktemp -d)
containers=()
databases=()
cleanup() {
  for c in "${containers[@]}"; do docker rm -f "$c" >/dev/null 2>&1 || true; done
  for db in "${databases[@]}"; do psql "$POSTGRES/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Fresh databases, one per owner (the gateway and the reconciler share the coordinator's).
for owner in coordinator external balance; do
  db=bt_${run_id//-/_}_$owner
  psql "$POSTGRES/postgres" -qc "CREATE DATABASE $db" >/dev/null
  databases+=("$db")
done
db_url() { echo "$POSTGRES/bt_${run_id//-/_}_$1"; }

# Certificates and the token key, laid out as the Kubernetes secrets are mounted
# (deploy/create-secrets.sh): tls.crt, tls.key, ca.crt; token-verify-key.pem.
"$PKI_BIN" init --dir "$work/pki" >/dev/null
for service in gateway-coordinator mock-external-institution internal-balance-store reconciler; do
  mkdir -p "$work/tls/$service"
  cp "$work/pki/$service.pem" "$work/tls/$service/tls.crt"
  cp "$work/pki/$service-key.pem" "$work/tls/$service/tls.key"
  cp "$work/pki/ca.pem" "$work/tls/$service/ca.crt"
done
mkdir -p "$work/auth"
cp "$work/pki/token-verify-key.pem" "$work/auth/"
# The containers run as 65532 (Kubernetes: fsGroup and defaultMode 0440 do this).
if [ "$(id -u)" = 0 ]; then
  chown -R 65532:65532 "$work/tls" "$work/auth"
else
  chmod -R a+rX "$work/tls" "$work/auth"
fi
# The configuration exactly as the ConfigMaps carry it (the participants with the dev
# overlay's demo accounts).
mkdir -p "$work/config"
cp deploy/base/config/gateway-coordinator.toml deploy/base/config/reconciler.toml "$work/config/"
cp deploy/overlays/dev/config/*.toml "$work/config/"

start() { # SERVICE PORT HEALTH_PORT DATABASE [ENV...]
  local service=$1 port=$2 health=$3 db=$4
  shift 4
  local name=bt-$run_id-$service
  local auth=()
  if [ "$service" = gateway-coordinator ]; then
    auth=(-v "$work/auth:/etc/banktransfer/auth:ro")
  fi
  docker run -d --name "$name" --network host --read-only --user 65532:65532 \
    --cap-drop ALL --security-opt no-new-privileges \
    -v "$work/config:/etc/banktransfer/config:ro" \
    -v "$work/tls/$service:/etc/banktransfer/tls:ro" "${auth[@]}" \
    -e BANKTRANSFER__DATABASE_URL="$(db_url "$db")" \
    -e BANKTRANSFER__LISTEN_ADDR="127.0.0.1:$port" \
    -e BANKTRANSFER__SERVER__HEALTH_LISTEN_ADDR="127.0.0.1:$health" \
    "$@" \
    "$PREFIX$service:$TAG" --config "/etc/banktransfer/config/$service.toml" >/dev/null
  containers+=("$name")
}
# A wide budget (the gateway's and the reconciler's alike): this checks the images'
# plumbing, not latency, and the first call pays for TLS handshakes on a busy CI machine.
peers=(-e BANKTRANSFER__EXTERNAL_URL=https://localhost:51052 -e BANKTRANSFER__BALANCE_STORE_URL=https://localhost:51053
       -e BANKTRANSFER__BUDGET__TOTAL_MS=5000)
start mock-external-institution 51052 51062 external
start internal-balance-store 51053 51063 balance
start gateway-coordinator 51051 51061 coordinator "${peers[@]}"
start reconciler 51054 51064 coordinator "${peers[@]}"

# The health-only listeners answer once a service has migrated and serves (the probes).
# grpc.health.v1 in a file of its own: no reflection on that port, nor in production.
mkdir -p "$work/proto/grpc/health/v1"
cat > "$work/proto/grpc/health/v1/health.proto" <<'PROTO'
syntax = "proto3";
package grpc.health.v1;
message HealthCheckRequest { string service = 1; }
message HealthCheckResponse {
  enum ServingStatus { UNKNOWN = 0; SERVING = 1; NOT_SERVING = 2; SERVICE_UNKNOWN = 3; }
  ServingStatus status = 1;
}
service Health { rpc Check(HealthCheckRequest) returns (HealthCheckResponse); }
PROTO
for health in 51061 51062 51063 51064; do
  for attempt in $(seq 1 100); do
    if "$GRPCURL" -plaintext -max-time 2 -import-path "$work/proto" -proto grpc/health/v1/health.proto \
        "127.0.0.1:$health" grpc.health.v1.Health/Check 2>/dev/null | grep -q '"status": "SERVING"'; then
      break
    fi
    if [ "$attempt" = 100 ]; then
      echo "container-smoke: nothing SERVING on health port $health" >&2
      for c in "${containers[@]}"; do echo "--- $c" >&2; docker logs --tail 20 "$c" >&2; done
      exit 1
    fi
    sleep 0.2
  done
done
echo "container-smoke: four containers SERVING on their health ports"

# One transfer, then both ledgers and the audit (production configuration: no reflection,
# so grpcurl reads the contracts from proto/).
TLS=(-cacert "$work/pki/ca.pem" -import-path proto)
OP=("${TLS[@]}" -cert "$work/pki/operator.pem" -key "$work/pki/operator-key.pem")
token=$("$PKI_BIN" token --dir "$work/pki" --user alice --ttl-s 600)
expect() { # WHAT PATTERN OUTPUT
  if ! grep -q "$2" <<<"$3"; then
    echo "container-smoke: $1: expected $2 in:" >&2
    echo "$3" >&2
    exit 1
  fi
  echo "container-smoke: $1: ok"
}
answer=$("$GRPCURL" "${TLS[@]}" -proto banktransfer/gateway/v1/gateway.proto -H "authorization: Bearer $token" \
  -d '{"idempotency_key":"smoke-1","user_id":"alice","external_account_id":"ext-alice","internal_account_id":"int-alice","amount":{"minor_units":25000,"currency":"USD"}}' \
  127.0.0.1:51051 banktransfer.gateway.v1.TransferService/ApproveTransfer)
expect "ApproveTransfer 250.00 USD" '"status": "TRANSFER_STATUS_SUCCEEDED"' "$answer"
external=$("$GRPCURL" "${OP[@]}" -proto banktransfer/external/v1/external.proto -d '{"account_id":"ext-alice"}' \
  127.0.0.1:51052 banktransfer.external.v1.ExternalInstitutionService/GetAccount)
expect "ext-alice holds 750.00" '"availableMinorUnits": "75000"' "$external"
internal=$("$GRPCURL" "${OP[@]}" -proto banktransfer/balance_store/v1/balance_store.proto -d '{"account_id":"int-alice"}' \
  127.0.0.1:51053 banktransfer.balance_store.v1.BalanceStoreService/GetAccount)
expect "int-alice holds 250.00" '"availableMinorUnits": "25000"' "$internal"
audit=$("$GRPCURL" "${OP[@]}" -proto banktransfer/reconciler/v1/reconciler.proto -d '{}' \
  127.0.0.1:51054 banktransfer.reconciler.v1.ReconcilerService/Audit)
expect "audit checked the transfer" '"transfersChecked": 1' "$audit"
if grep -q -E '"(mismatches|unmatchedReservations|unexplainedBalances|transfersUnfinished)"' <<<"$audit"; then
  echo "container-smoke: the audit found something: $audit" >&2
  exit 1
fi

# SIGTERM (docker stop), then each must have exited 0 within its grace.
for c in "${containers[@]}"; do
  docker stop --time 20 "$c" >/dev/null
  code=$(docker inspect -f '{{.State.ExitCode}}' "$c")
  if [ "$code" != 0 ]; then
    echo "container-smoke: $c exited $code after SIGTERM" >&2
    docker logs --tail 20 "$c" >&2
    exit 1
  fi
done
echo "container-smoke: four containers stopped by SIGTERM, each exited 0"
for service in gateway-coordinator mock-external-institution internal-balance-store reconciler; do
  size=$(docker image inspect -f '{{.Size}}' "$PREFIX$service:$TAG")
  printf 'container-smoke: image %s%s:%s %s MB\n' "$PREFIX" "$service" "$TAG" "$(awk "BEGIN{printf \"%.1f\", $size/1000000}")"
done
