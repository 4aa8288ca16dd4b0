#!/usr/bin/env bash
# `make deploy-check`: the Kubernetes manifests and the monitoring files, offline.
#  - every overlay renders (kubectl kustomize), passes kubernetes-validate --strict for
#    Kubernetes $K8S_VERSION, and passes checkov with zero failed checks (a skip only as a
#    checkov.io/skip annotation with its reason, next to the resource);
#  - the dev secrets script renders valid Secrets;
#  - promtool: the alerting rules, their unit tests, the local Prometheus configuration;
#  - the PrometheusRule is alerts.yml's groups; the rules and the dashboard use only the
#    metric names deploy/monitoring/README.md lists.
# Installs what it needs: kubernetes-validate and checkov (pinned) into .venv-deploy,
# Debian's prometheus package (promtool) when missing. kubectl must be on the PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_VERSION=1.32.0
KUBERNETES_VALIDATE_VERSION=1.37.0
CHECKOV_VERSION=3.3.30
VENV=.venv-deploy

if ! command -v kubectl >/dev/null; then
  echo "validate-deploy: kubectl is needed (it renders the overlays: kubectl kustomize)" >&2
  exit 1
fi
if ! "$VENV/bin/checkov" --version 2>/dev/null | grep -qx "$CHECKOV_VERSION" \
   || ! "$VENV/bin/pip" show kubernetes-validate 2>/dev/null | grep -qx "Version: $KUBERNETES_VALIDATE_VERSION"; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "checkov==$CHECKOV_VERSION"
fi
if ! command -v promtool >/dev/null; then
  as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q prometheus >/dev/null \
    || { as_root apt-get update -q >/dev/null && \
         as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q prometheus >/dev/null; }
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# Reads checkov's JSON report: prints the counts, and every failed check; fails on any.
cat > "$out/checkov-summary.py" <<'PY'
import json, sys
report = json.load(sys.stdin)
reports = report if isinstance(report, list) else [report]
failed = [c for r in reports for c in r["results"]["failed_checks"]]
passed = sum(r["summary"]["passed"] for r in reports)
skipped = sum(r["summary"]["skipped"] for r in reports)
for check in failed:
    print(f"  FAILED {check['check_id']} {check['check_name']}: {check['resource']}", file=sys.stderr)
version = sys.argv[1]
print(f"  kubernetes-validate {version} --strict: ok; checkov: {passed} passed, {len(failed)} failed, {skipped} skipped")
sys.exit(1 if failed else 0)
PY

validate() { # FILE: schema, then policy
  local file=$1
  "$VENV/bin/kubernetes-validate" --quiet -k "$K8S_VERSION" --strict "$file"
  "$VENV/bin/checkov" -f "$file" --framework kubernetes --skip-download --quiet -o json \
    | "$VENV/bin/python" "$out/checkov-summary.py" "$K8S_VERSION"
}

for overlay in deploy/overlays/*/; do
  name=$(basename "$overlay")
  kubectl kustomize "$overlay" > "$out/$name.yaml"
  echo "overlay $name: $(grep -c '^kind:' "$out/$name.yaml") resources"
  validate "$out/$name.yaml"
done

# The dev secrets, from a throwaway PKI (no cluster: --dry-run).
pki=$out/pki
${CARGO:-cargo} run --quiet -p banktransfer-pki --bin banktransfer-pki -- init --dir "$pki" >/dev/null 2>&1
DRY_RUN=1 deploy/create-secrets.sh "$pki" banktransfer-dev > "$out/secrets.yaml"
echo "dev secrets: $(grep -c '^kind: Secret' "$out/secrets.yaml") Secrets"
"$VENV/bin/kubernetes-validate" --quiet -k "$K8S_VERSION" --strict "$out/secrets.yaml"

# Monitoring.
kubectl kustomize deploy/monitoring/kubernetes > "$out/monitoring.yaml"
echo "monitoring: $(grep -c '^kind:' "$out/monitoring.yaml") resources (custom resources: no schema offline)"
"$VENV/bin/python" deploy/monitoring/render-prometheusrule.py --check
promtool check rules deploy/monitoring/prometheus/alerts.yml
(cd deploy/monitoring/prometheus && promtool test rules alerts_test.yml)
promtool check config deploy/monitoring/prometheus/local.yml >/dev/null
"$VENV/bin/python" - <<'PY'
import json, re, sys, yaml
documented = set(re.findall(r"^\| `([a-z_]+)` \|", open("deploy/monitoring/README.md").read(), re.M))
used = set()
for text in [open("deploy/monitoring/prometheus/alerts.yml").read(),
             json.dumps(json.load(open("deploy/monitoring/grafana/banktransfer.json")))]:
    used |= {re.sub(r"_(bucket|sum|count)$", "", m) for m in re.findall(r"\b((?:banktransfer|grpc_server)_[a-z_]+)", text)}
yaml.safe_load(open("deploy/monitoring/prometheus/scrape.yml"))
missing = used - documented
if missing:
    sys.exit(f"metrics used but not in deploy/monitoring/README.md: {sorted(missing)}")
print(f"monitoring: {len(used)} metric names used, all documented ({len(documented)} documented)")
PY
echo "validate-deploy: ok"
