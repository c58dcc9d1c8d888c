//go:build integration || vmlab

package integration

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cellproject/cell/internal/testutil"
)

// TestRunWatchAndRestartFailure: `cellroot run --watch` rebuilds a cell
// whose source changed and upgrades it in place (a broken edit leaves the
// old instance serving); `cellroot run` of an app whose cell crashes past
// its restart limit exits non-zero naming the cell and its exit status.
// Both subtests share one build cache.
func TestRunWatchAndRestartFailure(t *testing.T) {
	cache := t.TempDir()

	t.Run("WatchUpgradesInPlace", func(t *testing.T) {
		e := newAppEnv(t, cache)
		app := t.TempDir()
		writeAppCell(t, app, "web", "autostart = true\n", nil)
		e.mustAllow(app)

		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(e.bin, "cellroot"), "run", "--watch", "--allowlist", e.allowlist, "--log-format", "json", app)
		cmd.Env = e.env
		stdout, stderr := &testutil.SyncBuffer{}, &testutil.SyncBuffer{}
		cmd.Stdout, cmd.Stderr = stdout, stderr
		cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			cmd.Process.Signal(os.Interrupt)
			cmd.Wait()
			t.Logf("stdout:\n%s\nstderr:\n%s", stdout.String(), lastLines(stderr.String(), 40))
		}()
		waitUntil := func(what, text string) {
			t.Helper()
			deadline := time.Now().Add(3 * time.Minute)
			for !strings.Contains(stdout.String(), text) {
				if time.Now().After(deadline) {
					t.Fatalf("timed out waiting for %s (%q)", what, text)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		waitUntil("the watch to start", "watch: watching")

		main := filepath.Join(app, "cells", "web", "main.go")
		src, err := os.ReadFile(main)
		if err != nil {
			t.Fatal(err)
		}
		// A broken edit: the build fails, the old instance keeps serving.
		if err := os.WriteFile(main, append(bytes.Clone(src), []byte("\nthis is not Go\n")...), 0o644); err != nil {
			t.Fatal(err)
		}
		waitUntil("the failed build", "watch: build failed, running cells keep serving")
		// A good edit: rebuilt and upgraded.
		if err := os.WriteFile(main, append(src, []byte("\n// changed by the test\n")...), 0o644); err != nil {
			t.Fatal(err)
		}
		waitUntil("the upgrade", "watch: web source changed: rebuilt and upgraded in place")
		var news, drained int
		for _, rec := range auditRecords(stderr.String()) {
			reason, _ := rec["reason"].(string)
			switch {
			case rec["event"] == "spawn" && rec["key"] == "web" && reason == "upgrade: new instance":
				news++
			case rec["event"] == "stop" && rec["key"] == "web" && strings.HasPrefix(reason, "upgrade: draining"):
				drained++
			}
		}
		if news != 1 || drained != 1 {
			t.Errorf("audit: %d upgrades of web and %d drained instances, want 1 and 1", news, drained)
		}
	})

	t.Run("CrashPastRestartLimitFailsTheRun", func(t *testing.T) {
		e := newAppEnv(t, cache)
		app := t.TempDir()
		writeAppCell(t, app, "flaky", "autostart = true\nrestart = \"on-failure\"\nrestart_limit = 1\nrestart_window = 60\n", nil)
		// flaky serves for a moment, then crashes with status 4.
		main := filepath.Join(app, "cells", "flaky", "main.go")
		src, err := os.ReadFile(main)
		if err != nil {
			t.Fatal(err)
		}
		crashing := strings.Replace(string(src), "\t<-sig\n", "\tselect {\n\tcase <-sig:\n\tcase <-time.After(300 * time.Millisecond):\n\t\tos.Exit(4)\n\t}\n", 1)
		if crashing == string(src) {
			t.Fatal("the test cell's source changed: cannot make it crash")
		}
		if err := os.WriteFile(main, []byte(crashing), 0o644); err != nil {
			t.Fatal(err)
		}
		e.mustAllow(app)
		allowed, err := os.ReadFile(e.allowlist)
		if err != nil {
			t.Fatal(err)
		}
		mustContain(t, "the grant", string(allowed), "restart = \"on-failure\"", "restart_limit = 1", "restart_window = 60")

		out, stderr, err := e.run(app, "--for", "2m")
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Fatalf("cellroot run of a cell crashing past its limit: %v, want exit status 1", err)
		}
		mustContain(t, "run's error", stderr, "the app failed", `cell "flaky" failed`, "last exit: exited 4")
		mustContain(t, "run's output", out, "session", "ended")
	})
}
