package main

import (
	"strings"
	"testing"
)

const sample = `goos: linux
BenchmarkA/x-2   	  100	     40000 ns/op	  18000 B/op	  150 allocs/op
BenchmarkA/x-2   	  100	     60000 ns/op	  18000 B/op	  150 allocs/op
BenchmarkA/x-2   	  100	     50000 ns/op	  18000 B/op	  150 allocs/op
BenchmarkA/y-2   	  100	     10000 ns/op
BenchmarkA/y-2   	  100	     20000 ns/op
BenchmarkB       	    5	     1.000 calls/refresh	  23000 rss-KiB
PASS
ok  	example.com/x	1.0s
`

// TestParse checks that result lines are read run by run, without the
// GOMAXPROCS suffix, and other lines skipped.
func TestParse(t *testing.T) {
	r, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		bench, unit string
		want        float64
		ok          bool
	}{
		{"BenchmarkA/x", "ns/op", 50000, true},
		{"BenchmarkA/x", "allocs/op", 150, true},
		{"BenchmarkA/y", "ns/op", 15000, true}, // even count: mean of the middle two
		{"BenchmarkB", "rss-KiB", 23000, true},
		{"BenchmarkB", "calls/refresh", 1, true},
		{"BenchmarkC", "ns/op", 0, false},
	}
	for _, tt := range tests {
		if got, ok := r.median(tt.bench, tt.unit); got != tt.want || ok != tt.ok {
			t.Errorf("median(%s, %s) = %v, %v; want %v, %v", tt.bench, tt.unit, got, ok, tt.want, tt.ok)
		}
	}
	if _, err := parse(strings.NewReader("BenchmarkX-2 10 5 ns/op 7\n")); err == nil {
		t.Error("a value without a unit parsed")
	}
}

// TestReport checks the verdicts: met, missed, reported without a goal,
// ratios against a baseline, and figures that were not measured.
func TestReport(t *testing.T) {
	r, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	ts := []target{
		{name: "fast", figure: figure{bench: "BenchmarkA/x", unit: "ns/op"}, max: atMost(50_000), scale: 1000, unit: "µs"},
		{name: "too slow", figure: figure{bench: "BenchmarkA/x", unit: "ns/op"}, max: atMost(45_000), scale: 1000, unit: "µs"},
		{name: "cheaper", figure: figure{bench: "BenchmarkA/y", unit: "ns/op", per: "BenchmarkA/x"}, max: atMost(0.5), unit: "x"},
		{name: "calls", figure: figure{bench: "BenchmarkB", unit: "calls/refresh"}, min: atLeast(3), unit: "calls"},
		{name: "exact", figure: figure{bench: "BenchmarkB", unit: "calls/refresh"}, min: atLeast(1), max: atMost(1), unit: "calls"},
		{name: "size", figure: figure{bench: "BenchmarkB", unit: "rss-KiB"}, unit: "KiB"},
		{name: "absent", figure: figure{bench: "BenchmarkC", unit: "ns/op"}, max: atMost(1), unit: "ns"},
	}
	var out strings.Builder
	if missed := report(&out, r, ts); missed != 2 {
		t.Errorf("missed %d, want 2 (too slow, calls)", missed)
	}
	lines := map[string]string{}
	for _, line := range strings.Split(out.String(), "\n") {
		if name, _, ok := strings.Cut(line, " "); ok {
			lines[name] = strings.Join(strings.Fields(line), " ")
		}
	}
	for name, want := range map[string]string{
		"fast":    "fast 50 µs <= 50 µs met",
		"too":     "too slow 50 µs <= 45 µs MISSED",
		"cheaper": "cheaper 0.3 x <= 0.5 x met",
		"calls":   "calls 1 calls >= 3 calls MISSED",
		"size":    "size 23000 KiB reported",
		"exact":   "exact 1 calls = 1 calls met",
		"absent":  "absent - <= 1 ns not measured",
	} {
		if lines[name] != want {
			t.Errorf("line %q, want %q\n%s", lines[name], want, out.String())
		}
	}
}
