package podman

import (
	"testing"

	"github.com/cellproject/cell/internal/rundir"
)

func TestLeftoverConmonMatching(t *testing.T) {
	base := "/run/user/1000/cell"
	conmon := func(name, log string) procEntry {
		return procEntry{comm: "conmon", args: []string{"/usr/bin/conmon", "--api-version", "1", "-n", name, "-l", "k8s-file:" + log}}
	}
	ours := conmon(ContainerName("0123456789abcdef", "eye@2"), base+"/"+rundir.PodmanPrivatePrefix+"x/root-1.log")
	if s, ok := conmonSession(ours, base); !ok || s != "0123456789abcdef" {
		t.Fatalf("our conmon: %q %v", s, ok)
	}
	for _, p := range []procEntry{
		conmon(ContainerName("0123456789abcdef", "eye"), "/run/user/1000/other/"+rundir.PodmanPrivatePrefix+"x/root-1.log"), // another runtime dir
		conmon("users-own", base+"/"+rundir.PodmanPrivatePrefix+"x/root-1.log"),
		{comm: "bash", args: ours.args},
	} {
		if s, ok := conmonSession(p, base); ok {
			t.Errorf("%+v matched as session %s", p, s)
		}
	}
	if _, ok := sessionOfName("/cell-0123456789abcdef-x"); !ok {
		t.Error("a name with Docker's leading slash")
	}
	if _, ok := sessionOfName("cell-0123456789ABCDEF-x"); ok {
		t.Error("upper-case hex is not a session id")
	}
}
