#!/usr/bin/env bash
# Prepare this machine for cri-dockerd's tests (Debian 12): install what is missing, start dockerd,
# build the test images offline and run the local registries. Idempotent and quick on re-run.
#
#   scripts/test-env.sh          # everything
#   SKIP_APT=1 scripts/test-env.sh   # do not touch apt
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
log() { printf 'test-env: %s\n' "$*" >&2; }

# --- packages ----------------------------------------------------------------------------------
need_pkgs=()
have() { command -v "$1" >/dev/null 2>&1; }
have dockerd || need_pkgs+=(docker.io)
have docker || need_pkgs+=(docker.io)
[ -x /bin/busybox ] || need_pkgs+=(busybox-static)
have docker-registry || need_pkgs+=(docker-registry)
[ -x /usr/lib/cni/bridge ] || need_pkgs+=(containernetworking-plugins)
have protoc || need_pkgs+=(protobuf-compiler)
have htpasswd || need_pkgs+=(apache2-utils)
have curl || need_pkgs+=(curl)
have gcc || need_pkgs+=(gcc libc6-dev)
have ip || need_pkgs+=(iproute2)
have iptables || need_pkgs+=(iptables)
if [ ${#need_pkgs[@]} -gt 0 ] && [ -z "${SKIP_APT:-}" ]; then
  log "installing ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

# --- dockerd -----------------------------------------------------------------------------------
if ! docker version >/dev/null 2>&1; then
  log "starting dockerd"
  if have systemctl && systemctl start docker 2>/dev/null; then :; else
    nohup dockerd >/var/log/dockerd-test-env.log 2>&1 &
  fi
  for _ in $(seq 1 60); do docker version >/dev/null 2>&1 && break; sleep 0.5; done
  docker version >/dev/null 2>&1 || { log "dockerd did not come up"; exit 1; }
fi

# --- cni ---------------------------------------------------------------------------------------
# The Debian plugins live in /usr/lib/cni; expose them on the default --cni-bin-dir (/opt/cni/bin)
# without overwriting anything already there. Tests pass temp conf/cache dirs explicitly.
if [ -d /usr/lib/cni ]; then
  mkdir -p /opt/cni/bin
  for p in /usr/lib/cni/*; do
    [ -e "/opt/cni/bin/$(basename "$p")" ] || ln -s "$p" "/opt/cni/bin/$(basename "$p")"
  done
fi

if [ -n "${SKIP_IMAGES:-}" ]; then log "ready (images skipped)"; exit 0; fi

# --- images ------------------------------------------------------------------------------------
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

busybox_rootfs() {
  local root=$work/rootfs
  [ -d "$root" ] && { echo "$root"; return; }
  mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,proc,sys,dev,root,home,var/www}
  cp /bin/busybox "$root/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
  done
  chmod 1777 "$root/tmp"
  cat >"$root/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/home:/bin/false
tester:x:1234:5678:tester:/home:/bin/sh
P
  cat >"$root/etc/group" <<'G'
root:x:0:
nogroup:x:65534:
testers:x:5678:tester
extra:x:4000:tester
G
  echo "hello from cri-dockerd-test" >"$root/var/www/index.html"
  echo "$root"
}

import_image() { # name, then --change arguments
  local name=$1; shift
  image_exists "$name" && return 0
  local root; root=$(busybox_rootfs)
  local changes=()
  for c in "$@"; do changes+=(--change "$c"); done
  tar -C "$root" -c . | docker import "${changes[@]}" - "$name" >/dev/null
  log "built $name"
}

import_image cri-dockerd-test/busybox:latest 'CMD ["sh"]'
import_image cri-dockerd-test/user-uid:latest 'CMD ["sh"]' 'USER 1234:5678'
import_image cri-dockerd-test/user-name:latest 'CMD ["sh"]' 'USER nobody'
import_image cri-dockerd-test/multi:a 'CMD ["sh"]' 'LABEL multi=1'
image_exists cri-dockerd-test/multi:b || docker tag cri-dockerd-test/multi:a cri-dockerd-test/multi:b
image_exists cri-dockerd-test/multi:c || docker tag cri-dockerd-test/multi:a cri-dockerd-test/multi:c

if ! image_exists cri-dockerd-test/pause:latest; then
  mkdir -p "$work/pause"
  gcc -static -Os -s -o "$work/pause/pause" "$here/images/pause/pause.c"
  tar -C "$work/pause" -c pause | docker import --change 'ENTRYPOINT ["/pause"]' - cri-dockerd-test/pause:latest >/dev/null
  log "built cri-dockerd-test/pause:latest"
fi

# --- registries ---------------------------------------------------------------------------------
# Debian's docker-registry (distribution 2.8) on 127.0.0.1:5000 (open) and 127.0.0.1:5001 (htpasswd:
# testuser/testpass). Docker treats 127.0.0.0/8 as insecure, so plain HTTP works without config.
reg_state=/var/lib/cri-dockerd-test
reg_user=testuser
reg_pass=testpass

registry_up() { # port [user:pass] -> true when GET /v2/ answers 200 (or 401 without credentials)
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 ${2:+-u "$2"} "http://127.0.0.1:$1/v2/" || true)
  [ "$code" = 200 ] || { [ -z "${2:-}" ] && [ "$code" = 401 ]; }
}

start_registry() { # name port [htpasswd-file]
  local name=$1 port=$2 htp=${3:-} dir=$reg_state/$1
  registry_up "$port" && return 0
  mkdir -p "$dir/data"
  {
    echo "version: 0.1"
    echo "log: {level: warn, accesslog: {disabled: true}}"
    echo "storage:"
    echo "  filesystem: {rootdirectory: $dir/data}"
    echo "  delete: {enabled: true}"
    echo "http: {addr: '127.0.0.1:$port'}"
    if [ -n "$htp" ]; then
      echo "auth: {htpasswd: {realm: cri-dockerd-test, path: $htp}}"
    fi
  } >"$dir/config.yml"
  if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
    kill "$(cat "$dir/pid")" 2>/dev/null || true # alive but not answering: replace it
    sleep 0.5
  fi
  setsid nohup docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 </dev/null &
  echo $! >"$dir/pid"
  for _ in $(seq 1 50); do registry_up "$port" && break; sleep 0.2; done
  registry_up "$port" || { log "registry $name on :$port did not come up; see $dir/registry.log"; exit 1; }
  log "started registry $name on 127.0.0.1:$port"
}

mkdir -p "$reg_state/registry-auth"
htp=$reg_state/registry-auth/htpasswd
if ! [ -s "$htp" ] || ! htpasswd -vb "$htp" "$reg_user" "$reg_pass" >/dev/null 2>&1; then
  htpasswd -Bbn "$reg_user" "$reg_pass" >"$htp"
fi
start_registry registry 5000
start_registry registry-auth 5001 "$htp"

pushed() { # host/repo:tag [user:pass] -> true when the registry has that manifest
  local ref=$1 host repo tag
  host=${ref%%/*}; repo=${ref#*/}; tag=${repo##*:}; repo=${repo%:*}
  [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 ${2:+-u "$2"} \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$host/v2/$repo/manifests/$tag" || true)" = 200 ]
}

push_to() { # source target [user:pass docker-config-dir]
  local src=$1 dst=$2 cred=${3:-} dcfg=${4:-}
  pushed "$dst" "$cred" && return 0
  docker tag "$src" "$dst"
  docker ${dcfg:+--config "$dcfg"} push "$dst" >/dev/null
  docker rmi "$dst" >/dev/null # keep only the registry copy; the source image stays
  log "pushed $dst"
}

push_to cri-dockerd-test/busybox:latest 127.0.0.1:5000/test/busybox:latest
push_to cri-dockerd-test/user-uid:latest 127.0.0.1:5000/test/user-uid:latest
if ! pushed 127.0.0.1:5001/private/busybox:latest "$reg_user:$reg_pass"; then
  # A private docker config dir, so no credential is written to ~/.docker; logout afterwards.
  dcfg=$work/docker-config
  mkdir -p "$dcfg"
  printf '%s' "$reg_pass" | docker --config "$dcfg" login -u "$reg_user" --password-stdin 127.0.0.1:5001 \
    >/dev/null 2>"$work/login.err" || { cat "$work/login.err" >&2; exit 1; }
  rc=0
  push_to cri-dockerd-test/busybox:latest 127.0.0.1:5001/private/busybox:latest "$reg_user:$reg_pass" "$dcfg" || rc=$?
  docker --config "$dcfg" logout 127.0.0.1:5001 >/dev/null 2>&1 || true
  [ $rc = 0 ] || exit $rc
fi

log "ready"
