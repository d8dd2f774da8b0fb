package main

import (
	"os"
	"strings"
	"testing"
)

// Every setting perso accepts is documented in docs/configuration.md: a key
// added to the settings table without a line there is one an operator
// cannot find.
func TestEverySettingIsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range settings {
		if !strings.Contains(string(doc), "`"+s.key+"`") {
			t.Errorf("setting %s is not in docs/configuration.md", s.key)
		}
	}
}
