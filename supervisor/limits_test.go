package supervisor

import (
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cellproject/cell/internal/audit"
)

func TestBudgetRate(t *testing.T) {
	now := time.Unix(1000, 0)
	b := newBudget(now)
	for i := 0; i < rateBurst; i++ {
		if !b.allow(now) {
			t.Fatalf("request %d of the burst refused", i)
		}
	}
	if b.allow(now) {
		t.Fatal("request past the burst allowed")
	}
	if !b.allow(now.Add(time.Second / ratePerSecond)) {
		t.Fatal("no refill after 1/rate seconds")
	}
	if b.allow(now.Add(time.Second / ratePerSecond)) {
		t.Fatal("refill gave more than one token")
	}
	// Sequential traffic at 40 a second for a minute is never refused.
	b = newBudget(now)
	for i := 0; i < 40*60; i++ {
		if !b.allow(now.Add(time.Duration(i) * time.Second / 40)) {
			t.Fatalf("sequential request %d at 40/s refused", i)
		}
	}
}

// TestDenialBursts: a flood of denials makes one full record and one
// aggregate per burst, whose count is exact.
func TestDenialBursts(t *testing.T) {
	now := time.Unix(1000, 0)
	b := newBudget(now)
	deny := audit.Event{Kind: audit.KindSpawn, Code: "not_listed", Reason: "no"}
	full := 0
	var aggs []*audit.Event
	for i := 0; i < 20000; i++ {
		f, agg := b.noteDenial(now.Add(time.Duration(i)*time.Microsecond*40), deny) // 0.8 s
		if f {
			full++
		}
		if agg != nil {
			aggs = append(aggs, agg)
		}
	}
	if full != 1 || len(aggs) != 0 {
		t.Fatalf("%d full records and %d aggregates during one burst, want 1 and 0", full, len(aggs))
	}
	if agg := b.due(now.Add(time.Second/2), false); agg != nil {
		t.Fatal("aggregate before the burst ended")
	}
	agg := b.due(now.Add(2*time.Second), false)
	if agg == nil || !strings.HasPrefix(agg.Reason, "19999 more denials") || agg.Code != "not_listed" || agg.Allow {
		t.Fatalf("aggregate = %+v", agg)
	}
	if b.due(now.Add(3*time.Second), true) != nil {
		t.Fatal("a closed burst reported twice")
	}
	// A lone denial after the burst is recorded in full again.
	if f, agg := b.noteDenial(now.Add(5*time.Second), deny); !f || agg != nil {
		t.Fatal("a new burst's first denial was not recorded in full")
	}
	// A burst that never pauses still reports every burstMax.
	b = newBudget(now)
	n := 0
	for i := 0; i < 30000; i++ {
		if _, agg := b.noteDenial(now.Add(time.Duration(i)*time.Millisecond), deny); agg != nil {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("%d aggregates over 30 s of unbroken denials, want 2", n)
	}
}

// TestKillNaming: a process whose environment names a dead session's dir is
// killed; one naming a dir that merely shares the prefix is not.
func TestKillNaming(t *testing.T) {
	dir := t.TempDir() + "/0123456789abcdef"
	start := func(env string) *exec.Cmd {
		cmd := exec.Command("sleep", "30")
		cmd.Env = []string{env}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd
	}
	victim := start("CELL_RUNTIME_DIR=" + dir)
	bystander := start("CELL_RUNTIME_DIR=" + dir + "0")
	if n := killNaming(dir); n != 1 {
		t.Fatalf("killed %d processes, want 1", n)
	}
	if err := victim.Wait(); err == nil {
		t.Fatal("the process naming the dir was not killed")
	}
	if err := bystander.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("the bystander was hit: %v", err)
	}
}
