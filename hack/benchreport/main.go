// Command benchreport reads the output of go test -bench (several runs of
// each benchmark, as make bench takes them) and prints every figure the
// project has a target for: the median over the runs, the target, and
// whether it is met. Figures compared with a baseline are ratios of two
// medians of the same run, so a noisy machine moves both.
//
//	go test -run '^$' -bench . -count 6 ./... | go run ./hack/benchreport
package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

func main() {
	results, err := parse(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(2)
	}
	if missed := report(os.Stdout, results, targets); missed > 0 {
		fmt.Fprintf(os.Stdout, "\n%d target(s) missed\n", missed)
	}
}

// results are the values of each benchmark's units, one per run, by
// benchmark name (without the GOMAXPROCS suffix) and unit.
type results map[string]map[string][]float64

// benchLine is a benchmark's result line: name, iterations, then value and
// unit pairs.
var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

// parse reads go test -bench output; other lines are skipped.
func parse(r io.Reader) (results, error) {
	out := results{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		fields := strings.Fields(m[2])
		if len(fields)%2 != 0 {
			return nil, fmt.Errorf("%s: value without a unit in %q", m[1], sc.Text())
		}
		for i := 0; i < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", m[1], err)
			}
			if out[m[1]] == nil {
				out[m[1]] = map[string][]float64{}
			}
			out[m[1]][fields[i+1]] = append(out[m[1]][fields[i+1]], v)
		}
	}
	return out, sc.Err()
}

// median of the runs' values; ok false without any.
func (r results) median(bench, unit string) (float64, bool) {
	vs := slices.Clone(r[bench][unit])
	if len(vs) == 0 {
		return 0, false
	}
	slices.Sort(vs)
	if n := len(vs); n%2 == 0 {
		return (vs[n/2-1] + vs[n/2]) / 2, true
	}
	return vs[len(vs)/2], true
}

// figure is one measured figure: a benchmark's unit, or the ratio of two.
type figure struct {
	bench, unit string
	// per, if set, is the baseline benchmark: the figure is the ratio
	// bench/per of the unit's medians.
	per string
}

func (f figure) value(r results) (float64, bool) {
	v, ok := r.median(f.bench, f.unit)
	if !ok || f.per == "" {
		return v, ok
	}
	base, ok := r.median(f.per, f.unit)
	if !ok || base == 0 {
		return 0, false
	}
	return v / base, true
}

// target is a figure's goal: at most max, at least min, or both (exactly
// a value when they are equal); neither: the figure is only reported.
type target struct {
	name   string
	figure figure
	max    *float64
	min    *float64
	// scale and unit convert the value for printing (e.g. ns to µs).
	scale float64
	unit  string
}

func atMost(v float64) *float64  { return &v }
func atLeast(v float64) *float64 { return &v }

// report prints each target's figure and returns how many were missed. A
// figure whose benchmark did not run is reported as not measured.
func report(w io.Writer, r results, ts []target) (missed int) {
	fmt.Fprintf(w, "\n%-58s %14s  %-16s %s\n", "figure", "median", "target", "")
	for _, t := range ts {
		v, ok := t.figure.value(r)
		scale := t.scale
		if scale == 0 {
			scale = 1
		}
		goal := ""
		switch {
		case t.max != nil && t.min != nil && *t.max == *t.min:
			goal = "= " + format(*t.max/scale)
		case t.max != nil && t.min != nil:
			goal = format(*t.min/scale) + " to " + format(*t.max/scale)
		case t.max != nil:
			goal = "<= " + format(*t.max/scale)
		case t.min != nil:
			goal = ">= " + format(*t.min/scale)
		}
		if goal != "" {
			goal += " " + t.unit
		}
		if !ok {
			fmt.Fprintf(w, "%-58s %14s  %-16s %s\n", t.name, "-", goal, "not measured")
			continue
		}
		verdict := "reported"
		if t.max != nil || t.min != nil {
			verdict = "met"
			if (t.max != nil && v > *t.max) || (t.min != nil && v < *t.min) {
				verdict = "MISSED"
				missed++
			}
		}
		fmt.Fprintf(w, "%-58s %14s  %-16s %s\n", t.name, format(v/scale)+" "+t.unit, goal, verdict)
	}
	return missed
}

// format prints v with three significant digits, and a whole number from
// 1000 on.
func format(v float64) string {
	if math.Abs(v) >= 1000 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}
