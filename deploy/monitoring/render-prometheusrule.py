#!/usr/bin/env python3
"""Writes kubernetes/prometheusrule.yaml from prometheus/alerts.yml (the one source of the
rules), or with --check fails when the file is not what it would write."""
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
HEADER = """\
# GENERATED from ../prometheus/alerts.yml by ../render-prometheusrule.py: edit alerts.yml
# and run the script. The Prometheus Operator's form of the same alerting rules.
"""


def render() -> str:
    groups = yaml.safe_load((HERE / "prometheus" / "alerts.yml").read_text())["groups"]
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "banktransfer",
            "labels": {"app.kubernetes.io/part-of": "banktransfer"},
        },
        "spec": {"groups": groups},
    }
    return HEADER + yaml.safe_dump(rule, sort_keys=False, width=100)


def main() -> int:
    target = HERE / "kubernetes" / "prometheusrule.yaml"
    text = render()
    if "--check" in sys.argv[1:]:
        if not target.exists() or target.read_text() != text:
            print(f"{target} is stale: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    target.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
