//go:build vmlab

package vmsmoke

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containers/podman/v5/pkg/bindings"
	"github.com/containers/podman/v5/pkg/bindings/containers"
	"github.com/containers/podman/v5/pkg/specgen"
	spec "github.com/opencontainers/runtime-spec/specs-go"
)

// Lines the container payload prints, read back through the container's
// logs: "vmsmoke KEY=VALUE" facts, then the ready line.
const (
	payloadPrefix = "vmsmoke "
	payloadReady  = "vmsmoke ready"
)

// runPayload is the body of this binary when it runs as a container
// workload: report what the process sees from inside, then stay alive so
// the test can inspect it from outside.
func runPayload(role string) int {
	if role != "container" {
		fmt.Fprintf(os.Stderr, "%s=%q: unknown payload role\n", payloadEnv, role)
		return 2
	}
	ifs, err := net.Interfaces()
	if err != nil {
		fmt.Printf("%serror=list interfaces: %v\n", payloadPrefix, err)
		return 1
	}
	names := make([]string, 0, len(ifs))
	for _, i := range ifs {
		names = append(names, i.Name)
	}
	sort.Strings(names)
	fmt.Printf("%sifaces=%s\n", payloadPrefix, strings.Join(names, ","))
	if v, err := readTrimmed("/sys/fs/cgroup/memory.max"); err == nil {
		fmt.Printf("%smemory.max=%s\n", payloadPrefix, v)
	} else {
		fmt.Printf("%smemory.max=unreadable (%v)\n", payloadPrefix, err)
	}
	fmt.Println(payloadReady)
	time.Sleep(10 * time.Minute)
	return 0
}

// podmanSocket starts the user's podman.socket through the user's systemd
// and returns the socket's path.
func podmanSocket(t *testing.T, ctx context.Context) string {
	t.Helper()
	conn := userSystemd(t, ctx)
	ch := make(chan string, 1)
	if _, err := conn.StartUnitContext(ctx, "podman.socket", "replace", ch); err != nil {
		t.Fatalf("start podman.socket in the user's systemd: %v", err)
	}
	waitJob(t, ctx, "start podman.socket", ch)
	sock := filepath.Join(requireEnv(t, "XDG_RUNTIME_DIR"), "podman", "podman.sock")
	if fi, err := os.Stat(sock); err != nil {
		t.Fatalf("podman.socket started but: %v", err)
	} else if fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("%s is not a socket (mode %v)", sock, fi.Mode())
	}
	return sock
}

// payloadRoot makes a container root holding only this (static) test
// binary as /payload and the empty mount points Podman wants.
func payloadRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "cell-vmsmoke-rootfs-")
	if err != nil {
		t.Fatalf("container root: %v", err)
	}
	// Podman may leave files owned by other mapped ids in the root, so
	// removal is best effort and not a test failure.
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("leaving %s: %v", dir, err)
		}
	})
	for _, d := range []string{"etc", "proc", "dev", "sys", "tmp"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatalf("container root: %v", err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatalf("find own binary: %v", err)
	}
	if err := copyFile(self, filepath.Join(dir, "payload"), 0o755); err != nil {
		t.Fatalf("container root: %v", err)
	}
	return dir
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("copy to %s: %w", dst, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("copy to %s: %w", dst, err)
	}
	return nil
}

func TestPodmanRootlessContainer(t *testing.T) {
	ctx := testContext(t, 8*time.Minute)
	sock := podmanSocket(t, ctx)
	pctx, err := bindings.NewConnection(ctx, "unix://"+sock)
	if err != nil {
		t.Fatalf("podman bindings connection to %s: %v", sock, err)
	}
	t.Logf("podman service API %v on %s", bindings.ServiceVersion(pctx), sock)

	const memLimit = 64 << 20
	root := payloadRoot(t)
	s := specgen.NewSpecGenerator(root, true)
	s.Name = uniqueName(t, "cell-vmsmoke-")
	s.Command = []string{"/payload"}
	s.Env = map[string]string{payloadEnv: "container"}
	s.NetNS = specgen.Namespace{NSMode: specgen.NoNetwork}
	readOnly := true
	s.ReadOnlyFilesystem = &readOnly
	s.LogConfiguration = &specgen.LogConfig{Driver: "k8s-file"}
	mem := int64(memLimit)
	s.ResourceLimits = &spec.LinuxResources{
		Memory: &spec.LinuxMemory{Limit: &mem},
		Pids:   &spec.LinuxPids{Limit: 32},
	}

	created, err := containers.CreateWithSpec(pctx, s, nil)
	if err != nil {
		t.Fatalf("create container %s: %v", s.Name, err)
	}
	id := created.ID
	removed := false
	t.Cleanup(func() {
		if removed {
			return
		}
		// The test's context may be over; keep the connection, not its end.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(pctx), 2*time.Minute)
		defer cancel()
		if _, err := containers.Remove(cctx, id, new(containers.RemoveOptions).WithForce(true).WithTimeout(0)); err != nil {
			t.Errorf("remove container %s: %v", s.Name, err)
		}
	})
	if err := containers.Start(pctx, id, nil); err != nil {
		t.Fatalf("start container %s: %v", s.Name, err)
	}

	facts := readPayloadFacts(t, pctx, id)
	if facts["error"] != "" {
		t.Fatalf("payload failed inside the container: %s", facts["error"])
	}
	if facts["ifaces"] != "lo" {
		t.Errorf("network interfaces inside the container = %q, want only lo (network none)", facts["ifaces"])
	}

	data, err := containers.Inspect(pctx, id, nil)
	if err != nil {
		t.Fatalf("inspect container %s: %v", s.Name, err)
	}
	if data.State == nil || !data.State.Running || data.State.Pid <= 0 {
		t.Fatalf("container %s not running after its payload said ready: state %+v", s.Name, data.State)
	}
	rel, err := procCgroup(data.State.Pid)
	if err != nil {
		t.Fatal(err)
	}
	limit, from, err := effectiveMemoryMax(rel)
	if err != nil {
		t.Fatal(err)
	}
	if limit != memLimit {
		t.Errorf("container pid %d in %s: tightest memory.max = %d (from %s), want %d",
			data.State.Pid, rel, limit, from, memLimit)
	}
	t.Logf("container %s pid %d cgroup %s: memory.max %d from %s; inside: ifaces=%s memory.max=%s",
		s.Name, data.State.Pid, rel, limit, from, facts["ifaces"], facts["memory.max"])
	if inner := facts["memory.max"]; inner != "max" && inner != strconv.Itoa(memLimit) {
		t.Errorf("memory.max seen inside the container = %q, want %d (or max in a child cgroup)", inner, memLimit)
	}

	if _, err := containers.Remove(pctx, id, new(containers.RemoveOptions).WithForce(true).WithTimeout(0)); err != nil {
		t.Fatalf("remove container %s: %v", s.Name, err)
	}
	removed = true
	exists, err := containers.Exists(pctx, id, nil)
	if err != nil {
		t.Fatalf("check container %s is gone: %v", s.Name, err)
	}
	if exists {
		t.Errorf("container %s still exists after removal", s.Name)
	}
}

// readPayloadFacts follows the container's logs until the payload's ready
// line and returns its KEY=VALUE facts.
func readPayloadFacts(t *testing.T, pctx context.Context, id string) map[string]string {
	t.Helper()
	lctx, cancel := context.WithTimeout(pctx, 4*time.Minute)
	defer cancel()
	stdout := make(chan string, 64)
	stderr := make(chan string, 64)
	logErr := make(chan error, 1)
	go func() {
		opts := new(containers.LogOptions).WithFollow(true).WithStdout(true).WithStderr(true)
		logErr <- containers.Logs(lctx, id, opts, stdout, stderr)
	}()
	facts := map[string]string{}
	var seen []string
	for {
		select {
		case line := <-stdout:
			line = strings.TrimRight(line, "\r\n")
			seen = append(seen, line)
			if line == payloadReady {
				return facts
			}
			if kv, ok := strings.CutPrefix(line, payloadPrefix); ok {
				k, v, _ := strings.Cut(kv, "=")
				facts[k] = v
				if k == "error" {
					return facts
				}
			}
		case line := <-stderr:
			seen = append(seen, "stderr: "+strings.TrimRight(line, "\r\n"))
		case err := <-logErr:
			t.Fatalf("container logs ended before the payload was ready: %v; lines: %q", err, seen)
		case <-lctx.Done():
			t.Fatalf("payload not ready: %v; lines: %q", lctx.Err(), seen)
		}
	}
}
