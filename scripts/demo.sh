#!/usr/bin/env bash
# make demo: the main job end to end on the embedded defaults.
#
#   1. a SoftHSM2 token in a temporary directory (perso hsm init: KEK, transport
#      key, SGP.26 DPauth/DPpb test keys on P-256 and brainpoolP256r1);
#   2. DEMO_COUNT generated personalisation records (default 100,000; CSV);
#   3. perso run: every record personalised with a TS.48 template, protected
#      under a fresh PPK, sealed and stored in the embedded store, in River
#      chunk jobs; the report is printed;
#   4. perso verify --offline: DEMO_SAMPLE stored profiles drawn at random,
#      bound for a one-time eUICC key and opened as the eUICC (bpp.Open), each
#      equal to the same record personalised directly (the store unchanged);
#   5. perso serve on a free loopback port (ES9+ over TLS with the SGP.26
#      DPtls certificate, the token's DPauth/DPpb keys, the same store), and
#      perso verify --server: DEMO_DOWNLOADS profiles ordered through the store,
#      downloaded by the virtual eUICC over ES9+ (P-256 and brainpoolP256r1,
#      JSON binding, then two more with the ASN.1 binding), install
#      notification; each recovered UPP equals its record and the store shows
#      it Installed. The server is stopped (SIGTERM) at the end.
#
# DEMO_COUNT, DEMO_SAMPLE, DEMO_DOWNLOADS, DEMO_TEMPLATE and DEMO_KEEP (keep the
# work directory) change the defaults.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"
perso=${PERSO_BIN:-$root/bin/perso} # tests point PERSO_BIN at their own build

# The TS.48 template and the SGP.26 test PKI come from the repository's testdata/.
testdata=$root/testdata
template=${DEMO_TEMPLATE:-$testdata/ts48/TS48v5_SAIP2.3_NoBERTLV.der}
count=${DEMO_COUNT:-100000}
sample=${DEMO_SAMPLE:-20}
downloads=${DEMO_DOWNLOADS:-8}
[ -f "$template" ] || { echo "demo: template $template not found (set DEMO_TEMPLATE to a SAIP DER file)" >&2; exit 1; }
[ -d "$testdata/sgp26/DPpb" ] || { echo "demo: SGP.26 test PKI missing at $testdata/sgp26 (see testdata/README.md)" >&2; exit 1; }
[ -x "$perso" ] || { echo "demo: $perso missing: run make demo (it builds first)" >&2; exit 1; }

work=$(mktemp -d /tmp/perso-demo.XXXXXX)
serve_pid=
cleanup() {
  # The server this script started, by its process id.
  if [ -n "$serve_pid" ]; then kill "$serve_pid" 2>/dev/null || true; wait "$serve_pid" 2>/dev/null || true; fi
  [ -n "${DEMO_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
[ -z "${DEMO_KEEP:-}" ] || echo "demo: work directory $work (kept)"
# Demo-only PINs for the throwaway token; real deployments take them from a secret store.
export PERSO_HSM_PIN=${PERSO_HSM_PIN:-demo-user-pin}
export PERSO_HSM_SO_PIN=${PERSO_HSM_SO_PIN:-demo-so-pin}
export PERSO_STORE_DRIVER=sqlite PERSO_STORE_DSN=$work/perso.db
# The TS.48 test template declares only the USIM test algorithm; perso testdata
# writes Milenage records: keep the template's algorithm (run and verify alike).
export PERSO_TEMPLATE_ALGORITHM=keep

step() { printf '\n== %s\n' "$*"; }
now() { date +%s.%N; }
t0=$(now)

step "HSM: a SoftHSM2 token in $work/hsm"
# hsm init prints the exports later commands need (SOFTHSM2_CONF, PERSO_HSM_MODULE,
# PERSO_HSM_TOKEN): there is no default module.
"$perso" hsm init --dir "$work/hsm" --label perso-demo --import-sgp26 "$testdata/sgp26" >"$work/exports"
. "$work/exports"

step "records: $count generated (perso testdata perso)"
"$perso" testdata perso --count "$count" -o "$work/records.csv"

step "perso run: $(basename "$template") → embedded store ($work/perso.db)"
t1=$(now)
"$perso" run --template "$template" --input "$work/records.csv" --batch demo --profile-type ts48-demo \
  --report "$work/report.json" --force
t2=$(now)

step "perso verify --offline: $sample stored profiles opened as the eUICC and compared"
"$perso" verify --offline --template "$template" --input "$work/records.csv" --batch demo --sample "$sample"
t3=$(now)

step "perso serve: ES9+ over TLS on a free loopback port, the same store and token"
# serve.pki_dir and serve.tls_* default to testdata/sgp26, relative to the
# working directory: name them for any directory the script runs from.
export PERSO_SERVE_PKI_DIR=$testdata/sgp26
export PERSO_SERVE_TLS_CERT=$testdata/sgp26/DPtls/CERT_S_SM_DP_VARO_TLS_NIST.der
export PERSO_SERVE_TLS_KEY=$testdata/sgp26/DPtls/SK_S_SM_DP_TLS_NIST.pem
# No per-client rate limit: every download of the demo comes from one address.
PERSO_SERVE_RATE_LIMIT=0 "$perso" serve --serve.listen 127.0.0.1:0 --log-level warn --stop-after 10m >"$work/serve.out" &
serve_pid=$!
url=
for _ in $(seq 1 300); do # up to 30 s
  url=$(grep -o 'https://[^ ]*' "$work/serve.out" 2>/dev/null | head -n 1 || true)
  [ -n "$url" ] && break
  kill -0 "$serve_pid" 2>/dev/null || { echo "demo: perso serve exited (its errors are above)" >&2; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "demo: perso serve did not listen within 30 s" >&2; exit 1; }
cat "$work/serve.out"

step "perso verify --server $url: $downloads profiles ordered, downloaded by the virtual eUICC over ES9+, Installed"
"$perso" verify --server "$url" --sgp26 "$testdata/sgp26" --template "$template" --input "$work/records.csv" \
  --batch demo --sample "$downloads"
"$perso" verify --server "$url" --sgp26 "$testdata/sgp26" --batch demo --sample 2 --binding asn1
kill "$serve_pid"
wait "$serve_pid" || true
serve_pid=
t4=$(now)

step "report ($work/report.json)"
cat "$work/report.json"
awk -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" -v e="$t4" -v n="$count" 'BEGIN {
  printf "\ndemo: %d records; setup %.1f s, perso run %.1f s (%.0f profiles/s end to end), verify %.1f s, serve and download %.1f s; total %.1f s after the build\n",
    n, b-a, c-b, n/(c-b), d-c, e-d, e-a }'
