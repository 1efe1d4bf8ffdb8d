package refresher

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// writeFileAtomic replaces path with data atomically (see replaceFile) and
// makes the rename durable.
func writeFileAtomic(path string, data []byte, mode fs.FileMode) error {
	if err := replaceFile(path, data, mode); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// replaceFile replaces path with data so that a reader sees either the old
// content or the new, never a missing, empty or partial file: the data goes
// to a temporary file in the same directory, is synced, and is renamed over
// path. Missing parent directories are created. On any failure the
// temporary file is removed and path is untouched. The rename is durable
// once the directory is synced (syncDir), which a caller replacing many
// files in one directory does once for all.
func replaceFile(path string, data []byte, mode fs.FileMode) (err error) {
	if len(data) == 0 {
		return fmt.Errorf("refusing to write an empty %s", path)
	}
	dir := filepath.Dir(path)
	pattern := "." + filepath.Base(path) + ".tmp-*"
	tmp, err := os.CreateTemp(dir, pattern)
	if errors.Is(err, fs.ErrNotExist) {
		// Only the first write into a directory needs to create it.
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		tmp, err = os.CreateTemp(dir, pattern)
	}
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// syncDir makes a rename in dir durable. File systems that cannot sync a
// directory (EINVAL) are fine: the rename itself is atomic.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}
