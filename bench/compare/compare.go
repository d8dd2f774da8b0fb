// Package compare is `perso bench compare`: the same records through the
// engine (`perso run`, a child process) and through a reference command
// given on the command line (another data-preparation tool, a script, a
// previous perso build), alternately, with the wall time and the CPU time
// per record of each and their ratios. Both are measured as child
// processes the same way (wall clock around the process, user + system
// CPU from its rusage, peak RSS), so the ratio compares like with like.
package compare

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/perso-esim/perso/bench"
)

// Config says what to compare.
type Config struct {
	// Engine returns the engine's command line for run i (0-based) with
	// its report written to report: a fresh store and batch for each run,
	// so that no run resumes or conflicts with an earlier one.
	Engine func(i int, dir, report string) []string
	// Reference is a shell command (sh -c). In it, {input}, {template} and
	// {out} are replaced by the shell-quoted input, template and a fresh
	// output directory for the run; the same values are in the
	// environment as PERSO_BENCH_INPUT, PERSO_BENCH_TEMPLATE and
	// PERSO_BENCH_OUT.
	Reference string
	Input     string
	Template  string
	Runs      int      // alternating pairs (default 3); medians are reported
	Env       []string // environment of both commands (default: this process's)
	EngineEnv []string // added to the engine's environment
	TempDir   string
	// Progress, if set, is told what runs.
	Progress func(string)
}

// Measurement is one child process run.
type Measurement struct {
	Wall    time.Duration
	CPU     time.Duration // user + system of the child and its waited-for descendants
	MaxRSS  int64         // bytes
	Records int64         // engine runs: records read (from its report)
}

// Run measures and adds the table, the figures and the series to r.
func Run(ctx context.Context, cfg Config, r *bench.Result) error {
	if cfg.Runs <= 0 {
		cfg.Runs = 3
	}
	if cfg.Progress == nil {
		cfg.Progress = func(string) {}
	}
	if strings.TrimSpace(cfg.Reference) == "" {
		return errors.New("compare: no reference command")
	}
	dir, err := os.MkdirTemp(cfg.TempDir, "perso-bench-compare-*")
	if err != nil {
		return fmt.Errorf("compare: a working directory: %w", err)
	}
	defer os.RemoveAll(dir)
	var eng, ref []Measurement
	for i := range cfg.Runs {
		// Alternate, and swap who goes first every other pair, so that a
		// warm page cache or a neighbour's burst does not favour one side.
		order := []string{"engine", "reference"}
		if i%2 == 1 {
			order = []string{"reference", "engine"}
		}
		for _, who := range order {
			runDir := filepath.Join(dir, fmt.Sprintf("%s-%d", who, i))
			if err := os.Mkdir(runDir, 0o700); err != nil {
				return fmt.Errorf("compare: %w", err)
			}
			cfg.Progress(fmt.Sprintf("run %d of %d: %s", i+1, cfg.Runs, who))
			switch who {
			case "engine":
				report := filepath.Join(runDir, "report.json")
				m, err := measure(ctx, cfg.Engine(i, runDir, report), append(slices.Clone(envOr(cfg.Env)), cfg.EngineEnv...), "")
				if err != nil {
					return fmt.Errorf("compare: the engine (run %d): %w", i+1, err)
				}
				if m.Records, err = recordsRead(report); err != nil {
					return fmt.Errorf("compare: the engine (run %d): %w", i+1, err)
				}
				eng = append(eng, m)
			case "reference":
				out := filepath.Join(runDir, "out")
				if err := os.Mkdir(out, 0o700); err != nil {
					return fmt.Errorf("compare: %w", err)
				}
				cmdline := Expand(cfg.Reference, cfg.Input, cfg.Template, out)
				env := append(slices.Clone(envOr(cfg.Env)), "PERSO_BENCH_INPUT="+cfg.Input, "PERSO_BENCH_TEMPLATE="+cfg.Template, "PERSO_BENCH_OUT="+out)
				m, err := measure(ctx, []string{"sh", "-c", cmdline}, env, runDir)
				if err != nil {
					return fmt.Errorf("compare: the reference command (run %d): %w", i+1, err)
				}
				ref = append(ref, m)
			}
		}
	}
	report(r, cfg, eng, ref)
	return nil
}

func envOr(env []string) []string {
	if env == nil {
		return os.Environ()
	}
	return env
}

// Expand substitutes {input}, {template} and {out} in a reference command,
// each shell-quoted.
func Expand(cmd, input, template, out string) string {
	return strings.NewReplacer("{input}", shellQuote(input), "{template}", shellQuote(template), "{out}", shellQuote(out)).Replace(cmd)
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// measure runs argv to completion and returns its wall and CPU time. A
// non-zero exit is an error quoting the end of its standard error.
func measure(ctx context.Context, argv []string, env []string, dir string) (Measurement, error) {
	if len(argv) == 0 {
		return Measurement{}, errors.New("empty command")
	}
	c := exec.CommandContext(ctx, argv[0], argv[1:]...)
	c.Env = envOr(env)
	c.Dir = dir
	var stderr tail
	c.Stdout = &stderr // both kept short: only the end is ever shown
	c.Stderr = &stderr
	t0 := time.Now()
	err := c.Run()
	wall := time.Since(t0)
	if ctx.Err() != nil {
		return Measurement{}, context.Cause(ctx)
	}
	if err != nil {
		return Measurement{}, fmt.Errorf("%s: %w\n%s", strings.Join(argv, " "), err, stderr.String())
	}
	m := Measurement{Wall: wall}
	if ru, ok := c.ProcessState.SysUsage().(*syscall.Rusage); ok {
		m.CPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		m.MaxRSS = ru.Maxrss << 10 // Linux reports KiB
	}
	return m, nil
}

// tail keeps the last 4 KiB written to it.
type tail struct{ b []byte }

func (t *tail) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 4096 {
		t.b = t.b[len(t.b)-4096:]
	}
	return len(p), nil
}

func (t *tail) String() string { return string(bytes.TrimSpace(t.b)) }

func recordsRead(report string) (int64, error) {
	b, err := os.ReadFile(report)
	if err != nil {
		return 0, fmt.Errorf("reading its report: %w", err)
	}
	var rep struct {
		RecordsRead int64 `json:"records_read"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		return 0, fmt.Errorf("its report %s: %w", report, err)
	}
	if rep.RecordsRead <= 0 {
		return 0, fmt.Errorf("its report %s says it read no record", report)
	}
	return rep.RecordsRead, nil
}

func median(ms []Measurement, f func(Measurement) float64) float64 {
	v := make([]float64, len(ms))
	for i, m := range ms {
		v[i] = f(m)
	}
	slices.Sort(v)
	n := len(v)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

func report(r *bench.Result, cfg Config, eng, ref []Measurement) {
	records := float64(eng[0].Records)
	t := bench.Table{Title: fmt.Sprintf("%d records of %s, %d alternating runs each (medians)", eng[0].Records, filepath.Base(cfg.Input), len(eng)),
		Columns: []bench.Column{{Name: "command"}, {Name: "wall", Unit: "s"}, {Name: "throughput", Unit: "records/s"},
			{Name: "CPU", Unit: "µs/record"}, {Name: "peak RSS", Unit: "MiB"}}}
	row := func(name string, ms []Measurement) (wall, cpuPerRec float64) {
		wall = median(ms, func(m Measurement) float64 { return m.Wall.Seconds() })
		cpuPerRec = median(ms, func(m Measurement) float64 { return float64(m.CPU.Microseconds()) / records })
		rss := median(ms, func(m Measurement) float64 { return float64(m.MaxRSS) / (1 << 20) })
		t.AddRow(bench.Text(name), bench.Num(wall, 2), bench.Num(records/wall, 0), bench.Num(cpuPerRec, 1), bench.Num(rss, 0))
		return wall, cpuPerRec
	}
	ew, ec := row("perso run", eng)
	rw, rc := row("reference", ref)
	r.Tables = append(r.Tables, t)
	r.Add("engine throughput", records/ew, "records/s", bench.Higher, "perso run, whole process (start-up included)")
	r.Add("engine cpu", ec, "cpu-µs/record", bench.Lower, "user + system of the perso run process")
	r.Add("reference throughput", records/rw, "records/s", bench.Higher, "the reference command")
	r.Add("reference cpu", rc, "cpu-µs/record", bench.Lower, "user + system of the reference and its children")
	r.Add("engine vs reference wall", bench.Ratio(rw, ew), "×", bench.Higher, "reference wall ÷ engine wall: above 1, the engine is faster")
	r.Add("engine vs reference cpu", bench.Ratio(rc, ec), "×", bench.Higher, "reference CPU ÷ engine CPU per record: above 1, the engine uses less")
	r.Notes = append(r.Notes, "reference: "+cfg.Reference, "records: "+strconv.FormatInt(eng[0].Records, 10)+" (as the engine's report counts them)")
}
