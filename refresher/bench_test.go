package refresher

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkRefresh measures the refresher in process against the loopback
// endpoint. An op is one refresh of every registry (its ns, B and allocs
// include the endpoint's side, which runs in the same process). live-KiB
// is the heap that the parsed config, the refresher and its metrics keep
// once every file is written: the sidecar's own memory, without the
// binary's fixed costs. "1-registry" is the baseline for
// "1000-registries-3-regions" (10 accounts, default credentials: 3
// callers); their difference over 999 is the memory per registry.
func BenchmarkRefresh(b *testing.B) {
	for _, n := range []int{1, 1000} {
		name := "1-registry"
		if n > 1 {
			name = fmt.Sprintf("%d-registries-3-regions", n)
		}
		b.Run(name, func(b *testing.B) {
			e := newEnv(b)
			data := []byte(registriesConfig(e.dir, n))
			log := slog.New(slog.NewJSONHandler(io.Discard, nil))
			ctx := context.Background()

			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			cfg, err := Parse(data)
			if err != nil {
				b.Fatal(err)
			}
			r := New(e.ecr, Options{Logger: log, Metrics: NewMetrics(prometheus.NewRegistry())})
			if err := r.RunOnce(ctx, cfg); err != nil {
				b.Fatal(err)
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			live := float64(after.HeapAlloc) - float64(before.HeapAlloc)

			b.ReportAllocs()
			for b.Loop() {
				if err := r.RunOnce(ctx, cfg); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(live/1024, "live-KiB")
			runtime.KeepAlive(r)
		})
	}
}

// registriesConfig is a config file of n registries in 10 accounts and 3
// regions, without roles, writing into dir.
func registriesConfig(dir string, n int) string {
	regions := []string{"us-west-2", "eu-west-1", "ap-southeast-2"}
	var b strings.Builder
	b.WriteString("registries:\n")
	for i := range n {
		fmt.Fprintf(&b, "- {registryId: \"%012d\", region: %s, passwordFile: %s}\n",
			200000000000+i%10, regions[i/10%len(regions)], filepath.Join(dir, fmt.Sprintf("r%04d.pass", i)))
	}
	return b.String()
}
