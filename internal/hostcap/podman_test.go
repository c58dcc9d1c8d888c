package hostcap

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/cellproject/cell/internal/cellspec"
)

func TestDetectPodman(t *testing.T) {
	ctx := context.Background()
	if c := Detect(ctx, Options{}).Capabilities[cellspec.Podman]; c.Available || c.Reason == "" {
		t.Errorf("no probe wired: %+v, want unavailable with a reason", c)
	}
	failed := Detect(ctx, Options{Podman: func(context.Context) error { return errors.New("no service answered") }})
	if c := failed.Capabilities[cellspec.Podman]; c.Available || !strings.Contains(c.Reason, "no service answered") {
		t.Errorf("failed probe: %+v, want unavailable with the probe's error", c)
	}
	ok := Detect(ctx, Options{Podman: func(context.Context) error { return nil }})
	c := ok.Capabilities[cellspec.Podman]
	enforces, why := RootlessLimits()
	if !c.Available || c.EnforcesLimits != enforces || !strings.Contains(c.Reason, why) {
		t.Errorf("answering probe: %+v, want available, limits %v (%s)", c, enforces, why)
	}
	t.Logf("rootless limits here: %v: %s", enforces, why)
}
