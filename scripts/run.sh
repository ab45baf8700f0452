#!/usr/bin/env bash
# Install what is missing, build cri-dockerd and run it in the foreground against the local
# dockerd on the standard socket. Extra arguments are passed to cri-dockerd.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/test-env.sh
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --locked
# With no registry reachable, use the locally built pause image unless the upstream one is present.
pause=()
if ! docker image inspect registry.k8s.io/pause:3.10 >/dev/null 2>&1; then
  echo "run: registry.k8s.io/pause:3.10 is not present; using cri-dockerd-test/pause:latest" >&2
  pause=(--pod-infra-container-image cri-dockerd-test/pause:latest)
fi
exec ./target/release/cri-dockerd "${pause[@]}" \
  --container-runtime-endpoint unix:///var/run/cri-dockerd.sock \
  --docker-endpoint unix:///var/run/docker.sock \
  "$@"
