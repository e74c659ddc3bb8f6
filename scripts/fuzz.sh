#!/usr/bin/env bash
# scripts/fuzz.sh — run every cargo-fuzz target (fuzz/fuzz_targets) for SECONDS each.
# `make test` runs them briefly, `make fuzz` for longer. Each starts from the committed
# seeds (fuzz/seeds/TARGET) plus what earlier runs in this clone found (fuzz/corpus,
# not committed). A crash fails the run; libFuzzer leaves the input in
# fuzz/artifacts/TARGET, to be turned into a regression test.
#
# cargo-fuzz is installed once into ~/.cargo/bin. It drives libFuzzer through rustc's
# coverage instrumentation; the sanitizer is off (Plaza forbids unsafe code), which
# works on the stable toolchain.
set -euo pipefail

readonly CARGO_FUZZ_VERSION=0.13.2
seconds=${1:-10}
cd "$(dirname "$0")/../fuzz"

if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION into ${CARGO_HOME:-$HOME/.cargo}/bin" >&2
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked >&2
fi

# The stable toolchain, with the one nightly flag cargo-fuzz passes allowed.
export RUSTC_BOOTSTRAP=1
flags=(--sanitizer none --release --debug-assertions)
cargo fuzz build "${flags[@]}"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for target in $(cargo fuzz list); do
    mkdir -p "corpus/$target" "seeds/$target"
    if ! cargo fuzz run "${flags[@]}" "$target" "corpus/$target" "seeds/$target" -- \
            -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "fuzz: $target failed; the input is in fuzz/artifacts/$target" >&2
        exit 1
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    echo "fuzz: $target: ${runs:-?} runs in ${seconds}s, no crash"
done
echo "fuzz: every target ran ${seconds}s without a crash"
