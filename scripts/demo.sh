#!/usr/bin/env bash
# make demo: the main job end to end on the embedded defaults.
#
#   1. a SoftHSM2 token in a temporary directory (perso hsm init: KEK, transport
#      key, SGP.26 DPauth/DPpb test keys on P-256 and brainpoolP256r1);
#   2. DEMO_COUNT generated personalisation records (default 100,000; CSV);
#   3. perso run: every record personalised with a TS.48 template, protected
#      under a fresh PPK, sealed and stored in the embedded store, in River
#      chunk jobs; the report is printed;
#   4. perso verify: DEMO_SAMPLE stored profiles drawn at random, bound for a
#      one-time eUICC key and opened as the eUICC (bpp.Open), each equal to
#      the same record personalised directly;
#   5. perso demo: a few profiles ordered, bound and opened through the store's
#      ES2+/ES9+ state machine (the download side).
#
# DEMO_COUNT, DEMO_SAMPLE, DEMO_TEMPLATE and DEMO_KEEP (keep the work directory)
# change the defaults.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"
perso=${PERSO_BIN:-$root/bin/perso} # tests point PERSO_BIN at their own build

# The TS.48 template and the SGP.26 test PKI come from the repository's testdata/.
testdata=$root/testdata
template=${DEMO_TEMPLATE:-$testdata/ts48/TS48v5_SAIP2.3_NoBERTLV.der}
count=${DEMO_COUNT:-100000}
sample=${DEMO_SAMPLE:-20}
[ -f "$template" ] || { echo "demo: template $template not found (set DEMO_TEMPLATE to a SAIP DER file)" >&2; exit 1; }
[ -d "$testdata/sgp26/DPpb" ] || { echo "demo: SGP.26 test PKI missing at $testdata/sgp26 (see testdata/README.md)" >&2; exit 1; }
[ -x "$perso" ] || { echo "demo: $perso missing: run make demo (it builds first)" >&2; exit 1; }

work=$(mktemp -d /tmp/perso-demo.XXXXXX)
if [ -n "${DEMO_KEEP:-}" ]; then
  echo "demo: work directory $work (kept)"
else
  trap 'rm -rf "$work"' EXIT
fi
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

step "perso verify: $sample stored profiles opened as the eUICC and compared"
"$perso" verify --template "$template" --input "$work/records.csv" --batch demo --sample "$sample"
t3=$(now)

step "perso demo: order, bind, download and open a few profiles through the store"
"$perso" demo --template "$template" --count 4
t4=$(now)

step "report ($work/report.json)"
cat "$work/report.json"
awk -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" -v e="$t4" -v n="$count" 'BEGIN {
  printf "\ndemo: %d records; setup %.1f s, perso run %.1f s (%.0f profiles/s end to end), verify %.1f s, download demo %.1f s; total %.1f s after the build\n",
    n, b-a, c-b, n/(c-b), d-c, e-d, e-a }'
