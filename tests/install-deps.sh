#!/bin/sh
# Installs what building milter-cmdgate and running its tests need on
# Debian 12 (run as root).  Postfix is preseeded to "No configuration": the
# integration tests run their own private Postfix instance and leave the
# system's /etc/postfix alone.  Sendmail conflicts with Postfix as a package:
# tests/integration/sendmail.test unpacks its own copy (it needs m4, libwrap0).
# debootstrap builds the Debian 13 root whose Postfix 3.10 the integration
# test also runs against.
set -eu
export DEBIAN_FRONTEND=noninteractive
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
apt-get update -q
apt-get install -y -q --no-install-recommends \
	build-essential autoconf automake pkg-config \
	libmilter-dev libconfig-dev check \
	postfix rsyslog python3 procps \
	m4 libwrap0 debootstrap \
	groff-base man-db fail2ban \
	clang libclang-rt-14-dev systemd valgrind
