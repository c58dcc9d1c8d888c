package bwrap_test

import (
	"fmt"
	"strings"

	"github.com/cellproject/cell/bwrap"
	"github.com/cellproject/cell/internal/cellspec"
)

func ExampleArgs() {
	spec := cellspec.Spec{
		Exec:       "/home/ann/.cache/cell/bin/echo",
		Args:       []string{"-v"},
		SessionDir: "/run/user/1000/cell/s1",
	}
	fmt.Println(strings.Join(bwrap.Args(spec, bwrap.Options{SeccompFD: 3, DisableUserns: true, TmpSize: 64 << 20}), " "))
	// Output: --unshare-all --unshare-user --disable-userns --assert-userns-disabled --seccomp 3 --die-with-parent --cap-drop ALL --hostname cell --proc /proc --dev /dev --size 67108864 --tmpfs /tmp --dir /run --dir /run/user --dir /run/user/1000 --dir /run/user/1000/cell --ro-bind /run/user/1000/cell/s1 /run/user/1000/cell/s1 --dir /home --dir /home/ann --dir /home/ann/.cache --dir /home/ann/.cache/cell --dir /home/ann/.cache/cell/bin --ro-bind /home/ann/.cache/cell/bin/echo /home/ann/.cache/cell/bin/echo --remount-ro /dev --remount-ro / --chdir /
}
