//go:build integration || vmlab

package integration

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cellproject/cell/cell"

	"github.com/cellproject/cell/internal/testutil"
)

// appCellSource is a cell with no dependencies outside the standard library
// (and, for db, one vendored module): it checks that each of its
// dependencies is ready (its socket exists) when it starts, and fails
// otherwise, so a start out of dependency order fails the app.
const appCellSource = `package main

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
	%s
)

const deps = %q

func main() {
	dir, name := os.Getenv("CELL_RUNTIME_DIR"), os.Getenv("CELL_NAME")
	for _, d := range strings.Fields(deps) {
		if _, err := os.Stat(filepath.Join(dir, d+".sock")); err != nil {
			fmt.Fprintf(os.Stderr, "%%s started before its dependency %%s was ready\n", name, d)
			os.Exit(3)
		}
	}
	time.Sleep(%s)
	%s
	ln, err := takeListener(os.Getenv("CELL_UMBILICAL"), os.Getenv("CELL_TOKEN"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	ln.Close()
}

// takeListener takes the socket the root bound for this cell, without the
// SDK, as docs/listener.md tells a cell in any language to: say hello with
// the token, send the listener request, read the reply's descriptor.
func takeListener(umbilical, token string) (net.Listener, error) {
	c, err := net.Dial("unix", umbilical)
	if err != nil {
		return nil, err
	}
	uc := c.(*net.UnixConn)
	send := func(msg string) error {
		frame := binary.BigEndian.AppendUint32(nil, uint32(len(msg)))
		_, err := uc.Write(append(frame, msg...))
		return err
	}
	recv := func() ([]byte, []byte, error) {
		hdr, oob := make([]byte, 4), make([]byte, 64)
		n, oobn, _, _, err := uc.ReadMsgUnix(hdr, oob)
		if err != nil {
			return nil, nil, err
		}
		if _, err := io.ReadFull(uc, hdr[n:]); err != nil {
			return nil, nil, err
		}
		payload := make([]byte, binary.BigEndian.Uint32(hdr))
		_, err = io.ReadFull(uc, payload)
		return payload, oob[:oobn], err
	}
	if err := send("{\"id\":1,\"op\":\"hello\",\"v\":1,\"role\":\"cell\",\"token\":\"" + token + "\"}"); err != nil {
		return nil, err
	}
	if _, _, err := recv(); err != nil {
		return nil, err
	}
	if err := send("{\"id\":2,\"op\":\"listener\"}"); err != nil {
		return nil, err
	}
	reply, oob, err := recv()
	if err != nil {
		return nil, err
	}
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("listener reply without a descriptor: %%s", reply)
	}
	fds, err := syscall.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil, fmt.Errorf("listener reply without a descriptor: %%s", reply)
	}
	f := os.NewFile(uintptr(fds[0]), "listener")
	defer f.Close()
	// c stays open: the root sees this cell in its session until it exits.
	return net.FileListener(f)
}
`

// writeAppCell writes cells/NAME of an app: Cell.toml, go.mod and main.go.
func writeAppCell(t *testing.T, appDir, name, manifest string, deps []string) {
	t.Helper()
	dir := filepath.Join(appDir, "cells", name)
	imports, use, delay := "", "", "0"
	if name == "db" {
		// db is slow to get ready, so a dependent started too early sees it
		// missing; and it uses a vendored module.
		imports, use, delay = `"example.com/greet"`, `fmt.Fprintln(os.Stderr, greet.Hello(name))`, "700 * time.Millisecond"
	}
	files := map[string]string{
		"Cell.toml": fmt.Sprintf("version = 1\nname = %q\n%s", name, manifest),
		"go.mod":    "module example.com/" + name + "\n\ngo 1.22\n",
		"main.go":   fmt.Sprintf(appCellSource, imports, strings.Join(deps, " "), delay, use),
	}
	if name == "db" {
		files["go.mod"] += "\nrequire example.com/greet v1.0.0\n\nreplace example.com/greet => ./greet\n"
		files["greet/go.mod"] = "module example.com/greet\n\ngo 1.22\n"
		files["greet/greet.go"] = "package greet\n\n// Hello greets.\nfunc Hello(n string) string { return \"hello from \" + n }\n"
	}
	for f, text := range files {
		p := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if name == "db" {
		// Vendor the module (a local replacement: no network needed), so
		// the build proves -mod=vendor for real.
		cmd := exec.Command(goCommand(t), "mod", "vendor")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=", "GOPROXY=off", "GOTOOLCHAIN=local")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go mod vendor: %v\n%s", err, out)
		}
	}
}

// goCommand finds the Go toolchain for the builds: $CELL_TEST_GO, go on
// PATH, or Go's default install dir.
func goCommand(t *testing.T) string {
	t.Helper()
	for _, c := range []string{os.Getenv("CELL_TEST_GO"), "go", "/usr/local/go/bin/go"} {
		if c == "" {
			continue
		}
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	t.Fatal("no Go toolchain for building app cells: test/run-tests.sh must pass CELL_TEST_GO (the go command) or a PATH holding go")
	return ""
}

// appEnv is what every cellroot command of one app test runs with.
type appEnv struct {
	t         *testing.T
	bin       string
	allowlist string
	env       []string
}

func newAppEnv(t *testing.T, cache string) *appEnv {
	bin := binDir(t)
	isolatedRuntime(t)
	cfg := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", cfg)
	t.Setenv("XDG_CACHE_HOME", cache)
	t.Setenv("CELL_GO", goCommand(t))
	return &appEnv{t: t, bin: bin, allowlist: filepath.Join(cfg, "cell", "allowlist.toml"), env: os.Environ()}
}

// cellroot runs a cellroot command and returns its stdout, stderr and error.
func (e *appEnv) cellroot(args ...string) (string, string, error) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(e.bin, "cellroot"), args...)
	cmd.Env = e.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	e.t.Logf("cellroot %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), lastLines(stderr.String(), 30))
	return stdout.String(), stderr.String(), err
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (e *appEnv) mustAllow(app string, flags ...string) {
	e.t.Helper()
	args := append(append([]string{"allow", "--yes", "--backend", "bwrap", "--allowlist", e.allowlist}, flags...), app)
	if _, _, err := e.cellroot(args...); err != nil {
		e.t.Fatalf("cellroot allow: %v", err)
	}
}

func (e *appEnv) run(app string, extra ...string) (string, string, error) {
	args := append([]string{"run", "--allowlist", e.allowlist, "--log-format", "json", "--for", "300ms"}, extra...)
	return e.cellroot(append(args, app)...)
}

func mustContain(t *testing.T, what, text string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(text, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, text)
		}
	}
}

// binaries maps each built binary in the cache to its inode and mtime.
func binaries(t *testing.T, cache string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(filepath.Join(cache, "cell", "builds"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && d.Name() != "build.json" {
			fi, _ := d.Info()
			out[p] = fmt.Sprintf("%v %v", fi.Sys(), fi.ModTime().UnixNano())
		}
		return nil
	})
	return out
}

// TestApps runs real app folders through cellroot allow, build and run.
// The subtests share one build cache, so the Go standard library is
// compiled once; each app's own cells are new to it.
func TestApps(t *testing.T) {
	cache := t.TempDir()

	t.Run("ColdBuildThenCachedStartInDependencyOrder", func(t *testing.T) {
		e := newAppEnv(t, cache)
		app := t.TempDir()
		writeAppCell(t, app, "db", "description = \"slow to get ready\"\n", nil)
		writeAppCell(t, app, "web", "autostart = true\ndepends_on = [\"db\"]\n", []string{"db"})
		writeAppCell(t, app, "idle", "", nil)
		e.mustAllow(app)

		out, _, err := e.run(app)
		if err != nil {
			t.Fatalf("first run: %v", err)
		}
		mustContain(t, "the first run", out, "build [1/3] db: compiling", "build [2/3] idle: compiling", "build [3/3] web: compiling",
			"start [1/2] db\n", "start [1/2] db: ready\nstart [2/2] web (after db)\n", "start [2/2] web: ready", "cells started: [db web]")
		before := binaries(t, cache)

		// The second start may not compile: its go command reports the same
		// Go version, but a GOROOT without a compiler, so any compile fails.
		fakeGo := filepath.Join(t.TempDir(), "go")
		version, err := exec.Command(goCommand(t), "env", "GOVERSION").Output()
		if err != nil {
			t.Fatal(err)
		}
		script := fmt.Sprintf("#!/bin/sh\nif [ \"$1\" = env ]; then printf '%%s\\n%%s\\n\\n' /nonexistent-goroot %s; exit 0; fi\necho \"a compiler run on a cached start: $*\" >&2\nexit 99\n",
			strings.TrimSpace(string(version)))
		if err := os.WriteFile(fakeGo, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		out, _, err = e.run(app, "--go", fakeGo)
		if err != nil {
			t.Fatalf("cached run: %v", err)
		}
		mustContain(t, "the cached run", out, "build [1/3] db: cached", "build [2/3] idle: cached", "build [3/3] web: cached", "cells started: [db web]")
		if strings.Contains(out, "compiling") {
			t.Errorf("the cached run compiled:\n%s", out)
		}
		if after := binaries(t, cache); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("the cached run changed the built binaries:\nbefore %v\nafter  %v", before, after)
		}
	})

	t.Run("CycleReportedWithPath", func(t *testing.T) {
		e := newAppEnv(t, cache)
		app := t.TempDir()
		writeAppCell(t, app, "a", "autostart = true\ndepends_on = [\"b\"]\n", nil)
		writeAppCell(t, app, "b", "depends_on = [\"c\"]\n", nil)
		writeAppCell(t, app, "c", "depends_on = [\"a\"]\n", nil)
		_, stderr, err := e.run(app)
		if err == nil {
			t.Fatal("an app with a dependency cycle ran")
		}
		mustContain(t, "the error", stderr, "a -> b -> c -> a", filepath.Join(app, "cells/a/Cell.toml"), filepath.Join(app, "cells/c/Cell.toml"))
	})

	t.Run("NetworkNeedingBuildFailsOffline", func(t *testing.T) {
		e := newAppEnv(t, cache)
		app := t.TempDir()
		writeAppCell(t, app, "fetcher", "autostart = true\n", nil)
		dir := filepath.Join(app, "cells", "fetcher")
		os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/fetcher\n\ngo 1.22\n\nrequire github.com/nobody/nothing v1.2.3\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "extra.go"), []byte("package main\n\nimport _ \"github.com/nobody/nothing\"\n"), 0o644)
		_, stderr, err := e.cellroot("build", app)
		if err == nil {
			t.Fatal("a build that needs a module download succeeded")
		}
		mustContain(t, "the error", stderr, "build of cell fetcher failed", "not vendored", "offline", "go mod vendor", "github.com/nobody/nothing")
	})

	t.Run("RequestBeyondGrantDenied", func(t *testing.T) {
		e := newAppEnv(t, cache)
		app := t.TempDir()
		writeAppCell(t, app, "quiet", "autostart = true\n", nil)
		e.mustAllow(app)
		// Cell.toml now asks for the network the allowlist does not grant.
		os.WriteFile(filepath.Join(app, "cells/quiet/Cell.toml"), []byte("version = 1\nname = \"quiet\"\nautostart = true\nnetwork = true\n"), 0o644)
		_, stderr, err := e.run(app)
		if err == nil {
			t.Fatal("a cell asking for more than its grant started")
		}
		mustContain(t, "the audit", stderr, `"code":"unverified"`, "asks for more than the allowlist grants: network")
	})

	t.Run("ChangedSourceAfterPinRefused", func(t *testing.T) {
		e := newAppEnv(t, cache)
		app := t.TempDir()
		writeAppCell(t, app, "pinned", "autostart = true\n", nil)
		e.mustAllow(app, "--pin")
		if _, _, err := e.run(app); err != nil {
			t.Fatalf("the pinned cell did not start: %v", err)
		}
		main := filepath.Join(app, "cells/pinned/main.go")
		src, _ := os.ReadFile(main)
		os.WriteFile(main, append(src, []byte("\n// changed after pinning\n")...), 0o644)
		_, stderr, err := e.run(app)
		if err == nil {
			t.Fatal("a cell whose source changed after pinning started")
		}
		mustContain(t, "the audit", stderr, `"code":"unverified"`, "but the allowlist pins")
	})

	t.Run("TamperedBinaryRefused", func(t *testing.T) {
		e := newAppEnv(t, cache)
		app := t.TempDir()
		writeAppCell(t, app, "solid", "", nil)
		e.mustAllow(app)
		out, _, err := e.cellroot("build", app)
		if err != nil {
			t.Fatal(err)
		}
		var installed string
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Split(l, "\t"); len(f) > 1 && f[0] == "solid" {
				installed = f[1]
			}
		}
		real, err := filepath.EvalSymlinks(installed)
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(real, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.Write([]byte("tampered"))
		f.Close()
		// Started by an owner of its own, not by cellroot run, which would
		// notice and rebuild: the root alone must refuse it.
		var log testutil.SyncBuffer
		ctx := testCtx(t)
		s, err := cell.Start(ctx, cell.OwnerOptions{Cellroot: filepath.Join(e.bin, "cellroot"), Allowlist: e.allowlist,
			Args: []string{"--log-format", "json"}, Stderr: &log})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if _, err := s.Spawn(ctx, "solid"); err == nil {
			t.Fatal("a tampered binary was started")
		}
		// The audit arrives through the SDK's copy of cellroot's stderr.
		waitFor(t, "the refusal is audited", func() bool { return strings.Contains(log.String(), `"code":"unverified"`) })
		mustContain(t, "the audit", log.String(), `"code":"unverified"`, "was modified after its build")
	})

	t.Run("SignatureByUnknownKeyRefused", func(t *testing.T) {
		e := newAppEnv(t, cache)
		app := t.TempDir()
		writeAppCell(t, app, "signed", "autostart = true\n", nil)
		keys := t.TempDir()
		if _, _, err := e.cellroot("keygen", "--trust", "--out", filepath.Join(keys, "me.key"), "me"); err != nil {
			t.Fatal(err)
		}
		if _, _, err := e.cellroot("keygen", "--out", filepath.Join(keys, "rogue.key"), "rogue"); err != nil {
			t.Fatal(err)
		}
		e.mustAllow(app, "--require-signature")
		if _, stderr, err := e.run(app); err == nil {
			t.Fatal("an unsigned cell started")
		} else {
			mustContain(t, "the audit", stderr, `"code":"unverified"`, "Cell.sig")
		}
		if _, _, err := e.cellroot("sign", "--key", filepath.Join(keys, "rogue.key"), app); err != nil {
			t.Fatal(err)
		}
		if _, stderr, err := e.run(app); err == nil {
			t.Fatal("a cell signed by an unknown key started")
		} else {
			mustContain(t, "the audit", stderr, `"code":"unverified"`, "signed by a key that is not trusted")
		}
		if _, _, err := e.cellroot("sign", "--key", filepath.Join(keys, "me.key"), app); err != nil {
			t.Fatal(err)
		}
		if _, _, err := e.run(app); err != nil {
			t.Fatalf("a cell signed by a trusted key did not start: %v", err)
		}
	})

	t.Run("AllowKeepsTheUsersFileAndRevokes", func(t *testing.T) {
		e := newAppEnv(t, cache)
		app := t.TempDir()
		writeAppCell(t, app, "one", "spawn = [\"two\"]\n", nil)
		writeAppCell(t, app, "two", "network = true\n", nil)
		mine := "# mine: keep me\nversion = 1\n\n[cell.tool] # by hand\nexec = \"/usr/bin/true\"\n"
		os.MkdirAll(filepath.Dir(e.allowlist), 0o700)
		os.WriteFile(e.allowlist, []byte(mine), 0o600)
		// No terminal and no --yes: nothing is granted.
		if _, stderr, err := e.cellroot("allow", "--allowlist", e.allowlist, app); err == nil {
			t.Fatal("allow granted without confirmation")
		} else {
			mustContain(t, "the refusal", stderr, "not a terminal", "--yes")
		}
		out, _, err := e.cellroot("allow", "--yes", "--allowlist", e.allowlist, app)
		if err != nil {
			t.Fatal(err)
		}
		mustContain(t, "the prompt", out, "cell one", "may spawn:     two", "cell two", "network:       YES")
		text, _ := os.ReadFile(e.allowlist)
		if !strings.HasPrefix(string(text), mine) || !strings.Contains(string(text), "[cell.two]") {
			t.Fatalf("allowlist after allow:\n%s", text)
		}
		if _, _, err := e.cellroot("allow", "--revoke", "--allowlist", e.allowlist, app); err != nil {
			t.Fatal(err)
		}
		if text, _ := os.ReadFile(e.allowlist); string(text) != mine {
			t.Fatalf("allowlist after revoke:\n%q\nwant\n%q", text, mine)
		}
	})
}
