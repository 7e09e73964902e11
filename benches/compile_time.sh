#!/usr/bin/env bash
# Compile time per annotated function: generates three crates with 200 functions each — plain,
# `#[tasker::step]`, `#[tracing::instrument]` — builds their dependencies once, then times a
# rebuild of each crate alone (best of five) and reports milliseconds per function over the
# plain crate. DESIGN.md §6 budget: ≤ 2 ms per `#[tasker::step]`.
#
#   bash benches/compile_time.sh            (from the workspace root)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work="$root/target/compile-time"
functions=200
mkdir -p "$work"

generate() { # name attribute
  local name=$1 attribute=$2 dir="$work/$1"
  mkdir -p "$dir/src"
  cat >"$dir/Cargo.toml" <<TOML
[package]
name = "compile-time-$name"
version = "0.1.0"
edition = "2021"
publish = false

[dependencies]
tasker = { path = "$root" }
tracing = "0.1"

[workspace]
TOML
  {
    echo "#![allow(dead_code)]"
    for i in $(seq 1 $functions); do
      [ -n "$attribute" ] && echo "$attribute"
      echo "pub fn function_$i(value: u64) -> Result<u64, std::io::Error> { Ok(value.wrapping_mul($i)) }"
    done
  } >"$dir/src/lib.rs"
}

generate plain ""
generate tasker "#[tasker::step(max_attempts = 1)]"
generate tracing "#[tracing::instrument]"

export CARGO_TARGET_DIR="$work/target"
best() { # dir → best of five rebuild times in ms
  local dir=$1 best=""
  (cd "$dir" && cargo build --quiet) || { echo "building $dir failed" >&2; exit 1; }
  for _ in 1 2 3 4 5; do
    touch "$dir/src/lib.rs"
    local start end
    start=$(date +%s%N)
    (cd "$dir" && cargo build --quiet) || { echo "building $dir failed" >&2; exit 1; }
    end=$(date +%s%N)
    local ms=$(((end - start) / 1000000))
    if [ -z "$best" ] || [ "$ms" -lt "$best" ]; then best=$ms; fi
  done
  echo "$best"
}

plain=$(best "$work/plain")
tasker=$(best "$work/tasker")
tracing=$(best "$work/tracing")
per() { awk -v t="$1" -v p="$plain" -v n="$functions" 'BEGIN { printf "%.2f", (t - p) / n }'; }
echo "compile time of $functions functions (ms, best of 5): plain $plain, tasker $tasker, tracing $tracing"
echo "per annotated function: tasker $(per "$tasker") ms, tracing $(per "$tracing") ms" \
  "(ratio $(awk -v a="$tasker" -v b="$tracing" -v p="$plain" 'BEGIN { printf "%.2f", (a - p) / (b - p) }'))"
