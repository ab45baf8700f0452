#!/usr/bin/env bash
# Run the whole test suite: set up the test environment (packages, dockerd, images, registries),
# then lints and every test (unit, gRPC-over-socket, real dockerd). Under CI=true a missing
# dependency fails the run instead of skipping tests.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/test-env.sh
# The Rust toolchain comes from rustup on these machines; cargo may not be on a non-login PATH.
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
RUSTDOCFLAGS=-Dwarnings cargo doc --workspace --no-deps --locked --quiet
status=0
cargo test --workspace --locked --no-fail-fast 2>&1 | tee target/test-output.txt || status=$?

# One closing line that counts every test binary's results.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     END { printf "%d passed, %d failed, %d skipped\n", p, f, s }' target/test-output.txt
exit "$status"
