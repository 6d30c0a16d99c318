#!/bin/bash
# ab_frontends.sh - interleaved A/B of two checkouts' bench/frontend.py.
#
# The machines here drift by tens of percent within minutes, so two front
# ends measured one after the other are not comparable.  This starts both
# (A = OLD, B = NEW) side by side, each with its own libfcgi backend, then
# runs N pairs of short wrk runs against them, alternating which goes first,
# and prints each pair's front-end CPU per request and req/s, then the median
# of the pairwise ratios (NEW / OLD).
#
#   OLD=/path/to/old/checkout NEW=/path/to/new/checkout bench/ab_frontends.sh [N] [DURATION]
#
# Make OLD with `git worktree add /tmp/old <commit>`.  Both run with this
# checkout's venv (PYTHON), each importing txfastcgi from its own tree.
# Env: PYTHON (default .venv/bin/python of this checkout), BENCH (the shared
# bench directory with apps/hello, default ../shared/bench), OLDFE/NEWFE
# (script inside each checkout, default bench/frontend.py), FE_CPU (0),
# LOAD_CPU (1).  Pinning as in run_anchors.sh: front ends on FE_CPU, wrk and
# backends on LOAD_CPU.
set -u
N=${1:-10}; D=${2:-2s}
HERE=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-$HERE/.venv/bin/python}
BENCH=${BENCH:-$HERE/../shared/bench}
OLD=${OLD:?set OLD to the old checkout}; NEW=${NEW:-$HERE}
OLDFE=${OLDFE:-bench/frontend.py}; NEWFE=${NEWFE:-bench/frontend.py}
FE_CPU=${FE_CPU:-0}; LOAD_CPU=${LOAD_CPU:-1}
SCRATCH=$(mktemp -d /tmp/ab_frontends.XXXXXX)
PIDS=()
cleanup() { kill "${PIDS[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$SCRATCH"; }
trap cleanup EXIT
before=$(pgrep -f "$BENCH/apps/hello" | sort)
for side in a b; do
    taskset -c "$LOAD_CPU" spawn-fcgi -s "$SCRATCH/$side.sock" -M 0666 -F 2 \
        -- "$BENCH/apps/hello" -t 32 >/dev/null 2>&1
done
sleep 0.3
PIDS+=($(comm -13 <(echo "$before") <(pgrep -f "$BENCH/apps/hello" | sort)))
(cd "$OLD" && PYTHONPATH="$OLD" exec taskset -c "$FE_CPU" "$PYTHON" "$OLD/$OLDFE" 18081 "$SCRATCH/a.sock") & A=$!
(cd "$NEW" && PYTHONPATH="$NEW" exec taskset -c "$FE_CPU" "$PYTHON" "$NEW/$NEWFE" 18082 "$SCRATCH/b.sock") & B=$!
PIDS+=("$A" "$B")
for port in 18081 18082; do
    for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
    taskset -c "$LOAD_CPU" wrk -t1 -c32 -d2s "http://127.0.0.1:$port/" >/dev/null
done
run() {  # run PID PORT: prints "cpu_us_per_request req_per_s"
    local t0 t1 out
    t0=$(awk '{print $14+$15}' "/proc/$1/stat")
    out=$(taskset -c "$LOAD_CPU" wrk -t1 -c32 -d"$D" "http://127.0.0.1:$2/")
    t1=$(awk '{print $14+$15}' "/proc/$1/stat")
    echo "$out" | awk -v t="$((t1 - t0))" -v hz="$(getconf CLK_TCK)" \
        '/requests in/{n=$1} /Requests\/sec/{r=$2} END{printf "%.0f %s\n", t*1e6/hz/n, r}'
}
for i in $(seq "$N"); do
    if [ $((i % 2)) = 1 ]; then a=$(run $A 18081); b=$(run $B 18082)
    else b=$(run $B 18082); a=$(run $A 18081); fi
    echo "old $a new $b"
done | tee "$SCRATCH/pairs"
python3 - "$SCRATCH/pairs" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
cpu = [(float(r[1]), float(r[4])) for r in rows]
rps = [(float(r[2]), float(r[5])) for r in rows]
print("FE CPU/request: old %.0f us, new %.0f us (medians); new/old pairwise median %.3f"
      % (statistics.median(a for a, _ in cpu), statistics.median(b for _, b in cpu),
         statistics.median(b / a for a, b in cpu)))
print("req/s: old %.0f, new %.0f (medians); new/old pairwise median %.3f"
      % (statistics.median(a for a, _ in rps), statistics.median(b for _, b in rps),
         statistics.median(b / a for a, b in rps)))
PY
