package bench

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
)

// Env is where and with what a run was measured: enough to tell two
// machines, two toolchains or two revisions apart in the history.
type Env struct {
	CPUModel    string    `json:"cpu_model"`
	Cores       int       `json:"cores"`
	GOMAXPROCS  int       `json:"gomaxprocs"`
	MemoryBytes uint64    `json:"memory_bytes,omitempty"`
	OS          string    `json:"os"`
	Arch        string    `json:"arch"`
	GoVersion   string    `json:"go_version"`
	GitRevision string    `json:"git_revision,omitempty"`
	GitModified bool      `json:"git_modified,omitempty"`
	Load        []float64 `json:"load_average,omitempty"` // 1, 5, 15 min at the start: the neighbours
}

// CurrentEnv describes this machine and binary. Nothing in it fails: a
// fact that cannot be found is left empty.
func CurrentEnv(ctx context.Context) Env {
	e := Env{Cores: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), OS: runtime.GOOS, Arch: runtime.GOARCH,
		GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		e.CPUModel = cpuModel(b)
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		e.MemoryBytes = memTotal(b)
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		e.Load = loadAverage(b)
	}
	e.GitRevision, e.GitModified = gitRevision(ctx)
	return e
}

// cpuModel is the first "model name" of /proc/cpuinfo (x86), else its
// "Hardware" or "CPU part" lines (arm).
func cpuModel(cpuinfo []byte) string {
	var fallback string
	sc := bufio.NewScanner(bytes.NewReader(cpuinfo))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch k {
		case "model name":
			return v
		case "Hardware", "CPU part":
			if fallback == "" {
				fallback = v
			}
		}
	}
	return fallback
}

// memTotal is MemTotal of /proc/meminfo in bytes.
func memTotal(meminfo []byte) uint64 {
	sc := bufio.NewScanner(bytes.NewReader(meminfo))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return 0
		}
		kb, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0
		}
		return kb << 10
	}
	return 0
}

func loadAverage(loadavg []byte) []float64 {
	f := strings.Fields(string(loadavg))
	var out []float64
	for i := 0; i < 3 && i < len(f); i++ {
		x, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return nil
		}
		out = append(out, x)
	}
	return out
}

// gitRevision is the revision the binary was built from (vcs.revision,
// stamped by `go build` unless -buildvcs=false) or else that of the
// working directory's repository (`git rev-parse HEAD`), with whether the
// tree had uncommitted changes to tracked files.
func gitRevision(ctx context.Context) (string, bool) {
	if bi, ok := debug.ReadBuildInfo(); ok {
		var rev string
		var modified bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if rev != "" {
			return rev, modified
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "git", "rev-parse", "HEAD").Output()
	if err != nil {
		return "", false
	}
	rev := strings.TrimSpace(string(out))
	st, err := exec.CommandContext(ctx, "git", "status", "--porcelain", "--untracked-files=no").Output()
	return rev, err == nil && len(bytes.TrimSpace(st)) > 0
}
