#!/usr/bin/env bash
# Runs a command with the services perso's tests need: SoftHSM2 (each test
# process creates its own token in a temporary directory) and a throwaway
# PostgreSQL cluster. Exports:
#   PERSO_PKCS11_MODULE     path of the SoftHSM2 PKCS#11 module
#   PERSO_TEST_PG_DSN       DSN of the throwaway database
#   PERSO_REQUIRE_SERVICES  1: tests that need a service fail instead of skipping
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
"$here/install-deps.sh"

export PERSO_PKCS11_MODULE=${PERSO_PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
export PERSO_REQUIRE_SERVICES=1

pgdir=$(mktemp -d /tmp/perso-pg.XXXXXX)
chmod 755 "$pgdir"
cleanup() { "$here/pg-cluster.sh" stop "$pgdir"; }
trap cleanup EXIT
PERSO_TEST_PG_DSN=$("$here/pg-cluster.sh" start "$pgdir")
export PERSO_TEST_PG_DSN
echo "with-services: SoftHSM2 at $PERSO_PKCS11_MODULE, PostgreSQL at ${PERSO_TEST_PG_DSN%%/perso_test*}" >&2
"$@"
