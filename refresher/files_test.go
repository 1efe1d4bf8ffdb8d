package refresher

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "nested", "deeper", "my-registry.pass")
	for _, content := range []string{"first-password", "second, longer password", "x"} {
		if err := writeFileAtomic(path, []byte(content), 0o444); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != content {
			t.Fatalf("file holds %q, want exactly %q", got, content)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o444 {
			t.Errorf("mode %o, want 0444", fi.Mode().Perm())
		}
	}
	assertOnlyFiles(t, filepath.Dir(path), "my-registry.pass")
}

func TestWriteFileAtomicFailureKeepsOldFile(t *testing.T) {
	dir := t.TempDir()
	// A name so long that the temporary file's name cannot be created:
	// the write fails after the target exists.
	long := filepath.Join(dir, strings.Repeat("p", 250))
	if err := os.WriteFile(long, []byte("good"), 0o444); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
		data []byte
	}{
		{"temporary file cannot be created", long, []byte("new")},
		{"empty data", long, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := writeFileAtomic(tt.path, tt.data, 0o444); err == nil {
				t.Fatal("writeFileAtomic succeeded, want an error")
			}
			if got, err := os.ReadFile(long); err != nil || string(got) != "good" {
				t.Fatalf("old file now holds %q (%v), want it untouched", got, err)
			}
			assertOnlyFiles(t, dir, filepath.Base(long))
		})
	}
	t.Run("parent is a file", func(t *testing.T) {
		err := writeFileAtomic(filepath.Join(long, "x.pass"), []byte("new"), 0o444)
		if err == nil {
			t.Fatal("writeFileAtomic succeeded under a file, want an error")
		}
	})
}

// TestAtomicRewriteSeenByAnotherProcess rewrites a file many times while
// another process reads it as fast as it can: the reader must only ever
// see one of the complete contents, never a missing, empty or partial
// file.
func TestAtomicRewriteSeenByAnotherProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "my-registry.pass")
	contents := []string{strings.Repeat("a", 3000), strings.Repeat("b", 17), strings.Repeat("c", 70000)}
	if err := writeFileAtomic(path, []byte(contents[0]), 0o444); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reader := exec.CommandContext(ctx, os.Args[0])
	reader.Env = append(os.Environ(), "HELPER_READER_FILE="+path)
	stdout, err := reader.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	reader.Stderr = os.Stderr
	if err := reader.Start(); err != nil {
		t.Fatal(err)
	}
	// The reader prints "ready" once it has read the file the first time.
	buf := make([]byte, 6)
	if _, err := stdout.Read(buf); err != nil || string(buf) != "ready\n" {
		t.Fatalf("reader did not start: %q %v", buf, err)
	}
	const writes = 2000
	for i := range writes {
		if err := writeFileAtomic(path, []byte(contents[i%len(contents)]), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(path+".stop", []byte("stop"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	_, _ = out.ReadFrom(stdout)
	if err := reader.Wait(); err != nil {
		t.Fatalf("reader failed: %v\n%s", err, out.String())
	}
	var reads, bad int
	if _, err := fmt.Sscanf(out.String(), "reads=%d bad=%d", &reads, &bad); err != nil {
		t.Fatalf("reader output %q: %v", out.String(), err)
	}
	if bad != 0 {
		t.Errorf("reader saw %d bad reads out of %d", bad, reads)
	}
	if reads < 100 {
		t.Errorf("reader made only %d reads during %d writes; the test proves little", reads, writes)
	}
	assertOnlyFiles(t, filepath.Dir(path), "my-registry.pass", "my-registry.pass.stop")
}

// TestMain runs the test binary as the reading process of
// TestAtomicRewriteSeenByAnotherProcess when HELPER_READER_FILE is set.
func TestMain(m *testing.M) {
	if path := os.Getenv("HELPER_READER_FILE"); path != "" {
		readUntilStopped(path)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// readUntilStopped reads path in a loop until path.stop exists and prints
// how many reads it made and how many saw a missing or partial file.
func readUntilStopped(path string) {
	valid := func(b []byte) bool {
		return len(b) > 0 && bytes.Count(b, b[:1]) == len(b) && (len(b) == 3000 || len(b) == 17 || len(b) == 70000)
	}
	reads, bad := 0, 0
	for i := 0; ; i++ {
		b, err := os.ReadFile(path)
		reads++
		if err != nil || !valid(b) {
			bad++
		}
		if i == 0 {
			fmt.Println("ready")
		}
		if _, err := os.Stat(path + ".stop"); err == nil {
			break
		}
	}
	fmt.Printf("reads=%d bad=%d\n", reads, bad)
}

// assertOnlyFiles fails unless dir holds exactly names (no temporary
// files left behind).
func assertOnlyFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Errorf("%s holds %v, want exactly %v", dir, got, names)
	}
}
