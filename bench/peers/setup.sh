#!/usr/bin/env bash
# Install what bench/gateway.py compares Traceway with, all under bench/.work/ (git-ignored)
# except the two Debian packages. Safe to re-run: a step whose result is already there is
# skipped, and a half-finished step is redone.
#
#   bash bench/peers/setup.sh [all|system|litellm|portkey]...   (default: all)
#
# - system: Debian's nginx (the mock upstream) and wrk (the load generator), via apt-get;
# - litellm: LiteLLM proxy 1.110.2 in its own virtualenv. Its `proxy` extra does not resolve
#   from this machine's package index (three pinned extras are missing), so the proxy's
#   requirements are named by hand, plus the imports it otherwise retries on every request;
# - portkey: @portkey-ai/gateway 1.15.2 from npm, plus a patched copy whose streaming works
#   on Node 20 (see portkey-stream-fix.cjs).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK="${BENCH_WORK:-$(cd "$HERE/.." && pwd)/.work}"
LITELLM_VERSION="1.110.2"
PORTKEY_VERSION="1.15.2"
# The LiteLLM proxy's own requirements (its `proxy` extra, minus the unresolvable pins), then
# modules it imports lazily: without them it fails to start or retries the import per request.
LITELLM_PROXY_REQS=(
  "fastapi>=0.115" "starlette" "uvicorn" "uvloop" "gunicorn" "orjson" "pyyaml" "backoff"
  "apscheduler" "cryptography" "pyjwt" "python-multipart" "websockets" "rq" "pynacl"
  "fastapi-sso" "rich" "tomlkit" "restrictedpython" "inquirerpy" "backports-zstd" "mcp"
  "semver" "expression" "soundfile" "opentelemetry-sdk" "prisma" "prometheus_client" "psutil"
)

log() { printf 'peers/setup: %s\n' "$*" >&2; }

setup_system() {
  local missing=()
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
  command -v wrk >/dev/null 2>&1 || missing+=(wrk)
  command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
  if [ ${#missing[@]} -eq 0 ]; then
    log "system: nginx and wrk present"
    return
  fi
  if [ "$(id -u)" != 0 ]; then
    log "system: run as root, or install Debian's ${missing[*]} (apt-get install ${missing[*]})"
    exit 1
  fi
  log "system: apt-get install ${missing[*]}"
  local had_nginx=0
  [ ! -f /run/nginx.pid ] || had_nginx=1
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  # Where the package starts its default site (port 80), stop it: only the benchmark's own
  # configs should run, each started and stopped by bench/gateway.py.
  if [ "$had_nginx" = 0 ] && [ -f /run/nginx.pid ]; then
    /usr/sbin/nginx -s quit || true
  fi
}

setup_litellm() {
  local venv="$WORK/litellm-venv"
  local stamp="$venv/.installed-$LITELLM_VERSION"
  if [ -f "$stamp" ]; then
    log "litellm: $LITELLM_VERSION present in $venv"
    return
  fi
  log "litellm: installing $LITELLM_VERSION into $venv (a few minutes)"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  "$venv/bin/pip" install --quiet "litellm==$LITELLM_VERSION" "${LITELLM_PROXY_REQS[@]}"
  LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_TELEMETRY=False \
    "$venv/bin/python" -c "import litellm.proxy.proxy_server" >/dev/null
  touch "$stamp"
}

setup_portkey() {
  local dir="$WORK/portkey"
  local pkg="$dir/node_modules/@portkey-ai/gateway"
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    log "portkey: needs node and npm (Debian: apt-get install nodejs npm)"
    exit 1
  fi
  if [ -f "$pkg/package.json" ] &&
    [ "$(node -p "require('$pkg/package.json').version")" = "$PORTKEY_VERSION" ]; then
    log "portkey: $PORTKEY_VERSION present in $dir"
  else
    log "portkey: npm install @portkey-ai/gateway@$PORTKEY_VERSION into $dir"
    mkdir -p "$dir"
    [ -f "$dir/package.json" ] || printf '{"name":"portkey-bench","private":true}\n' >"$dir/package.json"
    (cd "$dir" && npm install --silent --no-audit --no-fund "@portkey-ai/gateway@$PORTKEY_VERSION")
  fi
  # The patched copy lives beside the pristine package, so both can be benchmarked.
  local fixed="$WORK/portkey-streamfix"
  if [ -f "$fixed/.patched-$PORTKEY_VERSION" ]; then
    log "portkey: stream-fixed copy present in $fixed"
  else
    log "portkey: building the stream-fixed copy in $fixed"
    rm -rf "$fixed"
    mkdir -p "$fixed"
    cp -a "$dir/node_modules" "$fixed/node_modules"
    node "$HERE/portkey-stream-fix.cjs" "$fixed/node_modules/@portkey-ai/gateway/build"
    touch "$fixed/.patched-$PORTKEY_VERSION"
  fi
}

main() {
  local steps=("$@")
  [ ${#steps[@]} -gt 0 ] || steps=(all)
  mkdir -p "$WORK"
  for step in "${steps[@]}"; do
    case "$step" in
      all) setup_system; setup_litellm; setup_portkey ;;
      system) setup_system ;;
      litellm) setup_litellm ;;
      portkey) setup_portkey ;;
      *) log "unknown step '$step' (all, system, litellm, portkey)"; exit 2 ;;
    esac
  done
}

main "$@"
