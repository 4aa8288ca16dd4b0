#!/usr/bin/env bash
# Creates the secrets the Deployments mount, from a PKI directory laid out as
# `banktransfer-pki init` writes it (for trying it out: `make pki` then
#   deploy/create-secrets.sh data/pki banktransfer-dev).
# In production, certificates come from your CA (cert-manager Certificates write secrets
# with the same keys: tls.crt, tls.key, ca.crt; each certificate needs the service's DNS
# name and its SPIFFE id spiffe://banktransfer/<service> as a URI SAN, docs/SECURITY.md).
#
# Usage: deploy/create-secrets.sh PKI_DIR NAMESPACE
# DRY_RUN=1 prints the Secrets instead of applying them (no cluster needed).
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 PKI_DIR NAMESPACE" >&2
  exit 2
fi
pki=$1
namespace=$2

apply() {
  if [ "${DRY_RUN:-}" = 1 ]; then
    echo "---"
    cat
  else
    kubectl apply -f -
  fi
}

for service in gateway-coordinator mock-external-institution internal-balance-store reconciler; do
  kubectl create secret generic "banktransfer-tls-$service" --namespace "$namespace" \
    --type kubernetes.io/tls \
    --from-file=tls.crt="$pki/$service.pem" \
    --from-file=tls.key="$pki/$service-key.pem" \
    --from-file=ca.crt="$pki/ca.pem" \
    --dry-run=client -o yaml | apply
done
# The gateway verifies user tokens with this public key; the signing key stays with
# whoever issues tokens.
kubectl create secret generic banktransfer-token-verify-key --namespace "$namespace" \
  --from-file=token-verify-key.pem="$pki/token-verify-key.pem" \
  --dry-run=client -o yaml | apply
