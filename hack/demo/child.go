package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// child is a process the demo started: the webhook or the sidecar. Its
// output goes, line by line, to a log file and to an optional parser.
type child struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed once the process has exited
	err     error         // its exit status, set before done is closed
}

// startChild starts cmd in its own process group, so that a Ctrl-C in the
// terminal reaches the demo only, which then stops its children in order.
// Each output line is appended to logPath and passed to line, if not nil.
func startChild(name string, cmd *exec.Cmd, logPath string, line func(string)) (*child, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		logFile.Close()
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		r.Close()
		w.Close()
		return nil, fmt.Errorf("starting the %s: %w", name, err)
	}
	w.Close()
	c := &child{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			fmt.Fprintln(logFile, sc.Text())
			if line != nil {
				line(sc.Text())
			}
		}
		_, _ = io.Copy(logFile, r) // a line too long for the scanner
		r.Close()
		logFile.Close()
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// exited returns an error if the process has ended already.
func (c *child) exited() error {
	select {
	case <-c.done:
		return fmt.Errorf("the %s exited (%v); its log:\n%s", c.name, c.err, c.logTail(20))
	default:
		return nil
	}
}

// stop sends SIGTERM, waits up to grace and then kills the process. It
// returns an error unless the process ended with status 0 on SIGTERM.
func (c *child) stop(grace time.Duration) error {
	select {
	case <-c.done:
		return fmt.Errorf("the %s had exited before it was stopped (%v)", c.name, c.err)
	default:
	}
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-c.done:
	case <-time.After(grace):
		_ = c.cmd.Process.Kill()
		<-c.done
		return fmt.Errorf("the %s did not stop within %s of SIGTERM and was killed", c.name, grace)
	}
	if c.err != nil {
		return fmt.Errorf("the %s ended with %v on SIGTERM; its log:\n%s", c.name, c.err, c.logTail(20))
	}
	return nil
}

// logTail returns the last n lines of the log, indented.
func (c *child) logTail(n int) string {
	data, err := os.ReadFile(c.logPath)
	if err != nil {
		return "    (no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    | " + strings.Join(lines, "\n    | ")
}
