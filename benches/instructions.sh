#!/usr/bin/env bash
# Instructions per step call for each contender, counted by callgrind (repeatable on a busy
# machine): bash benches/instructions.sh [contender ...]
# TOGGLE='*Worker*run*' counts the OpenTelemetry direct export's thread instead of the caller's
# (for otel-direct: divide by calls + 1000 warm-up calls).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is not installed"; exit 1; }
calls=20000
exe=$(cargo bench --all-features --bench instructions --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "instructions" and m.get("executable"):
        print(m["executable"])')
contenders=("$@")
if [ ${#contenders[@]} -eq 0 ]; then
    contenders=(plain plain-async tracing-off tracing-off-async off off-async off-retrying
        noop noop-async tracing-registry logger tracing-logged otel otel-direct tracing-otel otel-in-span
        otel-in-span-batch)
fi
count() {
    local out
    out=$(mktemp)
    valgrind --tool=callgrind --collect-atstart=no --toggle-collect="${TOGGLE:-*measured*}" \
        --callgrind-out-file="$out" "$exe" "$1" "$2" >/dev/null 2>&1
    grep -m1 '^summary:' "$out" | awk '{print $2}'
    rm -f "$out"
}
printf '%-20s %12s\n' contender "instr/call"
for contender in "${contenders[@]}"; do
    total=$(count "$contender" "$calls")
    printf '%-20s %12.1f\n' "$contender" "$(echo "$total / $calls" | bc -l)"
done
