#!/usr/bin/env bash
# make demo: the core end to end on the embedded defaults.
# Creates a temporary SoftHSM2 token (KEK, transport key, SGP.26 DPpb keys),
# then personalises, protects, binds and opens a few profiles from a TS.48
# template and stores them in an embedded store, printing what happened.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"

# The TS.48 template and the SGP.26 test PKI come from the repository's testdata/.
testdata=$root/testdata
template=${DEMO_TEMPLATE:-$testdata/ts48/TS48v5_SAIP2.3_NoBERTLV.der}
count=${DEMO_COUNT:-5}
[ -f "$template" ] || { echo "demo: template $template not found (set DEMO_TEMPLATE to a SAIP DER file)" >&2; exit 1; }
[ -d "$testdata/sgp26/DPpb" ] || { echo "demo: SGP.26 test PKI missing at $testdata/sgp26 (see testdata/README.md)" >&2; exit 1; }

work=$(mktemp -d /tmp/perso-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
# Demo-only PINs for the throwaway token; real deployments take them from a secret store.
export PERSO_HSM_PIN=${PERSO_HSM_PIN:-demo-user-pin}
export PERSO_HSM_SO_PIN=${PERSO_HSM_SO_PIN:-demo-so-pin}

# hsm init prints the exports later commands need (SOFTHSM2_CONF, PERSO_HSM_MODULE,
# PERSO_HSM_TOKEN): there is no default module.
"$root/bin/perso" hsm init --dir "$work/hsm" --label perso-demo --import-sgp26 "$testdata/sgp26" >"$work/exports"
. "$work/exports"
"$root/bin/perso" demo --hsm.token perso-demo --template "$template" --count "$count" \
  --store.dsn "$work/perso.db"
