#!/usr/bin/env bash
# Generates charts/<operator>/ (a Helm chart per operator) from
# hack/chart-template/ and the operator's install manifests in deploy/<operator>/,
# so the chart and `kubectl apply -k deploy/<operator>` install the same CRDs,
# RBAC and webhook objects. e2e/tests/charts.rs fails when charts/ is stale.
#
# Usage: hack/charts.sh            regenerate charts/
#        hack/charts.sh --check    exit 1 (with a diff) if charts/ is not up to date
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OPERATORS=(workshop-operator devserver-operator jvs-operator novacron-operator)
# Files of deploy/<op>/ the chart's own templates replace.
REPLACED="kustomization.yaml namespace.yaml manager.yaml metrics-service.yaml"

declare -A DESCRIPTION=(
  [workshop-operator]="RStudio training workshops (orchestra.io/v1 Workshop)"
  [devserver-operator]="SSH-reachable dev environments with flavors and users (devserver.io/v1)"
  [jvs-operator]="Versioned workspaces and snapshots on the jvs CLI (jvs.io/v1alpha1)"
  [novacron-operator]="QEMU/KVM virtual machines in launcher pods (novacron.io/v1alpha1)"
)

generate() { # generate OP OUT_DIR
  local op=$1 out=$2 deploy="$ROOT/deploy/$1"
  local version description deployment service_account metrics_service namespace group
  version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml")
  description=${DESCRIPTION[$op]:-}
  deployment=$(sed -n '/^metadata:/,/^spec:/s/^  name: //p' "$deploy/manager.yaml")
  namespace=$(sed -n '/^metadata:/,/^spec:/s/^  namespace: //p' "$deploy/manager.yaml")
  service_account=$(sed -n 's/^ *serviceAccountName: //p' "$deploy/manager.yaml")
  metrics_service=$(sed -n '/^metadata:/,/^spec:/s/^  name: //p' "$deploy/metrics-service.yaml")
  group=$(ls "$deploy/crds" | head -1 | cut -d. -f2-); group=${group%.yaml}
  for v in version description deployment namespace service_account metrics_service group; do
    [ -n "${!v}" ] || { echo "charts.sh: cannot read $v for $op from deploy/$op" >&2; exit 1; }
  done

  mkdir -p "$out/templates" "$out/crds"
  (cd "$ROOT/hack/chart-template" && find . -type f) | while read -r f; do
    mkdir -p "$out/$(dirname "$f")"
    sed -e "s|@OP@|$op|g" -e "s|@DESCRIPTION@|$description|g" -e "s|@VERSION@|$version|g" \
        -e "s|@DEPLOYMENT@|$deployment|g" -e "s|@SERVICE_ACCOUNT@|$service_account|g" \
        -e "s|@METRICS_SERVICE@|$metrics_service|g" -e "s|@GROUP_HINT@|$group|g" \
        "$ROOT/hack/chart-template/$f" > "$out/$f"
  done
  cp "$deploy"/crds/*.yaml "$out/crds/"
  # RBAC (and webhook objects, when the operator has them): the same objects
  # as the kustomization, in the release's namespace.
  for f in "$deploy"/*.yaml; do
    case " $REPLACED " in *" $(basename "$f") "*) continue ;; esac
    if grep -q '{{' "$f"; then echo "charts.sh: $f contains '{{', which Helm would parse" >&2; exit 1; fi
    {
      echo "# Generated from deploy/$op/$(basename "$f") by hack/charts.sh; edit that file, not this one."
      sed "s|^\([[:space:]-]*\)namespace: $namespace\$|\1namespace: {{ .Release.Namespace }}|" "$f"
    } > "$out/templates/$(basename "$f")"
  done
}

if [ "${1:-}" = "--check" ]; then
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  for op in "${OPERATORS[@]}"; do generate "$op" "$tmp/$op"; done
  if ! diff -ru "$ROOT/charts" "$tmp" >&2; then
    echo "charts/ is out of date with deploy/ or hack/chart-template: run hack/charts.sh" >&2
    exit 1
  fi
  exit 0
fi
rm -rf "$ROOT/charts"
for op in "${OPERATORS[@]}"; do generate "$op" "$ROOT/charts/$op"; done
echo "charts/ regenerated: ${OPERATORS[*]}" >&2
