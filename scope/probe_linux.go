package scope

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	sdbus "github.com/coreos/go-systemd/v22/dbus"
	"golang.org/x/sys/unix"
)

// Errors Probe wraps, each with what to do about it.
var (
	ErrNoCgroup2     = errors.New("scope: /sys/fs/cgroup is not a unified cgroup v2 hierarchy")
	ErrNoUserManager = errors.New("scope: no systemd user manager on the session bus")
)

// neededControllers are the ones a cell's limits use.
var neededControllers = []string{"cpu", "memory", "pids"}

// Probe tells whether scopes can run cells here (a nil error) and whether
// their limits are enforced (the controllers delegated to the user's
// manager); missing is the list of controllers that are not.
func Probe(ctx context.Context, uid int) (missing []string, err error) {
	var fs unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &fs); err != nil || fs.Type != unix.CGROUP2_SUPER_MAGIC {
		return nil, fmt.Errorf("%w (hybrid or v1 cgroups: boot with systemd.unified_cgroup_hierarchy=1)", ErrNoCgroup2)
	}
	conn, err := sdbus.NewUserConnectionContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %v (is this a login session with XDG_RUNTIME_DIR and DBUS_SESSION_BUS_ADDRESS set?)", ErrNoUserManager, err)
	}
	defer conn.Close()
	if _, err := conn.GetManagerProperty("Version"); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoUserManager, err)
	}
	path := filepath.Join("/sys/fs/cgroup/user.slice", fmt.Sprintf("user-%d.slice", uid),
		fmt.Sprintf("user@%d.service", uid), "cgroup.controllers")
	data, err := os.ReadFile(path)
	if err != nil {
		return neededControllers, nil
	}
	have := map[string]bool{}
	for _, c := range strings.Fields(string(data)) {
		have[c] = true
	}
	for _, c := range neededControllers {
		if !have[c] {
			missing = append(missing, c)
		}
	}
	return missing, nil
}
