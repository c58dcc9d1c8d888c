package bwrap

import (
	"errors"
	"strings"
	"testing"

	"github.com/cellproject/cell/internal/cellspec"
)

func TestArgs(t *testing.T) {
	const head = "--unshare-all --unshare-user "
	const common = "--die-with-parent --cap-drop ALL --hostname cell --proc /proc --dev /dev --tmpfs /tmp "
	const tail = " --remount-ro /dev --remount-ro / --chdir /"
	tests := []struct {
		name string
		spec cellspec.Spec
		want string
	}{{
		name: "no network, session under the runtime dir",
		spec: cellspec.Spec{Exec: "/opt/cells/echo", SessionDir: "/run/user/1000/cell/s1"},
		want: head + common +
			"--dir /run --dir /run/user --dir /run/user/1000 --dir /run/user/1000/cell " +
			"--ro-bind /run/user/1000/cell/s1 /run/user/1000/cell/s1 " +
			"--dir /opt --dir /opt/cells --ro-bind /opt/cells/echo /opt/cells/echo" + tail,
	}, {
		name: "network granted",
		spec: cellspec.Spec{Exec: "/bin/cell", SessionDir: "/run/s", Network: true},
		want: head + "--share-net " + common +
			"--dir /run --ro-bind /run/s /run/s --dir /bin --ro-bind /bin/cell /bin/cell" + tail,
	}, {
		name: "both under /tmp: parents made once, inside the tmpfs",
		spec: cellspec.Spec{Exec: "/tmp/build/x/cell", SessionDir: "/tmp/cell-0/s2"},
		want: head + common +
			"--dir /tmp/cell-0 --ro-bind /tmp/cell-0/s2 /tmp/cell-0/s2 " +
			"--dir /tmp/build --dir /tmp/build/x --ro-bind /tmp/build/x/cell /tmp/build/x/cell" + tail,
	}, {
		name: "binary inside the session dir: no --dir into the host's dir",
		spec: cellspec.Spec{Exec: "/run/s/bin/cell", SessionDir: "/run/s"},
		want: head + common +
			"--dir /run --ro-bind /run/s /run/s --ro-bind /run/s/bin/cell /run/s/bin/cell" + tail,
	}, {
		name: "no session dir",
		spec: cellspec.Spec{Exec: "/cell"},
		want: head + common + "--ro-bind /cell /cell" + tail,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := strings.Join(Args(tt.spec, Options{}), " ")
			if got != tt.want {
				t.Errorf("Args =\n%s\nwant\n%s", got, tt.want)
			}
			for _, bad := range []string{"--setenv", "--clearenv", "--new-session", "--ro-bind / ", "--bind / "} {
				if strings.Contains(got+" ", bad+" ") {
					t.Errorf("Args has %q", bad)
				}
			}
		})
	}
}

// The capsid's options come before the mounts, --size right before the
// /tmp tmpfs it bounds.
func TestArgsLayers(t *testing.T) {
	got := strings.Join(Args(cellspec.Spec{Exec: "/cell"}, Options{SeccompFD: 4, DisableUserns: true, TmpSize: 1 << 20}), " ")
	want := "--unshare-all --unshare-user --disable-userns --assert-userns-disabled --seccomp 4 " +
		"--die-with-parent --cap-drop ALL --hostname cell --proc /proc --dev /dev --size 1048576 --tmpfs /tmp " +
		"--ro-bind /cell /cell --remount-ro /dev --remount-ro / --chdir /"
	if got != want {
		t.Fatalf("Args =\n%s\nwant\n%s", got, want)
	}
}

func TestCheckSpec(t *testing.T) {
	for _, tt := range []struct {
		exec, session string
		ok            bool
	}{
		{"/opt/cell", "/run/s", true},
		{"/opt/cell", "", true},
		{"cell", "/run/s", false},
		{"/opt/../cell", "/run/s", false},
		{"/opt/cell", "/", false},
		{"/opt/cell", "/tmp", false},
		{"/proc/self/exe", "/run/s", false},
		{"/opt/cell", "/dev/shm/s", false},
	} {
		err := checkSpec(cellspec.Spec{Exec: tt.exec, SessionDir: tt.session})
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrInvalidSpec)) {
			t.Errorf("checkSpec(%q, %q) = %v, want ok=%v", tt.exec, tt.session, err, tt.ok)
		}
	}
}

func TestClassify(t *testing.T) {
	for _, tt := range []struct {
		out  string
		want error
	}{
		{"bwrap: No permissions to creating new namespace, likely because the kernel does not allow non-privileged user namespaces.", ErrNoUserNamespaces},
		{"bwrap: setting up uid map: Permission denied", ErrNoUserNamespaces},
		{"bwrap: Creating new namespace failed: No space left on device", ErrNoUserNamespaces},
		{"bwrap: Unknown option --cap-drop", ErrTooOld},
		{"bwrap: Can't mount proc on /newroot/proc: Operation not permitted", ErrSandboxFailed},
	} {
		if err := classify("exited 1", tt.out); !errors.Is(err, tt.want) {
			t.Errorf("classify(%q) = %v, want %v", tt.out, err, tt.want)
		}
	}
}
