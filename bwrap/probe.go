package bwrap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/cellproject/cell/internal/cellspec"
	"github.com/cellproject/cell/internal/process"
)

// Why a Probe failed; match with errors.Is.
var (
	// ErrNotInstalled: no bwrap binary at the path or in $PATH.
	ErrNotInstalled = errors.New("bwrap not installed")
	// ErrNoUserNamespaces: the kernel (or a policy such as AppArmor) does
	// not let this user create the namespaces a sandbox needs.
	ErrNoUserNamespaces = errors.New("bwrap: user namespaces unavailable")
	// ErrTooOld: bwrap rejects an option the sandbox needs.
	ErrTooOld = errors.New("bwrap: version too old")
	// ErrSandboxFailed: bwrap ran but could not set up the sandbox, for
	// another reason given in the error.
	ErrSandboxFailed = errors.New("bwrap: sandbox setup failed")
)

// probeTimeout bounds a probe when ctx has no deadline: a working bwrap
// answers in milliseconds.
const probeTimeout = 10 * time.Second

// Probe tells whether bwrapPath ("" means "bwrap" from $PATH) can build a
// cell's sandbox here, for this user: it runs a sandbox with every option a
// cell gets, around the host root made read-only, and execs bwrap's own
// --version inside. It returns nil when that works, and otherwise an error
// wrapping ErrNotInstalled, ErrNoUserNamespaces, ErrTooOld or
// ErrSandboxFailed, with bwrap's message and a hint for the user.
func Probe(ctx context.Context, bwrapPath string) error {
	path, err := Find(bwrapPath)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, probeTimeout)
		defer cancel()
	}

	// The host root read-only underneath, so the dynamically linked bwrap
	// can run inside; the cell's own options on top of it.
	sb, err := Prepare(ctx, path, cellspec.Spec{Exec: path}, 3)
	if err != nil {
		return fmt.Errorf("probe %s: %w", path, err)
	}
	defer sb.Close()
	args := append([]string{"--ro-bind", "/", "/"}, sb.Args...)
	args = append(args, "--", path, "--version")
	var out lockedBuffer
	inst, err := process.NewLauncher().Start(ctx, process.Command{
		Path:         path,
		Args:         args,
		Env:          []string{},
		Output:       &out,
		SpareLeader:  true,
		Files:        sb.Files,
		FreshKeyring: true,
	})
	if err != nil {
		return fmt.Errorf("probe %s: %w", path, err)
	}
	select {
	case <-inst.Done():
	case <-ctx.Done():
		stopped, cancel := context.WithCancel(context.Background())
		cancel() // straight to SIGKILL
		_ = inst.Stop(stopped)
		return fmt.Errorf("probe %s: %w (output: %q)", path, ctx.Err(), out.String())
	}
	status, output := inst.ExitStatus(), strings.TrimSpace(out.String())
	if status == "exited 0" && strings.Contains(output, "bubblewrap") {
		return nil
	}
	return fmt.Errorf("probe %s: %w", path, classify(status, output))
}

// classify turns a failed probe's status and bwrap's message into an error.
func classify(status, output string) error {
	msg := fmt.Sprintf("%s: %s", status, output)
	lower := strings.ToLower(output)
	switch {
	case strings.Contains(lower, "unknown option") || strings.Contains(lower, "unrecognized option"):
		return fmt.Errorf("%w (%s); bubblewrap 0.4 or newer is needed", ErrTooOld, msg)
	case strings.Contains(lower, "namespace") || strings.Contains(lower, "uid map") ||
		strings.Contains(lower, "uid_map") || strings.Contains(lower, "setgroups"):
		return fmt.Errorf("%w (%s); %s", ErrNoUserNamespaces, msg, userNSHint())
	default:
		return fmt.Errorf("%w (%s)", ErrSandboxFailed, msg)
	}
}

// userNSHint names the kernel settings that commonly forbid unprivileged user
// namespaces, with their values here where they exist.
func userNSHint() string {
	settings := []struct{ file, fix string }{
		{"/proc/sys/user/max_user_namespaces", "sysctl user.max_user_namespaces=15000"},
		{"/proc/sys/kernel/unprivileged_userns_clone", "sysctl kernel.unprivileged_userns_clone=1"},
		{"/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "an AppArmor profile for bwrap, or sysctl kernel.apparmor_restrict_unprivileged_userns=0"},
	}
	var parts []string
	for _, s := range settings {
		b, err := os.ReadFile(s.file)
		if err != nil {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s is %s (fix: %s)", s.file, strings.TrimSpace(string(b)), s.fix))
	}
	if len(parts) == 0 {
		return "the kernel may lack user namespace support (CONFIG_USER_NS)"
	}
	return "check " + strings.Join(parts, "; ")
}

// lockedBuffer collects output written by the copier goroutine.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	// Bound what a misbehaving bwrap can make us hold.
	if b.buf.Len() > 64<<10 {
		return len(p), nil
	}
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
