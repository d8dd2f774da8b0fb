#!/usr/bin/env bash
# make bench: the Go benchmarks, then every `perso bench` mode, printing their
# figures. Run under scripts/with-services.sh (SoftHSM2 and a throwaway
# PostgreSQL: PERSO_PKCS11_MODULE, PERSO_TEST_PG_DSN).
#
#   BENCH_SIZE=quick (default) small settings, a few minutes on 2 cores;
#   BENCH_SIZE=full  the sizes the docs quote (tens of minutes).
#   BENCH, BENCHTIME select and size the Go benchmarks (go test -bench).
#   BENCH_GO=0       skip the Go benchmarks; BENCH_MODES=0 skip the perso modes.
#
# Each mode prints its table, writes bench/results/<mode>.json, appends one
# line to bench/results/history.jsonl and draws its plots (and each figure's
# history) into bench/results/plots/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
perso=${PERSO_BIN:-$root/bin/perso}
go=${GO:-go}
size=${BENCH_SIZE:-quick}
results=$root/bench/results
plots=$results/plots

case "$size" in
quick)
  engine_records=20000
  mixed_args=(--records 20000 --downloads 200 --euiccs 16)
  download_count=100
  hsm_args=(--ops sign,ecdh,wrap,qos,ppk --sessions 1,2,4,8 --duration 1s --ppk-profiles 20000)
  store_args=(--profiles 5000 --orders 2000 --loaders 1,2 --callers 1,4,16)
  compare_records=5000 compare_runs=3
  soak_args=(--binds 5000)
  ;;
full)
  engine_records=1000000
  mixed_args=(--records 200000 --downloads 2000 --euiccs 64)
  download_count=2000
  hsm_args=(--ops sign,ecdh,wrap,qos,ppk --sessions 1,2,4,8,16 --duration 10s)
  store_args=(--profiles 40000 --orders 10000 --loaders 1,2,4 --callers 1,4,16,32)
  compare_records=100000 compare_runs=3
  # The docs' 200 000-download soak of perso serve takes about 35 minutes on
  # 2 cores: run it on its own (docs/performance.md § soak).
  soak_args=(--binds 40000)
  ;;
*)
  echo "bench: BENCH_SIZE=$size: want quick or full" >&2
  exit 2
  ;;
esac

if [ "${BENCH_GO:-1}" != 0 ]; then
  printf '\n== Go benchmarks (go test -bench %s -benchtime %s)\n' "${BENCH:-.}" "${BENCHTIME:-1s}"
  "$go" test -run '^$' -bench "${BENCH:-.}" -benchtime "${BENCHTIME:-1s}" -benchmem ./...
fi
[ "${BENCH_MODES:-1}" != 0 ] || exit 0

[ -x "$perso" ] || { echo "bench: $perso missing: run make bench (it builds first)" >&2; exit 1; }
work=$(mktemp -d /tmp/perso-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$plots"

# A throwaway SoftHSM2 token with the demo PINs (never for real keys) and the
# SGP.26 test keys (serve's DPauth/DPpb); an embedded store in the work directory.
"$perso" hsm init --dir "$work/hsm" --label perso-bench --demo-pins --import-sgp26 "$root/testdata/sgp26" >"$work/exports"
. "$work/exports"
export PERSO_HSM_PIN=1234 PERSO_STORE_DRIVER=sqlite PERSO_STORE_DSN=$work/perso.db
template=$root/testdata/ts48/TS48v5_SAIP2.3_NoBERTLV.der

printf '\n== perso bench engine (%s): %d records\n' "$size" "$engine_records"
"$perso" bench engine --records "$engine_records" --json "$results/engine.json" --force --plots "$plots"
if [ -n "${PERSO_TEST_PG_DSN:-}" ]; then
  printf '\n== perso bench engine (%s) on PostgreSQL: %d records\n' "$size" "$engine_records"
  PERSO_STORE_DRIVER=postgres PERSO_STORE_DSN=$PERSO_TEST_PG_DSN \
    "$perso" bench engine --records "$engine_records" --json "$results/engine-postgres.json" --force --plots "$plots"
fi

printf '\n== perso bench mixed (%s)\n' "$size"
"$perso" bench mixed "${mixed_args[@]}" --json "$results/mixed.json" --force --plots "$plots"

printf '\n== perso bench download (%s): %d downloads per curve\n' "$size" "$download_count"
"$perso" testdata perso --count $((2 * download_count)) -o "$work/live.csv"
"$perso" run --template "$template" --input "$work/live.csv" --batch bench-live --profile-type ts48-demo \
  --template.algorithm keep --progress none >/dev/null
"$perso" bench download --downloads "$download_count" --json "$results/download.json" --force --plots "$plots"

printf '\n== perso bench hsm (%s)\n' "$size"
"$perso" bench hsm "${hsm_args[@]}" --json "$results/hsm.json" --force --plots "$plots"

printf '\n== perso bench store (%s)\n' "$size"
if [ -n "${PERSO_TEST_PG_DSN:-}" ]; then
  PERSO_STORE_DRIVER=postgres PERSO_STORE_DSN=$PERSO_TEST_PG_DSN \
    "$perso" bench store "${store_args[@]}" --json "$results/store.json" --force --plots "$plots"
else
  "$perso" bench store "${store_args[@]}" --json "$results/store.json" --force --plots "$plots"
fi

printf '\n== perso bench soak (%s)\n' "$size"
"$perso" bench soak "${soak_args[@]}" --json "$results/soak.json" --force --plots "$plots"

printf '\n== perso bench compare (%s): perso run vs reading and validating alone (perso check)\n' "$size"
"$perso" testdata perso --count "$compare_records" -o "$work/records.csv"
"$perso" bench compare --input "$work/records.csv" --template "$template" \
  --reference "'$perso' check {input}" --runs "$compare_runs" --engine-args "--template.algorithm keep" --json "$results/compare.json" --force --plots "$plots"
