package bench

import (
	"bytes"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Chart sizes: wide enough for a legend beside the data, small enough for a
// README column.
const (
	chartWidth   = 9 * vg.Inch
	chartHeight  = 4.5 * vg.Inch
	legendWidth  = 2.6 * vg.Inch
	chartDPI     = 110
	maxHistLines = 8 // lines per history chart; more are split over several charts
)

// WritePlots draws r's series (one PNG per Plot key) and, from hist, the
// history of each of r.Mode's figures across runs (one PNG per unit, at most
// maxHistLines figures each), into dir. It returns the files written.
// hist should already contain r if r is to appear in its own history.
func WritePlots(dir string, r *Result, hist History) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("bench: plots directory %s: %w", dir, err)
	}
	var files []string
	var keys []string
	byKey := map[string][]Series{}
	for _, s := range r.Series {
		if _, ok := byKey[s.Plot]; !ok {
			keys = append(keys, s.Plot)
		}
		byKey[s.Plot] = append(byKey[s.Plot], s)
	}
	for _, k := range keys {
		png, err := seriesChart(byKey[k])
		if err != nil {
			return files, fmt.Errorf("bench: plot %s: %w", k, err)
		}
		f := filepath.Join(dir, slug(k)+".png")
		if err := writeFileAtomic(f, png); err != nil {
			return files, err
		}
		files = append(files, f)
	}
	for _, hc := range historyCharts(r.Mode, hist) {
		png, err := seriesChart(hc.series)
		if err != nil {
			return files, fmt.Errorf("bench: history plot %s: %w", hc.file, err)
		}
		f := filepath.Join(dir, hc.file+".png")
		if err := writeFileAtomic(f, png); err != nil {
			return files, err
		}
		files = append(files, f)
	}
	return files, nil
}

type historyChart struct {
	file   string
	series []Series
}

// historyCharts turns the history of mode into charts: x is the run's
// place in the history of this mode (1 = oldest), y the figure.
func historyCharts(mode string, hist History) []historyChart {
	var runs []*Result
	for _, r := range hist.Results {
		if r.Mode == mode {
			runs = append(runs, r)
		}
	}
	if len(runs) == 0 {
		return nil
	}
	type key struct{ unit, name string }
	points := map[key][]Point{}
	var units []string
	namesByUnit := map[string][]string{}
	for i, r := range runs {
		for _, f := range r.Figures {
			k := key{f.Unit, f.Name}
			if _, ok := points[k]; !ok {
				if _, ok := namesByUnit[f.Unit]; !ok {
					units = append(units, f.Unit)
				}
				namesByUnit[f.Unit] = append(namesByUnit[f.Unit], f.Name)
			}
			points[k] = append(points[k], Point{X: float64(i + 1), Y: f.Value})
		}
	}
	first, last := runs[0].Time.UTC().Format("2006-01-02 15:04"), runs[len(runs)-1].Time.UTC().Format("2006-01-02 15:04")
	var out []historyChart
	for _, u := range units {
		names := namesByUnit[u]
		for part := 0; part*maxHistLines < len(names); part++ {
			chunk := names[part*maxHistLines : min(len(names), (part+1)*maxHistLines)]
			file := "history-" + slug(mode) + "-" + slug(u)
			title := fmt.Sprintf("perso bench %s: %s across %d runs (%s … %s UTC)", mode, u, len(runs), first, last)
			if len(names) > maxHistLines {
				file += "-" + strconv.Itoa(part+1)
				title += fmt.Sprintf(", part %d", part+1)
			}
			hc := historyChart{file: file}
			for _, n := range chunk {
				hc.series = append(hc.series, Series{Title: title, Name: n, XLabel: "run (1 = oldest in the history)",
					YLabel: u, Points: points[key{u, n}]})
			}
			out = append(out, hc)
		}
	}
	return out
}

// seriesChart draws series on one chart with the legend beside the data
// (inside it, the legend would hide the lines it names).
func seriesChart(series []Series) ([]byte, error) {
	if len(series) == 0 {
		return nil, fmt.Errorf("no series")
	}
	p := plot.New()
	s0 := series[0]
	p.Title.Text = s0.Title
	p.Title.TextStyle.Font.Size = vg.Points(12)
	p.X.Label.Text = axisLabel(s0.XLabel, s0.XUnit)
	p.Y.Label.Text = axisLabel(s0.YLabel, s0.YUnit)
	p.Add(plotter.NewGrid())
	legend := plot.NewLegend()
	legend.Top, legend.Left = true, true
	legend.Padding = vg.Points(3)
	legend.TextStyle.Font.Size = vg.Points(10)
	var xs []float64
	minY, maxY := math.Inf(1), math.Inf(-1)
	colourOf := map[string]int{}
	for i, s := range series {
		xy := make(plotter.XYs, 0, len(s.Points))
		for _, pt := range s.Points {
			if math.IsNaN(pt.Y) || math.IsInf(pt.Y, 0) {
				continue
			}
			xy = append(xy, plotter.XY{X: pt.X, Y: pt.Y})
			xs = append(xs, pt.X)
			minY, maxY = min(minY, pt.Y), max(maxY, pt.Y)
		}
		if len(xy) == 0 {
			continue
		}
		line, pts, err := plotter.NewLinePoints(xy)
		if err != nil {
			return nil, err
		}
		ci, ok := colourOf[s.Group]
		if !ok || s.Group == "" {
			ci = len(colourOf)
			colourOf[s.Group+"\x00"+strconv.Itoa(i)] = ci
			if s.Group != "" {
				colourOf[s.Group] = ci
			}
		}
		c := plotutil.DarkColors[ci%len(plotutil.DarkColors)]
		line.Color = c
		line.Width = vg.Points(1.5)
		if s.Dashed {
			line.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
		}
		pts.Color = c
		pts.Shape = plotutil.Shape(i)
		pts.Radius = vg.Points(3)
		p.Add(line, pts)
		legend.Add(s.Name, line, pts)
	}
	if len(xs) == 0 {
		return nil, fmt.Errorf("no finite point to draw")
	}
	// Throughput and CPU time start at zero: a chart that starts at the
	// lowest value makes 3 % look like a cliff.
	if minY >= 0 {
		p.Y.Min = 0
	}
	if maxY > 0 {
		p.Y.Max = maxY * 1.08
	}
	p.Y.Tick.Marker = readableTicks{}
	p.X.Tick.Marker = xTicks(xs)
	if xs := uniq(xs); len(xs) > 2 && xs[0] > 0 && xs[len(xs)-1]/xs[0] >= 8 && isPowersOfTwo(xs) {
		p.X.Scale = plot.LogScale{}
	}
	if p.X.Min == p.X.Max {
		p.X.Min, p.X.Max = p.X.Min-1, p.X.Max+1
	}

	img := vgimg.NewWith(vgimg.UseWH(chartWidth, chartHeight), vgimg.UseDPI(chartDPI),
		vgimg.UseBackgroundColor(color.White))
	dc := draw.New(img)
	p.Draw(draw.Crop(dc, 0, -legendWidth, 0, 0))
	legend.Draw(draw.Crop(dc, chartWidth-legendWidth+vg.Points(8), 0, 0, -vg.Points(28)))
	var buf bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func axisLabel(label, unit string) string {
	if unit == "" {
		return label
	}
	return label + " (" + unit + ")"
}

// xTicks marks every x of the data when there are few (session counts,
// run numbers), else lets gonum choose.
func xTicks(xs []float64) plot.Ticker {
	u := uniq(xs)
	if len(u) > 16 {
		return plot.DefaultTicks{}
	}
	ticks := make(plot.ConstantTicks, len(u))
	for i, x := range u {
		ticks[i] = plot.Tick{Value: x, Label: strconv.FormatFloat(x, 'f', -1, 64)}
	}
	return ticks
}

// readableTicks label about five "nice" steps (1, 2 or 5 × 10^n) with
// thousands grouped (12 000 rather than 12000 or 1.2e+04); gonum's default
// often labels only two ticks of a chart that starts at zero.
type readableTicks struct{}

func (readableTicks) Ticks(lo, hi float64) []plot.Tick {
	if !(hi > lo) {
		return plot.DefaultTicks{}.Ticks(lo, hi)
	}
	raw := (hi - lo) / 6
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var ts []plot.Tick
	for v := math.Ceil(lo/step) * step; v <= hi+step*1e-9; v += step {
		label := formatFigure(v)
		if strings.Contains(label, ".") {
			label = strings.TrimRight(strings.TrimRight(label, "0"), ".")
		}
		ts = append(ts, plot.Tick{Value: v, Label: label})
		if minor := v + step/2; minor < hi {
			ts = append(ts, plot.Tick{Value: minor})
		}
	}
	return ts
}

func uniq(xs []float64) []float64 {
	u := slices.Clone(xs)
	sort.Float64s(u)
	return slices.Compact(u)
}

func isPowersOfTwo(xs []float64) bool {
	for _, x := range xs {
		if x <= 0 || x != math.Trunc(x) || int64(x)&(int64(x)-1) != 0 {
			return false
		}
	}
	return true
}

// slug makes a file-name-safe stem: "cpu-µs/op" → "cpu-us-per-op".
func slug(s string) string {
	s = strings.NewReplacer("µ", "u", "/", "-per-", "%", "pct", "×", "times", " ", "-").Replace(strings.ToLower(s))
	var b strings.Builder
	for _, r := range s {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			b.WriteRune(r)
		}
	}
	out := strings.Trim(b.String(), "-.")
	if out == "" {
		return "unnamed"
	}
	return out
}

// writeFileAtomic writes a plot beside its target and renames it into
// place, so a reader (a docs page being viewed) never sees half a PNG.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("bench: plot %s: %w", path, err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("bench: plot %s: %w", path, err)
	}
	return nil
}
