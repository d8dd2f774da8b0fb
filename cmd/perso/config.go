package main

import "github.com/spf13/viper"

// setDefaults lists every configuration key with its built-in default. Keys
// map to perso.yaml (nested with dots), to PERSO_* environment variables
// (dots become underscores: hsm.module -> PERSO_HSM_MODULE) and, where a
// subcommand defines one, to a flag of the same name.
func setDefaults(v *viper.Viper) {
	// HSM: a PKCS#11 token. The software backend is for development only
	// and is never chosen when a module is configured.
	v.SetDefault("hsm.backend", "pkcs11")
	v.SetDefault("hsm.module", "/usr/lib/softhsm/libsofthsm2.so")
	v.SetDefault("hsm.token", "perso")
	v.SetDefault("hsm.pin", "")
	v.SetDefault("hsm.sessions", 4)
	v.SetDefault("hsm.live_reserved", 0)        // 0: max(1, sessions/4)
	v.SetDefault("hsm.batch_while_live", 1)     // batch ops in flight while live requests run
	v.SetDefault("hsm.spin_wait", "200us")      // how long waiting callers poll before sleeping; negative: never
	v.SetDefault("hsm.kek", "kek-1")            // KEK for new batch keys
	v.SetDefault("hsm.software.file", "")       // software backend key file (development only)
	v.SetDefault("hsm.software.passphrase", "") // PERSO_HSM_SOFTWARE_PASSPHRASE

	// Store: embedded by default, PostgreSQL at scale.
	v.SetDefault("store.driver", "sqlite")
	v.SetDefault("store.dsn", "perso.db")
}
