#!/bin/sh
# on-trixie.sh TEST: runs the integration test script TEST (in this
# directory) once more against Debian 13's Postfix 3.10, run chrooted in a
# Debian 13 root that trixie-root.sh builds once and then reuses.  Exit 77
# (skip) when not root or the root cannot be built; with
# CMDGATE_REQUIRE_INTEGRATION=1 (CI) that is a failure instead.  The last
# line is "N passed, N failed".
here=$(cd "$(dirname "$0")" && pwd)

not_here() {
	if [ "${CMDGATE_REQUIRE_INTEGRATION:-}" = 1 ]; then
		echo "FAIL: $1"
		echo "0 passed, 1 failed"
		exit 1
	fi
	echo "SKIP: $1 (set CMDGATE_REQUIRE_INTEGRATION=1 to fail instead)"
	exit 77
}

[ "$(id -u)" -eq 0 ] || not_here "not running as root (debootstrap, chroot and Postfix need root)"
root=$("$here/trixie-root.sh") || not_here "the Debian 13 root for Postfix 3.10 could not be built (see above)"
CMDGATE_POSTFIX_ROOT=$root
export CMDGATE_POSTFIX_ROOT
exec "$here/$1"
