#!/usr/bin/env bash
# Offline checks of the Kubernetes manifests (make k8s-check, part of make
# test): every overlay is rendered by kubectl's kustomize, validated against
# the Kubernetes 1.33 schemas (kubernetes-validate --strict), then linted by
# checkov. Each checkov finding accepted is listed, with its reason, in
# checkov-skips.txt; any other finding fails the check.
#
# The tools (tools-requirements.txt) go into a venv, $K8S_VENV (default
# target/k8s-venv), made once and reused while the requirements are
# unchanged. Rendered manifests are left in target/k8s-rendered/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
venv=${K8S_VENV:-target/k8s-venv}
rendered=target/k8s-rendered
kubernetes_version=1.33.0

# The venv, reused while its stamp matches the requirements.
stamp="$venv/.relais-$(sha256sum "$here/tools-requirements.txt" | cut -c1-16)"
if [ ! -e "$stamp" ]; then
  echo "k8s-check: installing $(grep -v '^#' "$here/tools-requirements.txt" | xargs) into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/tools-requirements.txt"
  touch "$stamp"
fi
export PATH="$root/$venv/bin:$PATH"

rm -rf "$rendered" && mkdir -p "$rendered"
for overlay in "$here"/overlays/*/; do
  name=$(basename "$overlay")
  kubectl kustomize "$overlay" >"$rendered/$name.yaml"
  kubernetes-validate --strict --quiet -k "$kubernetes_version" - <"$rendered/$name.yaml" \
    || { echo "k8s-check: overlay $name does not validate against Kubernetes $kubernetes_version" >&2; exit 1; }
  echo "k8s-check: overlay $name: $(grep -c '^kind:' "$rendered/$name.yaml") resources, valid for Kubernetes $kubernetes_version"
done

# checkov-skips.txt: one check id per line, then its reason.
skips=$(awk '!/^[[:space:]]*(#|$)/ {print $1}' "$here/checkov-skips.txt" | paste -sd, -)
if ! checkov --skip-download --quiet --compact --framework kubernetes ${skips:+--skip-check "$skips"} \
  --directory "$rendered" >"$rendered/checkov.txt" 2>&1; then
  cat "$rendered/checkov.txt" >&2
  echo "k8s-check: checkov found what checkov-skips.txt does not accept" >&2
  exit 1
fi
echo "k8s-check: checkov passed ($(echo "$skips" | tr ',' '\n' | wc -l) checks skipped, see deploy/kubernetes/checkov-skips.txt)"
