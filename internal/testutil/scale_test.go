package testutil

import (
	"testing"
	"time"
)

func TestScaled(t *testing.T) {
	t.Setenv("CELL_TIME_SCALE", "")
	if got := Scaled(t, time.Second); got != time.Second {
		t.Fatalf("unset: got %v", got)
	}
	t.Setenv("CELL_TIME_SCALE", "2.5")
	if got := Scaled(t, time.Second); got != 2500*time.Millisecond {
		t.Fatalf("2.5: got %v", got)
	}
}
