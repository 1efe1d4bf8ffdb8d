package refresher

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/fsnotify/fsnotify"
)

// Watch sends a new Config on the returned channel whenever the file at
// path changes to a different valid config. It watches the directory, so
// that a ConfigMap update, which swaps a symlink rather than writing the
// file, is seen too. An invalid new config is logged and skipped: the
// running one stays. Changes are judged against the content at the time
// Watch is called. Watch stops when ctx ends.
func Watch(ctx context.Context, path string, log *slog.Logger, m *Metrics) (<-chan *Config, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	if err := w.Add(filepath.Dir(path)); err != nil {
		_ = w.Close()
		return nil, err
	}
	current, err := os.ReadFile(path)
	if err != nil {
		_ = w.Close()
		return nil, err
	}
	out := make(chan *Config)
	go func() {
		defer w.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case err := <-w.Errors:
				log.Error("watching the config file", "path", path, "error", err.Error())
			case <-w.Events:
				data, err := os.ReadFile(path)
				if err != nil || bytes.Equal(data, current) {
					continue // mid-swap, deleted, or unchanged
				}
				current = data
				cfg, err := Parse(data)
				if err != nil {
					m.observeReload(false)
					log.Error("config file changed but is invalid; keeping the running config", "path", path, "error", err.Error())
					continue
				}
				m.observeReload(true)
				log.Info("config file changed; reloading", "path", path, "registries", len(cfg.Registries))
				select {
				case out <- cfg:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}
