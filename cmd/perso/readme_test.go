package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/perso-esim/perso/internal/testenv"
)

// readmeLimit is the README's size budget: a front page read in five
// minutes, not a lab notebook.
const readmeLimit = 10 << 10

func readme(t *testing.T) (root string, text string) {
	t.Helper()
	root = testenv.Root(t)
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	return root, string(b)
}

func TestReadmeSize(t *testing.T) {
	_, text := readme(t)
	if len(text) >= readmeLimit {
		t.Fatalf("README.md is %d bytes: keep it under %d (move details to docs/)", len(text), readmeLimit)
	}
}

// readmeBlocks returns the README's ```sh code blocks.
func readmeBlocks(text string) []string {
	var blocks []string
	var cur []string
	in := false
	for _, line := range strings.Split(text, "\n") {
		switch {
		case !in && strings.HasPrefix(line, "```sh"):
			in, cur = true, nil
		case in && strings.HasPrefix(line, "```"):
			in = false
			blocks = append(blocks, strings.Join(cur, "\n")+"\n")
		case in:
			cur = append(cur, line)
		}
	}
	return blocks
}

var (
	codeSpan = regexp.MustCompile("`([^`\n]+)`")
	fence    = regexp.MustCompile("(?s)```.*?```")
)

// TestReadmeCommands runs every command of the README as written: the
// tour block as a bash script (in a temporary directory laid out like the
// repository: bin/perso is the test's build, testdata/ the repository's),
// `make` lines as `make -n` (the target exists and its recipe expands:
// running make test from make test would recurse; TestDemoScript runs the
// demo's script), the headline table's `go test -bench` commands once each
// (-benchtime 1x: each must find a benchmark) and each `perso …` command
// named in the prose or the table through its --help.
func TestReadmeCommands(t *testing.T) {
	testenv.SoftHSM(t) // the tour makes a SoftHSM2 token (fails in CI, skips by hand)
	root, text := readme(t)
	bin := persoBinary(t)
	blocks := readmeBlocks(text)
	if len(blocks) < 2 {
		t.Fatalf("README has %d sh blocks; want the set-up commands and the tour", len(blocks))
	}
	ran := 0
	for i, block := range blocks {
		if strings.HasPrefix(strings.TrimSpace(block), "make ") {
			for _, line := range strings.Split(strings.TrimSpace(block), "\n") {
				line, _, _ = strings.Cut(line, "#")
				f := strings.Fields(line)
				if len(f) != 2 || f[0] != "make" {
					t.Errorf("README block %d: %q: want `make TARGET` lines", i+1, line)
					continue
				}
				makeDryRun(t, root, f[1])
				ran++
			}
			continue
		}
		t.Run("block"+string(rune('1'+i)), func(t *testing.T) { runTour(t, root, bin, block) })
		ran++
	}
	// Inline code: `make X` targets, `go test … -bench …` and `perso …`.
	seen := map[string]bool{}
	for _, m := range codeSpan.FindAllStringSubmatch(fence.ReplaceAllString(text, ""), -1) {
		// In a table, a pipe in a code span is written \| (GitHub shows |).
		span := strings.ReplaceAll(strings.TrimSpace(m[1]), `\|`, "|")
		if seen[span] {
			continue
		}
		seen[span] = true
		f := strings.Fields(span)
		switch {
		case len(f) == 0:
			continue
		case len(f) == 2 && f[0] == "make":
			makeDryRun(t, root, f[1])
		case len(f) > 2 && f[0] == "go" && f[1] == "test" && strings.Contains(span, "-bench"):
			t.Run(span, func(t *testing.T) { runReadmeBenchmark(t, root, span) })
		case f[0] == "perso" && len(f) > 1:
			var words []string
			for _, w := range f[1:] {
				if strings.HasPrefix(w, "-") || strings.ContainsAny(w, "'\"$…") {
					break
				}
				words = append(words, w)
			}
			res := runChild(t, root, nil, nil, time.Minute, append(words, "--help")...)
			if res.code != 0 || !strings.Contains(res.stdout, "Usage:") {
				t.Errorf("README names `%s`: perso %s --help exits %d\n%s", span, strings.Join(words, " "), res.code, res.stderr)
			}
		default:
			continue
		}
		ran++
	}
	if ran < 10 {
		t.Errorf("only %d README commands found and run", ran)
	}
}

// makeDryRun checks that make knows target and can expand its recipe.
func makeDryRun(t *testing.T, root, target string) {
	t.Helper()
	out, err := exec.Command("make", "-C", root, "-n", target).CombinedOutput()
	if err != nil {
		t.Errorf("README: make -n %s: %v\n%s", target, err, out)
	}
}

// runReadmeBenchmark runs a README's `go test -bench` command once per
// benchmark (-benchtime 1x) and checks that it matched some.
func runReadmeBenchmark(t *testing.T, root, span string) {
	f := strings.Fields(span)
	var args []string
	for _, a := range f[2:] {
		args = append(args, strings.Trim(a, "'"))
	}
	// Flags after the package list go to the test binary.
	args = append(args, "-benchtime", "1x")
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	cmd := exec.Command(goTool, append([]string{"test", "-count=1"}, args...)...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("README: %s: %v\n%s", span, err, out)
	}
	if !regexp.MustCompile(`(?m)^Benchmark\S+\s+1\s`).Match(out) {
		t.Errorf("README: %s ran no benchmark:\n%s", span, out)
	}
}

// runTour runs a README block with bash -e in a directory shaped like the
// repository (go.mod, so that perso knows it is in one), and kills whatever it left running (perso serve &).
func runTour(t *testing.T, root, bin, block string) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, l := range [][2]string{{bin, filepath.Join(dir, "bin", "perso")}, {filepath.Join(root, "testdata"), filepath.Join(dir, "testdata")},
		{filepath.Join(root, "go.mod"), filepath.Join(dir, "go.mod")}} {
		if err := os.Symlink(l[0], l[1]); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-e", "-o", "pipefail", "-c", block)
	cmd.Dir = dir
	// mktemp -t in the tour honours TMPDIR: its work directory goes with the test's.
	cmd.Env = append(cleanEnv(), "TMPDIR="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// perso serve … & keeps the output pipe open after bash exits: stop
	// waiting for it then, and stop the server below.
	cmd.WaitDelay = 2 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) // perso serve … & outlives the script
	if errors.Is(err, exec.ErrWaitDelay) {
		err = nil
	}
	if err != nil {
		t.Fatalf("README block as a bash -e script: %v\n%s", err, lastLines(out.String(), 60))
	}
}
