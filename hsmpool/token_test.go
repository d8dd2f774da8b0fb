package hsmpool

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

var initTokenRuns int // -count=N reuses the process's token directory

// InitToken creates a token usable with its user PIN, and refuses to
// initialise a label twice.
func TestInitToken(t *testing.T) {
	cfg := testConfig(t)
	initTokenRuns++
	label := fmt.Sprintf("perso-init-test-%d", initTokenRuns)
	if err := InitToken(cfg.Module, label, "87654321", "4321"); err != nil {
		t.Fatalf("InitToken: %v", err)
	}
	err := InitToken(cfg.Module, label, "87654321", "4321")
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second InitToken: %v, want 'already exists'", err)
	}
	cfg.TokenLabel, cfg.PIN = label, "4321"
	p := openPool(t, cfg)
	if err := p.GenerateSecretKey(context.Background(), "kek-1", KindKEK); err != nil {
		t.Fatal(err)
	}
	cfg.PIN = "0000"
	if p2, err := Open(context.Background(), cfg); err == nil {
		p2.Close()
		t.Fatal("a second pool on the same module opened (two owners of C_Initialize)")
	}
}

func TestOpenErrorsRevealNoSecrets(t *testing.T) {
	cfg := testConfig(t)
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"wrong PIN", func(c *Config) { c.PIN = "98765" }, "wrong PIN"},
		{"unknown token", func(c *Config) { c.TokenLabel = "no-such-token" }, "CKR_TOKEN_NOT_PRESENT"},
		{"missing module", func(c *Config) { c.Module = "/nonexistent/libpkcs11.so" }, "cannot load"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg
			tc.mod(&c)
			p, err := Open(context.Background(), c)
			if err == nil {
				p.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), c.PIN) {
				t.Fatalf("err = %q: want it to say %q and not contain the PIN", err, tc.want)
			}
		})
	}
}

// Only SoftHSM2's manufacturer string lets InitToken touch a slot
// (TestInitToken shows the real module passes the check).
func TestIsSoftHSM(t *testing.T) {
	for _, c := range []struct {
		manufacturer string
		want         bool
	}{
		{"SoftHSM                         ", true}, // blank-padded, as C_GetInfo returns it
		{"SoftHSM", true},
		{"Thales", false},
		{"Utimaco IS GmbH", false},
		{"", false},
		{"PKCS#11 Kit", false},
	} {
		if got := isSoftHSM(c.manufacturer); got != c.want {
			t.Errorf("isSoftHSM(%q) = %v, want %v", c.manufacturer, got, c.want)
		}
	}
}
