//go:build integration || vmlab

package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cellproject/cell/cell"
	"github.com/cellproject/cell/wire"
)

// The attacks of issue 10, each against a live root: the attack first, then
// the defence, with a good client timed throughout and the root's fds and
// RSS compared with their baseline afterwards.

// rootPidOf finds the cellroot of s among this process's children: the one
// holding s's root lock open.
func rootPidOf(t *testing.T, s *cell.Session) int {
	t.Helper()
	lock := s.ID() + ".lock"
	for _, p := range processes(t) {
		if !strings.Contains(p.cmdline, "cellroot serve") {
			continue
		}
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.pid))
		for _, fd := range fds {
			if target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", p.pid, fd.Name())); err == nil && strings.HasSuffix(target, lock) {
				return p.pid
			}
		}
	}
	t.Fatalf("no cellroot holds the lock of session %s", s.ID())
	return 0
}

// rootUsage is what the root holds at one moment.
type rootUsage struct {
	fds int
	rss int64 // bytes
	cpu time.Duration
}

func usageOf(t *testing.T, pid int) rootUsage {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("root fds: %v", err)
	}
	u := rootUsage{fds: len(fds)}
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(status); m != nil {
		kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
		u.rss = kb << 10
	}
	stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if i := strings.LastIndexByte(string(stat), ')'); i > 0 {
		f := strings.Fields(string(stat[i+1:]))
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		u.cpu = time.Duration(ut+st) * time.Second / 100 // USER_HZ
	}
	return u
}

// requireBackToBaseline waits until the root holds no more fds than before
// the attack (a few of slack for the good client's own connection) and its
// RSS is within a bound of the baseline: Go returns freed heap to the system
// lazily, so RSS is held to twice the baseline plus 32 MiB, far below what a
// leak of the attack's connections would keep.
func requireBackToBaseline(t *testing.T, pid int, base rootUsage) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		u := usageOf(t, pid)
		if u.fds <= base.fds+3 && u.rss <= 2*base.rss+32<<20 {
			t.Logf("root after the attack: %d fds (baseline %d), RSS %d MiB (baseline %d MiB)", u.fds, base.fds, u.rss>>20, base.rss>>20)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("root did not return to its baseline: %d fds (baseline %d), RSS %d MiB (baseline %d MiB)", u.fds, base.fds, u.rss>>20, base.rss>>20)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// goodClient serves as the well-behaved peer during an attack: every 100 ms
// it opens a connection with the owner token, says hello and lists, and the
// owner's own connection lists too. It fails the test when either takes 2 s
// or more, or fails. Stop it with the returned function.
func goodClient(t *testing.T, s *cell.Session) (stop func()) {
	t.Helper()
	token := ownerToken(t, s)
	done := make(chan struct{})
	var wg sync.WaitGroup
	var worst atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			case <-time.After(100 * time.Millisecond):
			}
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			err := func() error {
				c, err := wire.Dial(ctx, filepath.Join(s.Dir(), "umbilical.sock"))
				if err != nil {
					return err
				}
				defer c.Close()
				if _, err := c.Hello(ctx, wire.RoleOwner, token); err != nil {
					return err
				}
				_, err = c.List(ctx)
				return err
			}()
			if err == nil {
				_, err = s.List(ctx)
			}
			cancel()
			took := time.Since(start)
			if took > time.Duration(worst.Load()) {
				worst.Store(int64(took))
			}
			if err != nil || took >= 2*time.Second {
				t.Errorf("the good client was not served within 2 s: %v after %s", err, took)
				return
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
		t.Logf("the good client's slowest round: %s", time.Duration(worst.Load()))
	}
}

func ownerToken(t *testing.T, s *cell.Session) string {
	t.Helper()
	for _, kv := range s.Env() {
		if v, ok := strings.CutPrefix(kv, "CELL_TOKEN="); ok {
			return v
		}
	}
	t.Fatal("no owner token in the session's environment")
	return ""
}

// cellToken is the CELL_TOKEN of the running cell key, read from inside it.
func cellToken(t *testing.T, s *cell.Session, key string) string {
	t.Helper()
	var env []string
	if err := json.Unmarshal([]byte(call(t, s, key, "env", "")), &env); err != nil {
		t.Fatal(err)
	}
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "CELL_TOKEN="); ok {
			return v
		}
	}
	t.Fatalf("cell %s has no CELL_TOKEN", key)
	return ""
}

// callKey calls method on the running instance key (Grow takes names only).
func callKey(t *testing.T, s *cell.Session, key, method, arg string) string {
	t.Helper()
	ctx := testCtx(t)
	conn, err := s.Connect(ctx, key)
	if err != nil {
		t.Fatalf("connect %s: %v", key, err)
	}
	defer conn.Close()
	out, err := conn.Call(ctx, method, []byte(arg))
	if err != nil {
		t.Fatalf("%s.%s(%q): %v", key, method, arg, err)
	}
	return string(out)
}

// helloAs opens a connection and says hello; the reply's error is returned.
func helloAs(t *testing.T, s *cell.Session, role wire.Role, token string) (*wire.Client, error) {
	t.Helper()
	c := wire.NewClient(rawConn(t, s))
	_, err := c.Hello(testCtx(t), role, token)
	return c, err
}

// Finding 1: connections that need no token (before hello, observers) are
// bounded and displace their own process's, so that thousands of them from
// three sandboxed cells neither exhaust the root's fds nor keep the good
// client (another process) out.
func TestAbuseConnectionFlood(t *testing.T) {
	s, _ := startSession(t, testAllowlist)
	attackers := []string{"probe", "outsider", "counter"}
	for _, a := range attackers {
		call(t, s, a, "pid", "")
	}
	root := rootPidOf(t, s)
	base := usageOf(t, root)

	// The control: without bounds every connection held is a descriptor
	// in the root. One observer shows that one costs one.
	c, err := helloAs(t, s, wire.RoleObserver, "")
	if err != nil {
		t.Fatal(err)
	}
	if u := usageOf(t, root); u.fds != base.fds+1 {
		t.Fatalf("one observer connection: root fds %d -> %d; the measure shows nothing", base.fds, u.fds)
	}
	c.Close()

	stop := goodClient(t, s)
	var wg sync.WaitGroup
	var opened atomic.Int64
	for _, a := range attackers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, _ := strconv.Atoi(call(t, s, a, "flood", "7000,4s"))
			opened.Add(int64(n))
		}()
	}
	flooding := make(chan struct{})
	var maxFds atomic.Int64
	var polls sync.WaitGroup
	polls.Add(1)
	go func() {
		defer polls.Done()
		for {
			select {
			case <-flooding:
				return
			case <-time.After(50 * time.Millisecond):
				if n := int64(usageOf(t, root).fds); n > maxFds.Load() {
					maxFds.Store(n)
				}
			}
		}
	}()
	// The owner's own work goes on meanwhile: a sandboxed cell starts.
	time.Sleep(time.Second)
	if got := call(t, s, "netcell", "pid", ""); got == "" {
		t.Error("the owner's spawn during the flood gave nothing")
	}
	wg.Wait()
	close(flooding)
	polls.Wait()
	stop()
	t.Logf("three cells opened %d connections; the root held at most %d fds (baseline %d)", opened.Load(), maxFds.Load(), base.fds)
	if opened.Load() < 5000 {
		t.Fatalf("the attack opened only %d connections: it did not reproduce", opened.Load())
	}
	// pending 64 + observers 16 + the good client and the new cell: far
	// below what the attackers held.
	if maxFds.Load() > int64(base.fds+150) {
		t.Errorf("the root held %d fds during the flood (baseline %d): connections are not bounded", maxFds.Load(), base.fds)
	}
	if err := s.Stop(testCtx(t), "netcell"); err != nil {
		t.Fatal(err)
	}
	requireBackToBaseline(t, root, base)
}

// Finding 1, EMFILE: with the root's fd limit below what connections need,
// accept fails; the root backs off instead of spinning, logs a bounded
// number of lines, the owner is still served, and it recovers.
func TestAbuseAcceptEMFILE(t *testing.T) {
	s, log := startSession(t, testAllowlist)
	root := rootPidOf(t, s)
	base := usageOf(t, root)
	var old unix.Rlimit
	if err := unix.Prlimit(root, unix.RLIMIT_NOFILE, nil, &old); err != nil {
		t.Fatal(err)
	}
	low := unix.Rlimit{Cur: uint64(base.fds + 8), Max: old.Max}
	if err := unix.Prlimit(root, unix.RLIMIT_NOFILE, &low, nil); err != nil {
		t.Fatalf("lower the root's fd limit: %v", err)
	}
	// Hold the connections the root accepted until it is out of fds, and
	// keep connecting: every accept fails with EMFILE from then on.
	var held []net.Conn
	defer func() {
		for _, nc := range held {
			nc.Close()
		}
	}()
	attackStart := time.Now()
	attackEnd := attackStart.Add(3 * time.Second)
	before := usageOf(t, root)
	logBefore := strings.Count(log.String(), "umbilical accept failing")
	for time.Now().Before(attackEnd) {
		if len(held) >= 4000 {
			// The backlog is full of connections the root cannot
			// accept: every accept fails until the attack ends.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		nc, err := net.Dial("unix", filepath.Join(s.Dir(), "umbilical.sock"))
		if err != nil {
			time.Sleep(time.Millisecond)
			continue
		}
		// Each says hello as observer, so that the root keeps them.
		wire.WriteMessage(nc, wire.Request{ID: 1, Op: wire.OpHello, Version: wire.Version, Role: wire.RoleObserver})
		held = append(held, nc)
	}
	after := usageOf(t, root)
	elapsed := time.Since(attackStart)
	// The session lives on: out of fds is no reason to end it.
	if err := syscall.Kill(root, 0); err != nil {
		t.Fatalf("the root died while accept failed: %v", err)
	}
	spent := after.cpu - before.cpu
	lines := strings.Count(log.String(), "umbilical accept failing") - logBefore
	t.Logf("during %s of attack the root used %s of CPU and logged %d accept lines; %d connections held", elapsed, spent, lines, len(held))
	if !strings.Contains(log.String(), "too many open files") {
		t.Fatal("the root never hit EMFILE: the attack did not reproduce")
	}
	// Spinning on EMFILE cost 63-93 % of a core (issue 10); backing off
	// costs a few.
	if spent > elapsed/4 {
		t.Errorf("the root spent %s of CPU in %s of failing accepts: it spins", spent, elapsed)
	}
	if lines > 2 {
		t.Errorf("the root logged %d accept failures in %s: not rate-limited", lines, elapsed)
	}
	for _, nc := range held {
		nc.Close()
	}
	held = nil
	if err := unix.Prlimit(root, unix.RLIMIT_NOFILE, &old, nil); err != nil {
		t.Fatal(err)
	}
	// The attack's backlog (connections of this very process, closed on
	// our side) drains first: until then a client of this process is one
	// more of the attacker's connections, which the bounds displace. The
	// root has recovered once three rounds in a row are served.
	served := 0
	waitFor(t, "the root serves again after the attack", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c, err := wire.Dial(ctx, filepath.Join(s.Dir(), "umbilical.sock"))
		if err == nil {
			_, err = c.Hello(ctx, wire.RoleObserver, "")
			if err == nil {
				_, err = c.List(ctx)
			}
			c.Close()
		}
		if err != nil {
			served = 0
			return false
		}
		served++
		return served >= 3
	})
	stop := goodClient(t, s)
	time.Sleep(2 * time.Second)
	stop()
	requireBackToBaseline(t, root, base)
}

// Finding 4: a spawn that comes after a stop of the same key was decided
// (list shows the instance stopping) gets a new instance, never the dying
// one's socket; and after any interleaving list and the running cells agree.
func TestAbuseSpawnStopRace(t *testing.T) {
	s, _ := startSession(t, testAllowlist)
	ctx := testCtx(t)
	a, b := ownerClient(t, s), ownerClient(t, s)
	root := rootPidOf(t, s)
	base := usageOf(t, root)
	defer requireBackToBaseline(t, root, base)
	state := func() string {
		cells, err := b.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cells {
			if c.Key == "probe" {
				return c.State
			}
		}
		return ""
	}
	raced := 0
	for round := 0; round < 30; round++ {
		if _, err := a.Spawn(ctx, "probe", ""); err != nil {
			t.Fatal(err)
		}
		old := cellToken(t, s, "probe") // pids repeat across sandboxes; tokens never

		stopped := make(chan error, 1)
		go func() { stopped <- a.Stop(ctx, "probe") }()
		sawStopping := false
		for end := time.Now().Add(2 * time.Second); time.Now().Before(end); {
			st := state()
			if st == "stopping" {
				sawStopping = true
				break
			}
			if st == "" {
				break
			}
		}
		_, spawnErr := b.Spawn(ctx, "probe", "")
		if err := <-stopped; err != nil {
			t.Fatalf("round %d: stop: %v", round, err)
		}
		listed := state() != ""
		pid := ""
		if nc, err := s.Connect(ctx, "probe"); err == nil {
			out, err := nc.Call(ctx, "env", nil)
			var env []string
			if err == nil && json.Unmarshal(out, &env) == nil {
				for _, kv := range env {
					if v, ok := strings.CutPrefix(kv, "CELL_TOKEN="); ok {
						pid = v
					}
				}
			}
			nc.Close()
		}
		answers := pid != ""
		switch {
		case sawStopping:
			raced++
			if spawnErr != nil || !listed || !answers || pid == old {
				t.Fatalf("round %d: spawn after the stop was decided: %v; listed %v, answering %v, new instance %v: want a new running instance", round, spawnErr, listed, answers, answers && pid != old)
			}
		case listed != answers:
			t.Fatalf("round %d: spawn %v; listed %v but answering %v", round, spawnErr, listed, answers)
		}
		if listed {
			if err := a.Stop(ctx, "probe"); err != nil {
				t.Fatalf("round %d: stop the survivor: %v", round, err)
			}
		}
	}
	t.Logf("%d of 30 rounds spawned while the stop was visibly under way", raced)
	if raced < 5 {
		t.Fatalf("only %d rounds caught the stop under way: the race was not reproduced", raced)
	}
}

// Finding 5: a connection's rights end with its cell; one token holds a
// bounded number of connections; its rate and its denial audit are per
// token, whatever the connections.
func TestAbuseCellTokenRights(t *testing.T) {
	s, log := startSession(t, testAllowlist)
	root := rootPidOf(t, s)
	base := usageOf(t, root)
	token := cellToken(t, s, "probe")

	// The control: the token works from here, on a connection of our own.
	c, err := helloAs(t, s, wire.RoleCell, token)
	if err != nil {
		t.Fatalf("hello with the probe's token: %v", err)
	}
	// More connections buy no more: the 9th is refused.
	conns := []*wire.Client{c}
	refused := 0
	for i := 0; i < 12; i++ {
		cc, err := helloAs(t, s, wire.RoleCell, token)
		switch {
		case wire.IsCode(err, wire.CodeTooManyConnections):
			refused++
		case err != nil:
			t.Fatalf("hello %d: %v", i, err)
		default:
			conns = append(conns, cc)
		}
	}
	// The cell itself holds two (its requests and its watch).
	if len(conns)+2 > 8 || refused == 0 {
		t.Errorf("one cell token holds %d connections here and 2 in the cell, %d refused; want at most 8 in all", len(conns), refused)
	}

	// A denial flood over every connection: pipelined spawns of a cell the
	// probe may not spawn.
	const per = 400
	floodStart := time.Now()
	var wg sync.WaitGroup
	var denied, limited atomic.Int64
	for _, cc := range conns {
		wg.Add(1)
		go func(nc net.Conn) {
			defer wg.Done()
			go func() {
				for i := 0; i < per; i++ {
					wire.WriteMessage(nc, wire.Request{ID: uint64(i + 1), Op: wire.OpSpawn, Name: "outsider"})
				}
			}()
			for i := 0; i < per; i++ {
				payload, err := wire.ReadFrame(nc, wire.MaxFrame)
				if err != nil {
					t.Errorf("flood reply %d: %v", i, err)
					return
				}
				rep, _ := wire.DecodeReply(payload)
				if rep.Error == nil || rep.ID != uint64(i+1) {
					t.Errorf("flood reply %d: %+v (want an error with id %d)", i, rep, i+1)
					return
				}
				switch rep.Error.Code {
				case wire.CodeDenied:
					denied.Add(1)
				case wire.CodeRateLimited:
					limited.Add(1)
				}
			}
		}(cc.Conn())
	}
	wg.Wait()
	elapsed := time.Since(floodStart)
	t.Logf("%d connections of one token in %s: %d denied, %d rate-limited", len(conns), elapsed, denied.Load(), limited.Load())
	if limited.Load() == 0 {
		t.Error("no request was rate-limited: the budget is not shared by the token's connections")
	}
	// One budget: a burst of 200 and 100 a second (docs/umbilical.md).
	if allowed := 200 + int64(elapsed.Seconds()*100) + 10; denied.Load() > allowed {
		t.Errorf("%d denials served to one token in %s, over the %d one budget allows: the rate is per connection", denied.Load(), elapsed, allowed)
	}
	// The audit: one full record and aggregates whose counts add up.
	time.Sleep(2 * burstGapForTests)
	full, counted := 0, 0
	countRe := regexp.MustCompile(`^(\d+) more denials in a burst`)
	for _, rec := range auditRecords(log.String()) {
		if rec["decision"] != "deny" || rec["key"] != "outsider" {
			continue
		}
		if m := countRe.FindStringSubmatch(fmt.Sprint(rec["reason"])); m != nil {
			n, _ := strconv.Atoi(m[1])
			counted += n
			continue
		}
		full++
	}
	if full > 2 || int64(full+counted) != denied.Load() {
		t.Errorf("audit: %d full denial records and %d counted, for %d denials", full, counted, denied.Load())
	}

	// The rights end with the cell: stopping it closes our connections,
	// and its token no longer says hello.
	if err := s.Stop(testCtx(t), "probe"); err != nil {
		t.Fatal(err)
	}
	conns[0].Conn().SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := wire.ReadFrame(conns[0].Conn(), wire.MaxFrame); err == nil {
		// A shutting_down or unknown_token notice is fine; EOF must follow.
		_, err = wire.ReadFrame(conns[0].Conn(), wire.MaxFrame)
		if err == nil {
			t.Error("a connection of the stopped cell stayed open")
		}
	}
	if _, err := helloAs(t, s, wire.RoleCell, token); !wire.IsCode(err, wire.CodeUnknownToken) {
		t.Errorf("hello with the stopped cell's token: %v, want unknown_token", err)
	}
	for _, cc := range conns {
		cc.Close()
	}
	requireBackToBaseline(t, root, base)
}

// burstGapForTests is the root's burst gap (supervisor.burstGap), after
// which a burst's aggregate record is written.
const burstGapForTests = time.Second

// Finding 6: a cell running as a named instance spawns, stops and lists.
func TestAbuseInstanceCell(t *testing.T) {
	s, _ := startSession(t, testAllowlist)
	ctx := testCtx(t)
	o := ownerClient(t, s)
	rep, err := o.Spawn(ctx, "probe", "one")
	if err != nil || rep.Key != "probe@one" {
		t.Fatalf("spawn probe@one: %+v, %v", rep, err)
	}
	if got := callKey(t, s, "probe@one", "self", ""); got != "probe@one" {
		t.Fatalf("the instance cell's self is %q", got)
	}
	if got := callKey(t, s, "probe@one", "grow", "child"); !strings.HasPrefix(got, "ok") {
		t.Fatalf("probe@one grows child: %s", got)
	}
	cells, err := o.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	parent := ""
	for _, c := range cells {
		if c.Key == "child" {
			parent = c.Parent
		}
	}
	if parent != "probe@one" {
		t.Fatalf("child's parent is %q, want probe@one (list %+v)", parent, cells)
	}
	if got := callKey(t, s, "probe@one", "stop", "child"); got != "ok" {
		t.Fatalf("probe@one stops its child: %s", got)
	}
	if got := callKey(t, s, "probe@one", "stop", "probe@../x"); !strings.Contains(got, "bad_name") {
		t.Fatalf("stop of a malformed key: %s, want bad_name", got)
	}
}

// Finding 7: a key whose socket path cannot fit sun_path is refused up
// front with bad_name and the reason; the longest that fits works.
func TestAbuseKeyTooLongForSocket(t *testing.T) {
	s, _ := startSession(t, testAllowlist)
	ctx := testCtx(t)
	o := ownerClient(t, s)
	room := 107 - len(filepath.Join(s.Dir(), "probe@.sock"))
	if room < 1 || room >= 64 {
		t.Fatalf("the session dir %s leaves %d bytes for an instance: pick a runtime dir that makes the test meaningful", s.Dir(), room)
	}
	_, err := o.Spawn(ctx, "probe", strings.Repeat("i", room+1))
	var e *wire.Error
	if !errors.As(err, &e) || e.Code != wire.CodeBadName || !strings.Contains(e.Message, "sun_path") {
		t.Fatalf("spawn with an instance of %d bytes (name rule allows 64): %v, want bad_name naming sun_path", room+1, err)
	}
	rep, err := o.Spawn(ctx, "probe", strings.Repeat("i", room))
	if err != nil {
		t.Fatalf("the longest instance that fits (%d bytes): %v", room, err)
	}
	if len(rep.Socket) != 107 {
		t.Errorf("socket path %d bytes, want 107", len(rep.Socket))
	}
}

// Finding 8: what is left in the session dir, whatever its modes, is
// removed at teardown and by the next root after a SIGKILL. A sandboxed
// cell can no longer write there (the session dir is read-only inside every
// sandbox, which the probe checks first); a process of the user outside
// the sandbox still can, so the test leaves the litter itself.
func TestAbuseSessionDirLitter(t *testing.T) {
	for _, kill := range []bool{false, true} {
		t.Run(map[bool]string{false: "teardown", true: "root killed"}[kill], func(t *testing.T) {
			s, _ := startSession(t, testAllowlist)
			base := filepath.Dir(s.Dir())
			if got := call(t, s, "probe", "litter", "junk"); !strings.Contains(got, "read-only file system") {
				t.Fatalf("a sandboxed cell littering the session dir: %s, want a read-only file system error", got)
			}
			litter(t, filepath.Join(s.Dir(), "junk"))
			// The control: the litter resists plain removal.
			if err := os.Remove(filepath.Join(s.Dir(), "junk", "f")); !errors.Is(err, os.ErrPermission) {
				t.Fatalf("removing the litter's file: %v, want a permission error (the control shows nothing)", err)
			}
			id := s.ID()
			if kill {
				root := rootPidOf(t, s)
				syscall.Kill(root, syscall.SIGKILL)
				requireNoProcesses(t, id, root)
				next, _ := startSessionIn(t, testAllowlist)
				defer next.Close()
			} else {
				s.Close()
			}
			requireGone(t, base, id)
		})
	}
}

// Finding 9: strictly sequential traffic at 40 requests a second is never
// refused, and a refusal names its request.
func TestAbuseSequentialRate(t *testing.T) {
	s, _ := startSession(t, testAllowlist)
	ctx := testCtx(t)
	// A connection of its own: rawConn's 10 s deadline is shorter than the test.
	o, err := wire.Dial(ctx, filepath.Join(s.Dir(), "umbilical.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if _, err := o.Hello(ctx, wire.RoleOwner, ownerToken(t, s)); err != nil {
		t.Fatal(err)
	}
	tick := time.NewTicker(time.Second / 40)
	defer tick.Stop()
	// 8 s: the old per-connection limit (a burst of 100, 20 a second)
	// refused this traffic after about 5 s.
	for i := 0; i < 320; i++ {
		<-tick.C
		if _, err := o.List(ctx); err != nil {
			t.Fatalf("sequential request %d at 40/s: %v", i, err)
		}
	}
}

// litter leaves at dir what no cleanup may trip on: a dir of mode 0500
// holding a file of mode 0400 and a dir of mode 0.
func litter(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "locked"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o400); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "locked"), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
}
