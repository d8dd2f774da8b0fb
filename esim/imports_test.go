package esim_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The library packages meet only in esim: none of them may import another
// (directly or through a dependency), so that each stays usable and
// testable on its own and the import graph cannot grow a cycle.
var leaves = []string{"template", "perso", "bpp", "hsmpool", "store"}

const module = "github.com/perso-esim/perso/"

func TestLeafLibrariesImportNoOtherLeaf(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go command not found: cannot list the import graph")
	}
	args := []string{"list", "-deps", "-f", "{{.ImportPath}}"}
	for _, l := range leaves {
		cmd := exec.Command("go", append(args, module+l)...)
		cmd.Dir = ".."
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", l, err, out)
		}
		deps := strings.Fields(string(out))
		for _, other := range leaves {
			if other == l {
				continue
			}
			for _, d := range deps {
				if d == module+other || strings.HasPrefix(d, module+other+"/") {
					t.Errorf("%s depends on %s: leaf libraries may share only esim", l, d)
				}
			}
		}
		// The only project packages a leaf may reach are itself and esim
		// (internal/ helpers are the leaf's own business).
		for _, d := range deps {
			if !strings.HasPrefix(d, module) {
				continue
			}
			rel := strings.TrimPrefix(d, module)
			if rel == l || strings.HasPrefix(rel, l+"/") || rel == "esim" || strings.HasPrefix(rel, "esim/") || strings.HasPrefix(rel, "internal/") {
				continue
			}
			if !slices.Contains(leaves, strings.SplitN(rel, "/", 2)[0]) {
				t.Errorf("%s depends on %s, which is not esim", l, d)
			}
		}
	}
	// esim itself is the bottom of the graph.
	cmd := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", module+"esim/...")
	cmd.Dir = ".."
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps esim/...: %v\n%s", err, out)
	}
	for _, d := range strings.Fields(string(out)) {
		if strings.HasPrefix(d, module) && !strings.HasPrefix(d, module+"esim") {
			t.Errorf("esim depends on %s", d)
		}
	}
}
