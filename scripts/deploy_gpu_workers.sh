#!/usr/bin/env bash
# Installs or upgrades ImagePod on the Kubernetes cluster kubectl points at: the namespace, the
# Secret with the registration token and the JWT secret, the Helm chart (API, Redis, and an agent on
# every GPU node), then waits for the rollout and prints how to check it. Run with --help.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

namespace="${IMAGEPOD_NAMESPACE:-imagepod}"
release="imagepod"
chart="$(dirname "$here")/helm/imagepod"
secret_name="imagepod-secrets"
registration_token="${IMAGEPOD_REGISTRATION_TOKEN:-}"
jwt_secret="${IMAGEPOD_JWT_SECRET:-}"
timeout="10m"
dry_run=false
helm_extra=()

usage() {
  cat <<EOF
Usage: scripts/deploy_gpu_workers.sh [options] [-- <more helm arguments>]

Deploys ImagePod with Helm to the cluster of kubectl's current context:
  1. creates the namespace if it is missing, and lets it run the agent's privileged pods
     (pod-security.kubernetes.io/enforce=privileged: the agent mounts the node's Docker socket);
  2. creates the Secret $secret_name (keys registration-token and jwt-secret) if it is missing,
     generating each value not given (the registration token is printed once); an existing Secret
     is kept, and only the values given are changed;
  3. helm upgrade --install of the chart, told to use that Secret;
  4. waits for the API Deployment and the agent DaemonSet to roll out;
  5. prints the commands to verify the deployment.

Options:
  -n, --namespace NAME          namespace (default: imagepod, or \$IMAGEPOD_NAMESPACE)
      --release NAME            Helm release name (default: imagepod)
      --chart PATH              chart directory (default: helm/imagepod in this repository)
      --registration-token T    registration token (default: \$IMAGEPOD_REGISTRATION_TOKEN, or generated)
      --jwt-secret S            HS256 secret for users' tokens (default: \$IMAGEPOD_JWT_SECRET, or generated)
      --secret-name NAME        the Secret's name (default: imagepod-secrets)
      --set KEY=VALUE           passed to helm (repeatable), e.g. --set api.image.registry=registry.example.com
      --set-string KEY=VALUE    passed to helm (repeatable)
  -f, --values FILE             passed to helm (repeatable)
      --timeout DURATION        how long to wait for each rollout (default: 10m)
      --dry-run                 print the manifests (helm template) and the kubectl and helm commands
                                it would run; contacts no cluster and changes nothing
  -h, --help                    this text

Needs kubectl and helm 3 on PATH (--dry-run needs only helm), and openssl to generate secrets.
EOF
}

die() {
  printf 'deploy_gpu_workers: %s\n' "$*" >&2
  exit 1
}
say() { printf '==> %s\n' "$*" >&2; }

need_value() { [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value (see --help)"; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    -n | --namespace) need_value "$@"; namespace="$2"; shift 2 ;;
    --release) need_value "$@"; release="$2"; shift 2 ;;
    --chart) need_value "$@"; chart="$2"; shift 2 ;;
    --registration-token) need_value "$@"; registration_token="$2"; shift 2 ;;
    --jwt-secret) need_value "$@"; jwt_secret="$2"; shift 2 ;;
    --secret-name) need_value "$@"; secret_name="$2"; shift 2 ;;
    --set | --set-string) need_value "$@"; helm_extra+=("$1" "$2"); shift 2 ;;
    -f | --values) need_value "$@"; helm_extra+=("--values" "$2"); shift 2 ;;
    --timeout) need_value "$@"; timeout="$2"; shift 2 ;;
    --dry-run) dry_run=true; shift ;;
    -h | --help) usage; exit 0 ;;
    --) shift; helm_extra+=("$@"); break ;;
    *) die "unknown option: $1 (see --help)" ;;
  esac
done

[[ -f "$chart/Chart.yaml" ]] || die "no Helm chart at $chart (--chart)"
if [[ -n "$registration_token" && ${#registration_token} -lt 16 ]]; then die "the registration token needs 16+ characters"; fi
if [[ -n "$jwt_secret" && ${#jwt_secret} -lt 32 ]]; then die "the JWT secret needs 32+ characters"; fi

require() {
  command -v "$1" >/dev/null 2>&1 || die "$1 is not installed or not on PATH: $2"
}
require helm "install Helm 3 (https://helm.sh/docs/intro/install/)"
$dry_run || require kubectl "install kubectl and point it at the cluster (https://kubernetes.io/docs/tasks/tools/)"

# Selects the chart's objects by its labels, whatever names the release gives them.
api_selector="app.kubernetes.io/instance=$release,app.kubernetes.io/component=api"
agent_selector="app.kubernetes.io/instance=$release,app.kubernetes.io/component=gpu-worker"
helm_args=(upgrade --install "$release" "$chart" --namespace "$namespace" --set-string "secrets.existingSecret=$secret_name" ${helm_extra[@]+"${helm_extra[@]}"})

if $dry_run; then
  say "dry run: nothing is changed. The manifests (helm template):"
  helm template "$release" "$chart" --namespace "$namespace" --set-string "secrets.existingSecret=$secret_name" ${helm_extra[@]+"${helm_extra[@]}"}
  token_shown='<generated with openssl rand -hex 24>'
  [[ -z "$registration_token" ]] || token_shown='<the token given>'
  jwt_shown='<generated with openssl rand -hex 32>'
  [[ -z "$jwt_secret" ]] || jwt_shown='<the secret given>'
  cat >&2 <<EOF
==> dry run: the commands it would run:
kubectl get namespace $namespace || kubectl create namespace $namespace
kubectl label namespace $namespace pod-security.kubernetes.io/enforce=privileged --overwrite
kubectl -n $namespace get secret $secret_name || kubectl -n $namespace create secret generic $secret_name \\
    --from-literal=registration-token=$token_shown --from-literal=jwt-secret=$jwt_shown
helm ${helm_args[*]}
kubectl -n $namespace rollout status deployment -l $api_selector --timeout=$timeout
kubectl -n $namespace rollout status daemonset -l $agent_selector --timeout=$timeout
EOF
  exit 0
fi

# Secret values travel in files, not on command lines other users could read in ps.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
chmod 700 "$work"

random_hex() {
  command -v openssl >/dev/null 2>&1 || die "openssl is not installed: needed to generate a secret (or pass --registration-token and --jwt-secret)"
  openssl rand -hex "$1"
}

say "namespace $namespace"
if kubectl get namespace "$namespace" >/dev/null 2>&1; then
  say "  exists"
else
  kubectl create namespace "$namespace"
fi
# The agent mounts the node's Docker socket and its state directory: Pod Security must allow it.
kubectl label namespace "$namespace" pod-security.kubernetes.io/enforce=privileged --overwrite

generated_token=false
if kubectl -n "$namespace" get secret "$secret_name" >/dev/null 2>&1; then
  if [[ -n "$registration_token" || -n "$jwt_secret" ]]; then
    say "Secret $secret_name exists: updating the values given"
    {
      printf '{"data":{'
      sep=''
      if [[ -n "$registration_token" ]]; then
        printf '"registration-token":"%s"' "$(printf '%s' "$registration_token" | base64 | tr -d '\n')"
        sep=','
      fi
      if [[ -n "$jwt_secret" ]]; then printf '%s"jwt-secret":"%s"' "$sep" "$(printf '%s' "$jwt_secret" | base64 | tr -d '\n')"; fi
      printf '}}\n'
    } >"$work/patch.json"
    kubectl -n "$namespace" patch secret "$secret_name" --type merge --patch-file "$work/patch.json"
  else
    say "Secret $secret_name exists: kept as it is"
  fi
else
  if [[ -z "$registration_token" ]]; then
    registration_token="$(random_hex 24)"
    generated_token=true
  fi
  [[ -n "$jwt_secret" ]] || jwt_secret="$(random_hex 32)"
  printf '%s' "$registration_token" >"$work/registration-token"
  printf '%s' "$jwt_secret" >"$work/jwt-secret"
  say "Secret $secret_name"
  kubectl -n "$namespace" create secret generic "$secret_name" \
    --from-file=registration-token="$work/registration-token" --from-file=jwt-secret="$work/jwt-secret"
fi

say "helm upgrade --install $release"
helm "${helm_args[@]}"

say "waiting for the API to roll out"
kubectl -n "$namespace" rollout status deployment -l "$api_selector" --timeout="$timeout"
if [[ -n "$(kubectl -n "$namespace" get daemonset -l "$agent_selector" -o name)" ]]; then
  say "waiting for the agents to roll out (one per GPU node)"
  kubectl -n "$namespace" rollout status daemonset -l "$agent_selector" --timeout="$timeout"
else
  say "no agent DaemonSet in this release (agent.enabled=false): not waiting for agents"
fi

api_service="$(kubectl -n "$namespace" get service -l "$api_selector" -o name | head -n 1)"
api_deployment="$(kubectl -n "$namespace" get deployment -l "$api_selector" -o name | head -n 1)"
if $generated_token; then
  cat >&2 <<EOF

Registration token (generated; shown only this once, kept in Secret $secret_name):
  $registration_token
EOF
fi
cat >&2 <<EOF

ImagePod is deployed in namespace $namespace. To check it:
  kubectl get pods -n $namespace -l app=imagepod-gpu-worker         # one agent per GPU node
  kubectl get services -n $namespace -l app=imagepod-gpu-worker
  kubectl logs -n $namespace -l app=imagepod-gpu-worker             # "registered", "agent ready"
  helm test $release -n $namespace                                  # a pod that asks the API /readyz
  kubectl -n $namespace port-forward ${api_service:-service/<the API service>} 8000:http &
  curl http://localhost:8000/readyz
  # an admin token to call the API with:
  kubectl -n $namespace exec ${api_deployment:-deployment/<the API deployment>} -- node dist/src/cli/mint-token.js --sub admin --role admin
EOF
