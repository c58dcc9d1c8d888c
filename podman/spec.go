package podman

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/containers/podman/v5/pkg/specgen"
	rspec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cellproject/cell/internal/capsid"
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

// Spec builds the container for spec with root as its root directory; base
// is the runtime dir for LabelBase. It reads nothing from the host, and
// writes one file: the capsid's seccomp profile, once per directory, beside
// root in the backend's private dir (see profileFile).
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
	// The capsid's policy instead of Podman's default profile, which
	// allows keyctl and nested user namespaces (docs/capsid.md). The
	// runtime gives every container a fresh session keyring.
	profile, err := profileFile(filepath.Dir(root))
	if err != nil {
		return nil, err
	}
	s.SeccompProfilePath = profile
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
			Options: []string{"rw", "nosuid", "nodev", "noexec", "mode=1777", "size=" + strconv.FormatUint(capsid.TmpSize(spec.Limits), 10)}},
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

// ProfileName is the capsid's seccomp profile in the backend's private dir.
const ProfileName = "seccomp.json"

// profiles remembers the dirs whose profile is written: the policy does not
// change under a running root, so one write per dir serves every container.
var profiles sync.Map // dir -> path

// profileFile writes the capsid's OCI profile into dir (mode 0600; the dir
// is the backend's private one, never mounted into a container, so no cell
// can change it) once, and returns its path, which Podman reads when it
// creates a container.
func profileFile(dir string) (string, error) {
	if p, ok := profiles.Load(dir); ok {
		return p.(string), nil
	}
	prof, err := capsid.Profile()
	if err != nil {
		return "", fmt.Errorf("seccomp profile: %w", err)
	}
	data, err := json.Marshal(prof)
	if err != nil {
		return "", fmt.Errorf("seccomp profile: %w", err)
	}
	path := filepath.Join(dir, ProfileName)
	tmp, err := os.CreateTemp(dir, ProfileName+".*")
	if err != nil {
		return "", fmt.Errorf("seccomp profile: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return "", fmt.Errorf("seccomp profile: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("seccomp profile: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("seccomp profile: %w", err)
	}
	profiles.Store(dir, path)
	return path, nil
}
