package refresher

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ecr-token-refresh/ecr-token-refresh/internal/testutil"
)

// configMapDir lays out a directory the way the kubelet mounts a
// ConfigMap: config.yaml -> ..data/config.yaml, ..data -> a timestamped
// directory. update swaps ..data atomically, as the kubelet does.
type configMapDir struct {
	t   *testing.T
	dir string
	n   int
}

func (c *configMapDir) update(content string) {
	c.t.Helper()
	c.n++
	ts := filepath.Join(c.dir, "..2026_"+string(rune('a'+c.n)))
	if err := os.Mkdir(ts, 0o755); err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ts, "config.yaml"), []byte(content), 0o644); err != nil {
		c.t.Fatal(err)
	}
	tmp := filepath.Join(c.dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		c.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(c.dir, "..data")); err != nil {
		c.t.Fatal(err)
	}
}

func TestWatchConfigMapUpdates(t *testing.T) {
	cm := &configMapDir{t: t, dir: t.TempDir()}
	cm.update("registries:\n- {registryId: \"123456789012\", region: us-west-2, passwordFile: /p/a}\n")
	path := filepath.Join(cm.dir, "config.yaml")
	if err := os.Symlink("..data/config.yaml", path); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := &testutil.Buffer{}
	updates, err := Watch(ctx, path, slog.New(slog.NewJSONHandler(log, nil)), m)
	if err != nil {
		t.Fatal(err)
	}
	receive := func() *Config {
		t.Helper()
		select {
		case cfg := <-updates:
			return cfg
		case <-time.After(10 * time.Second):
			t.Fatal("no config update within 10s")
			return nil
		}
	}

	cm.update("registries:\n- {registryId: \"123456789012\", region: eu-west-1, passwordFile: /p/b}\n")
	if cfg := receive(); cfg.Registries[0].Region != "eu-west-1" {
		t.Fatalf("reloaded config has %+v", cfg.Registries)
	}

	cm.update("registries:\n- {registryId: \"123456789012\", regoin: eu-west-1, passwordFile: /p/b}\n")
	testutil.WaitFor(t, 10*time.Second, "the invalid config to be reported", func() bool {
		return promtest.ToFloat64(m.reloads.WithLabelValues("failure")) == 1
	})
	select {
	case cfg := <-updates:
		t.Fatalf("an invalid config was sent: %+v", cfg)
	default:
	}

	cm.update("interval: 1h\nregistries:\n- {registryId: \"123456789012\", region: eu-west-1, passwordFile: /p/b}\n")
	if cfg := receive(); cfg.Interval != time.Hour {
		t.Fatalf("reloaded config has interval %s", cfg.Interval)
	}
	if got := promtest.ToFloat64(m.reloads.WithLabelValues("success")); got != 2 {
		t.Errorf("successful reloads = %v, want 2", got)
	}
}
