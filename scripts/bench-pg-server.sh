#!/usr/bin/env bash
# Runs `perso bench engine` on the throwaway PostgreSQL cluster and adds what
# the engine's report cannot see: the server's CPU and WAL per profile.
#   scripts/with-services.sh scripts/bench-pg-server.sh RECORDS ROUNDS BIN...
# Each round runs every BIN once, in turn (alternated, so that the machine's
# load falls on all of them alike), on the same cluster, each in its own
# scratch schema. Per run it prints profiles/s and perso's CPU µs per profile
# (the engine's report), the server's CPU µs per profile (user + system time
# of the postmaster and of all its processes, backends that exited included:
# the postmaster's reaped-children times), WAL bytes per profile
# (pg_current_wal_lsn before and after), store bytes per profile, peak RSS and
# the 1-minute load average before → after. The HSM is a SoftHSM2 token made
# with `BIN hsm init --demo-pins` in a temporary directory.
# Needs to read /proc of the server's processes (same user, or root).
set -euo pipefail
recs=${1:?usage: bench-pg-server.sh RECORDS ROUNDS BIN...}
rounds=${2:?usage: bench-pg-server.sh RECORDS ROUNDS BIN...}
shift 2
[ $# -gt 0 ] || { echo "usage: bench-pg-server.sh RECORDS ROUNDS BIN..." >&2; exit 2; }
: "${PERSO_TEST_PG_DSN:?run under scripts/with-services.sh}"
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
psql="$bindir/psql"
sql() { "$psql" -qAtc "$1" "$PERSO_TEST_PG_DSN"; }
pm=$(head -1 "$(sql 'SHOW data_directory')/postmaster.pid")
hz=$(getconf CLK_TCK)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# server_ticks: CPU ticks of the postmaster, its reaped children (cutime,
# cstime: backends that have exited) and its live children.
server_ticks() {
  local t c
  t=$(awk '{print $14+$15+$16+$17}' "/proc/$pm/stat")
  for c in $(ps --ppid "$pm" -o pid=); do
    t=$((t + $(awk '{print $14+$15}' "/proc/$c/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}

env=$("$1" hsm init --dir "$work/hsm" --demo-pins 2>"$work/hsm.log") || { cat "$work/hsm.log" >&2; exit 1; }
eval "$env"
export PERSO_HSM_PIN=${PERSO_HSM_PIN:-1234}
for _ in $(seq 1 "$rounds"); do
  for bin in "$@"; do
    wal0=$(sql 'SELECT pg_current_wal_lsn()')
    load0=$(cut -d' ' -f1 /proc/loadavg)
    t0=$(server_ticks)
    "$bin" bench engine --records "$recs" --history none --store.driver postgres \
      --store.dsn "$PERSO_TEST_PG_DSN" --format json --json "$work/report.json" --force >"$work/log" 2>&1 \
      || { tail -20 "$work/log" >&2; exit 1; }
    sleep 1 # the pool's backends exit after the run: let the postmaster reap them
    t1=$(server_ticks)
    load1=$(cut -d' ' -f1 /proc/loadavg)
    wal=$(sql "SELECT (pg_current_wal_lsn() - '$wal0')::bigint / $recs")
    jq -r --arg bin "$(basename "$bin")" --arg srv "$(( (t1 - t0) * 1000000 / hz / recs ))" \
      --arg wal "$wal" --arg load "$load0 → $load1" '.details |
      "\($bin): \(.profiles_per_second | floor) profiles/s, perso \(.cpu_us_per_profile * 10 | floor / 10) µs, server \($srv) µs, WAL \($wal) B, store \(.store_bytes_per_profile | floor) B per profile, peak RSS \(.peak_rss_bytes / 1048576 | floor) MiB, load \($load)"' \
      "$work/report.json"
  done
done
