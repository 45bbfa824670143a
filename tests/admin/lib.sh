# Helpers for the shell tests in tests/admin: count checks, print the
# closing "N passed, N failed" line, exit 0, 1 or 77 (skip) for automake.
# Sourced by each *.test; srcdir and builddir come from AM_TESTS_ENVIRONMENT.

passed=0
failed=0
skipped=0
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${builddir:=$srcdir}"
: "${CMDGATE_BIN:=$builddir/milter/milter-cmdgate}"

pass() { passed=$((passed + 1)); echo "PASS: $1"; }
fail() { failed=$((failed + 1)); echo "FAIL: $1"; }
skip() { skipped=$((skipped + 1)); echo "SKIP: $1"; }

# same NAME EXPECTED ACTUAL: pass when the two texts are equal, else show both.
same() {
	if [ "$2" = "$3" ]; then
		pass "$1"
	else
		fail "$1"
		printf '%s\n' "--- expected" "$2" "--- got" "$3"
	fi
}

finish() {
	line="$passed passed, $failed failed"
	[ "$skipped" -eq 0 ] || line="$line, $skipped skipped"
	echo "$line"
	[ "$failed" -eq 0 ] || exit 1
	[ "$passed" -gt 0 ] || exit 77
	exit 0
}
