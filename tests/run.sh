#!/usr/bin/env bash
# Runs gatehouse's tests: the unit tests ($UNIT, default build/unit-tests), then the
# integration suite (tests/integration/run.py) against $GATEHOUSE (default build/gatehouse).
#
#   tests/run.sh              everything
#   tests/run.sh tls strict   only the integration tests whose names contain "tls" or "strict"
#   tests/run.sh unit         only the unit tests
#
# SLOW=1 (set by `make asan`) gives longer timeouts and smaller big transfers.
# The last line is always "N passed, N failed" (totals); the exit status is 1 if anything failed.
set -u
cd "$(dirname "$0")/.."

UNIT=${UNIT:-build/unit-tests}
export GATEHOUSE=${GATEHOUSE:-build/gatehouse}
passed=0
failed=0

run_unit=1
run_integration=1
filters=()
if [ $# -gt 0 ]; then
    run_unit=0
    run_integration=0
    for f in "$@"; do
        if [ "$f" = unit ]; then run_unit=1; else filters+=("$f"); run_integration=1; fi
    done
fi

# Adds the counts of a suite's last line "N passed, N failed" to the totals.
# $1: suite name, $2: file with its output, $3: its exit status.
tally() {
    local last p f
    last=$(tail -n 1 "$2")
    if [[ $last =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
        p=${BASH_REMATCH[1]}
        f=${BASH_REMATCH[2]}
        if [ "$3" -ne 0 ] && [ "$f" -eq 0 ]; then
            echo "FAIL $1: exited with status $3 although it reports no failure"
            f=1
        fi
    else
        echo "FAIL $1: no final 'N passed, N failed' line (exit status $3)"
        p=0
        f=1
    fi
    passed=$((passed + p))
    failed=$((failed + f))
}

out=$(mktemp)
trap 'rm -f "$out"' EXIT

if [ $run_unit = 1 ]; then
    if [ -x "$UNIT" ]; then
        echo "== unit tests ($UNIT)"
        "$UNIT" 2>&1 | tee "$out"
        tally unit "$out" "${PIPESTATUS[0]}"
    else
        echo "== unit tests: $UNIT not found, skipped (make $UNIT)"
    fi
fi

if [ $run_integration = 1 ]; then
    echo "== integration tests ($GATEHOUSE)"
    python3 tests/integration/run.py "${filters[@]+"${filters[@]}"}" 2>&1 | tee "$out"
    tally integration "$out" "${PIPESTATUS[0]}"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
