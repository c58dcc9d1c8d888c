package cellspec

import "testing"

// TestExit: the status is there once Done is closed, and only the first end
// counts.
func TestExit(t *testing.T) {
	e, end := NewExit()
	if e.Ended() || e.ExitStatus() != "" {
		t.Fatalf("a fresh Exit has ended (%q)", e.ExitStatus())
	}
	end("exited 3")
	end("signal killed")
	<-e.Done()
	if !e.Ended() || e.ExitStatus() != "exited 3" {
		t.Fatalf("ended %v with %q, want exited 3", e.Ended(), e.ExitStatus())
	}
}
