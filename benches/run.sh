#!/usr/bin/env bash
# Every benchmark of the README's table, in one run (about 9 minutes on 2 cores):
#   bash benches/run.sh
# The queue benchmark's PostgreSQL rows need TASKER_TEST_DATABASE_URL (as .ci/run sets it);
# without it they are skipped with a message.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=(-- --warm-up-time 1 --measurement-time 3)
cargo bench --all-features --bench overhead --bench otel --bench runtime --bench queues "${quick[@]}"
echo
cargo bench --bench report
echo
cargo test --release --all-features --test allocations -- --nocapture 2>&1 | grep -E "allocations per|sync"
echo
bash benches/compile_time.sh
echo
cargo bench --bench memory 2>&1 | tail -1
echo
if command -v valgrind >/dev/null; then
    bash benches/instructions.sh
else
    echo "valgrind is not installed: no instruction counts (benches/instructions.sh)"
fi
