package podman

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/containers/podman/v5/pkg/specgen"
	rspec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cellproject/cell/internal/cellspec"
	"github.com/cellproject/cell/quota"
)

// Labels put on every container of a cell. Teardown and collection select
// containers by them, never by name, so the user's own containers are safe.
const (
	// LabelSession holds the session id.
	LabelSession = "cell.session"
	// LabelCell holds the cell's instance key.
	LabelCell = "cell.name"
	// LabelBase holds the runtime dir the session lives in: a root only
	// judges sessions of its own runtime dir, since liveness is read from
	// the lock files there.
	LabelBase = "cell.base"
)

// cpuPeriod is the CFS period the CPU limit is expressed in (100 ms, the
// kernel's default), so that quota/period is the number of cores.
const cpuPeriod = 100000

// tmpSize bounds the private /tmp tmpfs; without limits enforced it is the
// only bound on what a cell can park in memory through /tmp.
const tmpSize = "64m"

// ContainerName is the name of the container running key in session. Names
// carry the session id so that a leftover conmon or container is easy to
// tell apart by its command line; selection still goes by labels.
func ContainerName(session, key string) string {
	return "cell-" + session + "-" + strings.ReplaceAll(key, "@", "_")
}

// Resources translates limits into the OCI resources Podman applies to the
// container's cgroup; nil when no limit is set.
func Resources(l quota.Limits) *rspec.LinuxResources {
	if l.IsZero() {
		return nil
	}
	r := &rspec.LinuxResources{}
	if l.MemoryBytes != 0 {
		m := int64(min(l.MemoryBytes, 1<<62))
		// Swap equal to memory: no swap on top, so the limit is the limit.
		r.Memory = &rspec.LinuxMemory{Limit: &m, Swap: &m}
	}
	if l.CPU != 0 {
		period := uint64(cpuPeriod)
		// At least 1 ms of quota per period: the kernel's floor.
		quota := max(int64(l.CPU*cpuPeriod), 1000)
		r.CPU = &rspec.LinuxCPU{Quota: &quota, Period: &period}
	}
	if l.Pids != 0 {
		r.Pids = &rspec.LinuxPids{Limit: int64(min(l.Pids, 1<<62))}
	}
	return r
}

// Spec builds the container for spec with root as its root directory. It
// reads nothing from the host; base is the runtime dir for LabelBase.
func Spec(spec cellspec.Spec, root, base string) (*specgen.SpecGenerator, error) {
	if !filepath.IsAbs(spec.Exec) || filepath.Clean(spec.Exec) != spec.Exec {
		return nil, fmt.Errorf("%w: exec %q is not an absolute clean path", ErrInvalidSpec, spec.Exec)
	}
	if !filepath.IsAbs(spec.SessionDir) || filepath.Clean(spec.SessionDir) != spec.SessionDir {
		return nil, fmt.Errorf("%w: session dir %q is not an absolute clean path", ErrInvalidSpec, spec.SessionDir)
	}
	env := make(map[string]string, len(spec.Env))
	for _, kv := range spec.Env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%w: environment entry %q is not KEY=value", ErrInvalidSpec, kv)
		}
		env[k] = v
	}
	yes, no := true, false
	s := specgen.NewSpecGenerator(root, true)
	s.Name = ContainerName(spec.Session, spec.Key)
	s.Command = append([]string{spec.Exec}, spec.Args...)
	s.Env = env
	// Podman adds PATH, TERM, container and HOSTNAME to every container
	// unless told not to: the cell gets exactly its contract.
	s.UnsetEnvAll = &yes
	s.EnvHost = &no
	s.HTTPProxy = &no
	s.Labels = map[string]string{LabelSession: spec.Session, LabelCell: spec.Key, LabelBase: base}
	s.Hostname = "cell"
	s.WorkDir = "/"
	s.Terminal = &no
	s.Stdin = &no
	// Removed by Podman as soon as it exits, even when no root is left to
	// remove it (after a SIGKILL of the root, the cell exits through the
	// umbilical and conmon's cleanup removes the container).
	s.Remove = &yes
	s.ReadOnlyFilesystem = &yes
	// No tmpfs on /run, /var/tmp: the only writable places are /tmp (below)
	// and the session dir.
	s.ReadWriteTmpfs = &no
	s.CapDrop = []string{"all"}
	s.NoNewPrivileges = &yes
	s.UserNS = specgen.Namespace{NSMode: specgen.KeepID}
	// Podman's defaults, said explicitly: the container shares no pid, ipc
	// or uts namespace with the host.
	s.PidNS = specgen.Namespace{NSMode: specgen.Private}
	s.IpcNS = specgen.Namespace{NSMode: specgen.Private}
	s.UtsNS = specgen.Namespace{NSMode: specgen.Private}
	s.NetNS = specgen.Namespace{NSMode: specgen.NoNetwork}
	if spec.Network {
		// Podman's default for a rootless container: the user's rootless
		// network as containers.conf configures it (slirp4netns on Podman
		// 4, pasta on 5).
		s.NetNS = specgen.Namespace{}
	}
	// The files an image would provide: our root has none, and nothing of
	// the host's resolver setup belongs in a cell without network.
	s.UseImageHosts = &yes
	s.UseImageResolvConf = &yes
	s.UseImageHostname = &yes
	s.LogConfiguration = &specgen.LogConfig{Driver: "k8s-file"}
	if spec.LimitsEnforced {
		s.ResourceLimits = Resources(spec.Limits)
	}

	s.Mounts = []rspec.Mount{
		{Type: "tmpfs", Source: "tmpfs", Destination: "/tmp",
			Options: []string{"rw", "nosuid", "nodev", "noexec", "mode=1777", "size=" + tmpSize}},
		// Read-only, as in the bwrap sandbox: the root creates every file
		// of the session dir, cells only connect to its sockets.
		{Type: "bind", Source: spec.SessionDir, Destination: spec.SessionDir,
			Options: []string{"rbind", "ro", "nosuid", "nodev"}},
		{Type: "bind", Source: spec.Exec, Destination: spec.Exec,
			Options: []string{"bind", "ro", "nosuid", "nodev"}},
	}
	return s, nil
}

// mountPoints lists the directories and files a root needs before Podman
// mounts into it, parents first: everything is made by us, as the user, so
// that nothing in the root is owned by a mapped id we cannot remove.
func mountPoints(spec cellspec.Spec) (dirs, files []string) {
	set := map[string]bool{}
	add := func(p string) {
		for d := p; d != "/" && !set[d]; d = filepath.Dir(d) {
			set[d] = true
		}
	}
	for _, d := range []string{"/etc", "/proc", "/dev", "/sys", "/tmp", "/run", spec.SessionDir} {
		add(d)
	}
	add(filepath.Dir(spec.Exec))
	for d := range set {
		dirs = append(dirs, d)
	}
	// Parents sort before their children.
	sort.Strings(dirs)
	files = []string{"/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/etc/passwd", "/etc/group", "/run/.containerenv", spec.Exec}
	return dirs, files
}
