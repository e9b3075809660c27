#!/bin/sh
# Runs every Go fuzz target of the module for DURATION each (a Go
# duration, or Nx for N inputs; default 2s; 0 skips fuzzing).
#
#   scripts/fuzz.sh [DURATION] [PACKAGE...]
#
# `go test -fuzz` takes one target of one package at a time, so each
# package's test binary is built once with the fuzzing instrumentation
# (`go test -c -fuzz`), its targets are listed with -test.list, and each is
# run in turn from the package's directory, where testdata/fuzz holds the
# inputs that failed once. A failing input is written there too: commit it
# with the fix, and it stays a regression test of the package's tests. The
# corpus the fuzzer grows lives in the Go build cache (GOCACHE/fuzz), as
# with `go test -fuzz`.
set -eu

duration=${1:-2s}
[ $# -gt 0 ] && shift
GO=${GO:-go}

if [ "$duration" = 0 ]; then
	echo "fuzz: skipped (duration 0)"
	exit 0
fi

cd "$(dirname "$0")/.."
if [ $# -eq 0 ]; then
	# Packages with a fuzz target.
	set -- $(grep -rl --include='*_test.go' '^func Fuzz[A-Z0-9_]' cmd internal | xargs -n1 dirname | sort -u | sed 's|^|./|')
fi

cache=$($GO env GOCACHE)/fuzz
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT INT TERM
failed=""
count=0
start=$(date +%s)

for dir in "$@"; do
	pkg=$($GO list "$dir")
	test="$bin/$(echo "$pkg" | tr / _).test"
	$GO test -c -fuzz . -o "$test" "$dir"
	targets=$(cd "$dir" && "$test" -test.list '^Fuzz' | grep '^Fuzz' || true)
	for target in $targets; do
		count=$((count + 1))
		printf 'fuzz: %s %s for %s\n' "$pkg" "$target" "$duration"
		if ! out=$(cd "$dir" && "$test" -test.run '^$' -test.fuzz "^$target\$" -test.fuzztime "$duration" \
			-test.fuzzminimizetime 10s -test.fuzzcachedir "$cache/$pkg" 2>&1); then
			printf '%s\n' "$out" | grep -v '^fuzz: elapsed' >&2
			failed="$failed $pkg.$target"
		fi
	done
done

echo "fuzz: $count targets in $(( $(date +%s) - start ))s"
if [ -n "$failed" ]; then
	echo "fuzz: FAILED:$failed" >&2
	exit 1
fi
