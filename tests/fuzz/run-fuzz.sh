#!/bin/sh
# Runs libFuzzer targets for FUZZ_SECONDS seconds each (default 60), or
# for FUZZ_RUNS executions each when that is set (the long run: make fuzz
# FUZZ_RUNS=10000000 FUZZ_JOBS=2), FUZZ_JOBS of them at a time (default
# 1), each from its committed seeds
# (SRCDIR/seeds/NAME) into a working corpus (OUTDIR/corpus/NAME).
# SRCDIR/NAME.dict is its dictionary, SRCDIR/NAME.options extra libFuzzer
# flags.  A target fuzzed without leak detection (-detect_leaks=0) has its
# whole corpus replayed with it afterwards.  Prints one line per target
# with its executions; exits 1 if any target found a crash, a leak or a
# timeout (the input is kept as OUTDIR/crash-NAME-*).
#   usage: run-fuzz.sh SRCDIR OUTDIR TARGET...
set -u
srcdir=$1 outdir=$2
shift 2
seconds=${FUZZ_SECONDS:-60}
runs=${FUZZ_RUNS:-}
jobs=${FUZZ_JOBS:-1}
if [ -n "$runs" ]; then
	limit=-runs=$runs
else
	limit=-max_total_time=$seconds
fi

run_one() {
	path=$1
	name=${path##*/fuzz_}
	corpus=$outdir/corpus/$name
	mkdir -p "$corpus"
	dict= options=
	[ -f "$srcdir/$name.dict" ] && dict=-dict=$srcdir/$name.dict
	[ -f "$srcdir/$name.options" ] && options=$(cat "$srcdir/$name.options")
	LSAN_OPTIONS=suppressions=$srcdir/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}
	export LSAN_OPTIONS
	# shellcheck disable=SC2086 # options are words
	start=$(date +%s)
	"$path" "$limit" -print_final_stats=1 -timeout=10 \
		-rss_limit_mb=2048 -artifact_prefix="$outdir/crash-$name-" $dict $options \
		"$corpus" "$srcdir/seeds/$name" >"$outdir/fuzz-$name.log" 2>&1
	rc=$?
	case " $options " in
	*" -detect_leaks=0 "*)
		if [ "$rc" -eq 0 ]; then
			"$path" -runs=0 -detect_leaks=1 -artifact_prefix="$outdir/crash-$name-" \
				"$corpus" "$srcdir/seeds/$name" >"$outdir/fuzz-$name-replay.log" 2>&1
			rc=$?
		fi ;;
	esac
	echo "$rc $(($(date +%s) - start))" >"$outdir/fuzz-$name.status"
}

status=0
set -- "$@"
while [ $# -gt 0 ]; do
	batch=
	n=0
	while [ $# -gt 0 ] && [ "$n" -lt "$jobs" ]; do
		run_one "$1" &
		batch="$batch $1"
		n=$((n + 1))
		shift
	done
	wait
	for path in $batch; do
		name=${path##*/fuzz_}
		log=$outdir/fuzz-$name.log
		read -r rc took <"$outdir/fuzz-$name.status"
		# the last "#N" status line: single process and -fork mode alike
		last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
		execs=$(printf '%s\n' "$last" | sed -E 's/^#([0-9]+).*/\1/')
		cov=$(printf '%s\n' "$last" | sed -E 's/.*cov: ([0-9]+).*/\1/')
		if [ "$rc" -eq 0 ]; then
			echo "fuzz_$name: ${execs:-?} executions in ${took} s, coverage ${cov:-?}, no crash"
		else
			echo "fuzz_$name: FAILED (exit $rc) after ${execs:-?} executions; see $log:"
			grep -hE 'ERROR|runtime error|SUMMARY|Test unit written' "$log" \
				"$outdir/fuzz-$name-replay.log" 2>/dev/null | head -n 10
			status=1
		fi
	done
done
exit $status
