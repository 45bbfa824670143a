#!/usr/bin/env bash
# Builds, once, a Debian 13 (trixie) root with Debian's own postfix package
# in it: the integration test runs a private Postfix 3.10 from it (chroot)
# against the milter on the host (MTA-FACTS §7, §9).
#
# Usage: trixie-root.sh [DIR]     (as root)
# DIR defaults to $CMDGATE_TRIXIE_ROOT, else
# /var/cache/milter-cmdgate-tests/trixie-root.  A finished root carries the
# stamp file DIR/.cmdgate-trixie-root and is reused as it is; delete DIR to
# rebuild.  The mirror is $CMDGATE_DEBIAN_MIRROR, else the Debian archive
# this machine's apt sources name for its own release.  Prints DIR on
# stdout when the root is ready; progress goes to stderr.
set -euo pipefail

root=${1:-${CMDGATE_TRIXIE_ROOT:-/var/cache/milter-cmdgate-tests/trixie-root}}
stamp=.cmdgate-trixie-root
suite=trixie

say() { echo "trixie-root: $*" >&2; }
die() { say "$*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap, chroot, mount)"
if [ -f "$root/$stamp" ]; then
	echo "$root"
	exit 0
fi
command -v debootstrap >/dev/null || PATH=$PATH:/usr/sbin:/sbin
command -v debootstrap >/dev/null || die "debootstrap is not installed (tests/install-deps.sh)"

# One build at a time; a second caller waits and then finds the stamp.
mkdir -p "$(dirname "$root")"
exec 9>"$root.lock"
flock -w 1200 9 || die "another build of $root holds $root.lock"
if [ -f "$root/$stamp" ]; then
	echo "$root"
	exit 0
fi

# The URI of the first enabled "deb" source for this machine's own release,
# read in apt's order: sources.list, then sources.list.d/*.list and *.sources.
host_mirror() {
	local codename f uri
	codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
	[ -n "$codename" ] || return 1
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*; do
		[ -f "$f" ] || continue
		case "$f" in
		*.list)
			uri=$(awk -v suite="$codename" '
				$1 == "deb" {
					i = 2
					if ($i ~ /^\[/) while ($i !~ /\]$/) i++
					if ($i ~ /^\[/ || $i ~ /\]$/) i++
					if ($(i + 1) == suite) { print $i; exit }
				}' "$f")
			;;
		*.sources)
			uri=$(awk -v suite="$codename" -v RS= '
				{
					types = uris = suites = ""; enabled = 1
					n = split($0, lines, "\n")
					for (j = 1; j <= n; j++) {
						if (lines[j] ~ /^#/) continue
						split(lines[j], kv, ":")
						key = tolower(kv[1]); val = substr(lines[j], length(kv[1]) + 2)
						if (key == "types") types = " " val " "
						else if (key == "uris") uris = val
						else if (key == "suites") suites = " " val " "
						else if (key == "enabled" && val ~ /no/) enabled = 0
					}
					split(uris, u, " ")
					if (enabled && types ~ / deb / && suites ~ (" " suite " ") && u[1] != "") {
						print u[1]; exit
					}
				}' "$f")
			;;
		*) continue ;;
		esac
		if [ -n "$uri" ]; then
			echo "$uri"
			return 0
		fi
	done
	return 1
}
mirror=${CMDGATE_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
	mirror=$(host_mirror) || die "no Debian mirror found in /etc/apt/sources.list{,.d}; set CMDGATE_DEBIAN_MIRROR"
fi

build=$root.build

# Mount points under DIR, deepest first (from the kernel's list, so that a
# mount left by a killed earlier build is found too).
mounts_under() {
	awk -v d="$1" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r
}
unmount_all() {
	local dir=${1:-$build} m
	for m in $(mounts_under "$dir"); do
		umount "$m" 2>/dev/null || umount -l "$m" || say "cannot unmount $m"
	done
	[ -z "$(mounts_under "$dir")" ]
}
# Never remove a tree while the host's /dev or /proc is mounted inside it.
remove_tree() {
	unmount_all "$1" || die "$1 still has mounts; not removing it"
	rm -rf "$1"
}
finish() {
	local status=$?
	unmount_all || status=1
	if [ "$status" -ne 0 ] && [ -d "$build" ]; then
		say "build failed; removing $build"
		remove_tree "$build" || true
	fi
	exit "$status"
}
trap finish EXIT
trap 'exit 130' INT TERM HUP

in_root() { chroot "$build" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
	DEBIAN_FRONTEND=noninteractive LC_ALL=C "$@"; }

# Network hiccups are the usual cause of a failed download: one retry.
retry_once() {
	"$@" && return 0
	say "failed: $*; retrying once in 10 s"
	sleep 10
	"$@"
}

bootstrap() {
	remove_tree "$build"
	debootstrap --variant=minbase "$suite" "$build" "$mirror" >&2
}

apt_install_postfix() {
	in_root apt-get update -q >&2 &&
		in_root apt-get install -y -q --no-install-recommends postfix >&2
}

started=$(date +%s)
say "building $root from $mirror (suite $suite)"
retry_once bootstrap

mount -t proc proc "$build/proc"
mount -t sysfs sysfs "$build/sys"
mount --bind /dev "$build/dev"

# Nothing may start a daemon inside the root while packages are installed.
printf '#!/bin/sh\nexit 101\n' >"$build/usr/sbin/policy-rc.d"
chmod 755 "$build/usr/sbin/policy-rc.d"
echo "postfix postfix/main_mailer_type select No configuration" |
	in_root debconf-set-selections
retry_once apt_install_postfix
in_root apt-get clean
# The test's name-resolving listener needs 127.0.0.1 named as on the host.
cp /etc/hosts "$build/etc/hosts"

version=$(in_root postconf -dh mail_version)
unmount_all || die "cannot unmount everything under $build"
# The test binds the host's /dev/log here, in a mount namespace of its own.
: >"$build/dev/log"
printf 'suite=%s\nmirror=%s\npostfix=%s\nbuilt=%s\nseconds=%s\n' "$suite" "$mirror" \
	"$version" "$(date -u +%FT%TZ)" "$(($(date +%s) - started))" >"$build/$stamp"
remove_tree "$root"  # an unfinished root without a stamp
mv "$build" "$root"
say "Postfix $version ready in $root after $(($(date +%s) - started)) s"
echo "$root"
