//go:build integration || vmlab

package integration

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cellproject/cell/cell"
	"github.com/cellproject/cell/wire"
)

// conformanceAllowlist adds to the test allowlist a cell that exits at
// once, one that never becomes ready, one that starts only once (@ONCE@ is
// its marker file) and one that fails past its restart limit at its
// second crash.
const conformanceAllowlist = testAllowlist + `
[cell.broken]
exec = "/bin/false"
backend = "process"

[cell.once]
exec = "@BIN@/testcell"
args = ["-once", "@ONCE@"]
backend = "process"

[cell.crasher]
exec = "@BIN@/testcell"
backend = "process"
restart = "on-failure"
restart_limit = 1
restart_window = 60

[cell.sleeper]
exec = "/bin/sleep"
args = ["30"]
backend = "process"
`

// errorRow is one row of docs/umbilical.md's error table.
type errorRow struct {
	code   wire.Code
	closed bool // the "connection" column says closed
}

// docErrorTable reads the error table from docs/umbilical.md, which the
// test runs against: the page is the contract.
func docErrorTable(t *testing.T) []errorRow {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "docs", "umbilical.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []errorRow
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "## "):
			in = line == "## Error codes"
		case in && strings.HasPrefix(line, "| `"):
			cols := strings.Split(line, "|")
			if len(cols) < 4 {
				t.Fatalf("error table row %q", line)
			}
			rows = append(rows, errorRow{
				code:   wire.Code(strings.Trim(strings.TrimSpace(cols[1]), "`")),
				closed: strings.HasPrefix(strings.TrimSpace(cols[3]), "closed"),
			})
		}
	}
	if len(rows) == 0 {
		t.Fatal("docs/umbilical.md has no error table")
	}
	return rows
}

// provoke makes the root send code on a fresh connection and returns that
// connection, its reply read.
type provoke func(t *testing.T, s *cell.Session) net.Conn

// hello says hello on a raw connection as role and reads the reply.
func helloRaw(t *testing.T, s *cell.Session, role wire.Role, token string) net.Conn {
	t.Helper()
	c := rawConn(t, s)
	wire.WriteMessage(c, wire.Request{ID: 1, Op: wire.OpHello, Version: wire.Version, Role: role, Token: token})
	payload, err := wire.ReadFrame(c, wire.MaxFrame)
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := wire.DecodeReply(payload); err != nil || !rep.OK {
		t.Fatalf("hello as %s: %+v %v", role, rep, err)
	}
	return c
}

// expectCode reads one reply on c and checks its code and id.
func expectCode(t *testing.T, c net.Conn, code wire.Code, id uint64) {
	t.Helper()
	payload, err := wire.ReadFrame(c, wire.MaxFrame)
	if err != nil {
		t.Fatalf("want %s: read: %v", code, err)
	}
	rep, err := wire.DecodeReply(payload)
	if err != nil || rep.OK || rep.Error == nil || rep.Error.Code != code || rep.ID != id {
		t.Fatalf("want %s with id %d, got %+v (%v)", code, id, rep, err)
	}
}

func conformanceCases(t *testing.T) map[wire.Code]provoke {
	send := func(c net.Conn, raw string) { wire.WriteFrame(c, []byte(raw)) }
	owner := func(t *testing.T, s *cell.Session) net.Conn { return helloRaw(t, s, wire.RoleOwner, ownerToken(t, s)) }
	return map[wire.Code]provoke{
		wire.CodeBadFrame: func(t *testing.T, s *cell.Session) net.Conn {
			c := owner(t, s)
			// Each of these alone is what encoding/json would forgive.
			for _, raw := range []string{`{"id":2,"OP":"list"}`, `{"id":2,"op":"list","op":"list"}`, "{\"id\":2,\"op\":\"spawn\",\"name\":\"\xff\"}", `{"op":"list"}`} {
				send(c, raw)
				expectCode(t, c, wire.CodeBadFrame, 0)
			}
			send(c, `{"id":2,"op":"list","name":"x"}`)
			return c
		},
		wire.CodeBadVersion: func(t *testing.T, s *cell.Session) net.Conn {
			c := rawConn(t, s)
			send(c, `{"id":1,"op":"hello","v":2,"role":"observer"}`)
			return c
		},
		wire.CodeHelloRequired: func(t *testing.T, s *cell.Session) net.Conn {
			c := rawConn(t, s)
			send(c, `{"id":1,"op":"list"}`)
			return c
		},
		wire.CodeUnknownOp: func(t *testing.T, s *cell.Session) net.Conn {
			c := owner(t, s)
			send(c, `{"id":2,"op":"format-disk"}`)
			return c
		},
		wire.CodeUnknownToken: func(t *testing.T, s *cell.Session) net.Conn {
			c := rawConn(t, s)
			send(c, `{"id":1,"op":"hello","v":1,"role":"cell","token":"`+strings.Repeat("0", 64)+`"}`)
			return c
		},
		wire.CodeBadName: func(t *testing.T, s *cell.Session) net.Conn {
			c := owner(t, s)
			send(c, `{"id":2,"op":"spawn","name":"../x"}`)
			return c
		},
		wire.CodeDenied: func(t *testing.T, s *cell.Session) net.Conn {
			c := owner(t, s)
			send(c, `{"id":2,"op":"spawn","name":"nosuch"}`)
			return c
		},
		wire.CodeSpawnFailed: func(t *testing.T, s *cell.Session) net.Conn {
			c := owner(t, s)
			send(c, `{"id":2,"op":"spawn","name":"broken"}`)
			return c
		},
		wire.CodeUpgradeFailed: func(t *testing.T, s *cell.Session) net.Conn {
			// The first instance starts; its upgrade's new one exits at once.
			if _, err := s.Grow(testCtx(t), "once"); err != nil {
				t.Fatalf("grow once: %v", err)
			}
			c := owner(t, s)
			send(c, `{"id":2,"op":"upgrade","name":"once"}`)
			return c
		},
		wire.CodeCellFailed: func(t *testing.T, s *cell.Session) net.Conn {
			// One crash is restarted; the second is past the limit.
			for i := 0; i < 2; i++ {
				conn, err := s.Grow(testCtx(t), "crasher")
				if err != nil {
					t.Fatalf("grow crasher (crash %d): %v", i, err)
				}
				conn.Call(testCtx(t), "crash", nil) // the cell exits under the call
				conn.Close()
			}
			c := owner(t, s)
			send(c, `{"id":2,"op":"await_failure"}`)
			return c
		},
		wire.CodeNotFound: func(t *testing.T, s *cell.Session) net.Conn {
			c := owner(t, s)
			send(c, `{"id":2,"op":"stop","name":"nosuch"}`)
			return c
		},
		wire.CodeNotPermitted: func(t *testing.T, s *cell.Session) net.Conn {
			c := helloRaw(t, s, wire.RoleObserver, "")
			send(c, `{"id":2,"op":"spawn","name":"probe"}`)
			return c
		},
		wire.CodeRateLimited: func(t *testing.T, s *cell.Session) net.Conn {
			c := helloRaw(t, s, wire.RoleObserver, "")
			const n = 400
			go func() {
				for i := 0; i < n; i++ {
					wire.WriteMessage(c, wire.Request{ID: uint64(i + 2), Op: wire.OpList})
				}
			}()
			var limited []byte
			for i := 0; i < n; i++ {
				payload, err := wire.ReadFrame(c, wire.MaxFrame)
				if err != nil {
					t.Fatal(err)
				}
				rep, _ := wire.DecodeReply(payload)
				if rep.ID != uint64(i+2) {
					t.Fatalf("pipelined reply %d has id %d, want %d: a refusal must name its request", i, rep.ID, i+2)
				}
				if rep.Error != nil && rep.Error.Code == wire.CodeRateLimited && limited == nil {
					limited = payload
				}
			}
			if limited == nil {
				t.Fatalf("%d pipelined lists, none rate_limited", n)
			}
			return &prefixed{Conn: c, first: limited}
		},
		wire.CodeTooManyConnections: func(t *testing.T, s *cell.Session) net.Conn {
			for i := 0; i < 40; i++ {
				c := rawConn(t, s)
				wire.WriteMessage(c, wire.Request{ID: 1, Op: wire.OpHello, Version: wire.Version, Role: wire.RoleOwner, Token: ownerToken(t, s)})
				payload, err := wire.ReadFrame(c, wire.MaxFrame)
				if err != nil {
					t.Fatal(err)
				}
				if rep, _ := wire.DecodeReply(payload); rep.Error != nil {
					return &prefixed{Conn: c, first: payload}
				}
			}
			t.Fatal("40 owner-token connections, none refused")
			return nil
		},
		wire.CodeShuttingDown: func(t *testing.T, s *cell.Session) net.Conn {
			// A session of its own, ended under an idle connection.
			s2, _ := startSessionIn(t, conformanceAllowlist)
			c := helloRaw(t, s2, wire.RoleObserver, "")
			go s2.Close()
			return c
		},
	}
}

// prefixed is a connection whose first frame was already read: ReadFrame
// gets it back once before the stream.
type prefixed struct {
	net.Conn
	first []byte
	buf   []byte
}

func (p *prefixed) Read(b []byte) (int, error) {
	if p.first != nil {
		var hdr [4]byte
		hdr[0], hdr[1], hdr[2], hdr[3] = byte(len(p.first)>>24), byte(len(p.first)>>16), byte(len(p.first)>>8), byte(len(p.first))
		p.buf = append(hdr[:], p.first...)
		p.first = nil
	}
	if len(p.buf) > 0 {
		n := copy(b, p.buf)
		p.buf = p.buf[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}

// TestUmbilicalConformance walks docs/umbilical.md's error table row by row
// against a live root: each code is provoked, its reply read, and the
// connection checked to be open or closed as the row says.
func TestUmbilicalConformance(t *testing.T) {
	once := filepath.Join(t.TempDir(), "started")
	s, _ := startSession(t, strings.ReplaceAll(conformanceAllowlist, "@ONCE@", once))
	cases := conformanceCases(t)
	rows := docErrorTable(t)
	seen := map[wire.Code]bool{}
	for _, row := range rows {
		seen[row.code] = true
		t.Run(string(row.code), func(t *testing.T) {
			p := cases[row.code]
			if p == nil {
				t.Fatalf("the page lists %s, which this test cannot provoke: add a case", row.code)
			}
			c := p(t, s)
			payload, err := wire.ReadFrame(c, wire.MaxFrame)
			if err != nil {
				t.Fatalf("no reply: %v", err)
			}
			rep, err := wire.DecodeReply(payload)
			if err != nil || rep.OK || rep.Error == nil || rep.Error.Code != row.code {
				t.Fatalf("reply %+v (%v), want %s", rep, err, row.code)
			}
			if row.closed {
				requireClosed(t, c, string(row.code))
				return
			}
			wire.WriteMessage(c, wire.Request{ID: 77, Op: wire.OpList})
			if payload, err := wire.ReadFrame(c, wire.MaxFrame); err != nil {
				t.Fatalf("the page says the connection stays open after %s: %v", row.code, err)
			} else if rep, _ := wire.DecodeReply(payload); rep.ID != 77 {
				t.Fatalf("after %s: reply id %d, want 77", row.code, rep.ID)
			}
		})
	}
	for code := range cases {
		if !seen[code] {
			t.Errorf("the root sends %s, which the page's error table does not list", code)
		}
	}
}

// TestShutdownAnswersInFlight: a spawn waiting for readiness when the
// session ends gets shutting_down with its own id, then the connection
// closes (the page's "Ending" section).
func TestShutdownAnswersInFlight(t *testing.T) {
	s, _ := startSession(t, conformanceAllowlist)
	c := helloRaw(t, s, wire.RoleOwner, ownerToken(t, s))
	wire.WriteMessage(c, wire.Request{ID: 42, Op: wire.OpSpawn, Name: "sleeper"})
	// The spawn is in flight once the cell is listed as starting.
	waitFor(t, "sleeper is starting", func() bool {
		cells, err := s.List(testCtx(t))
		return err == nil && len(cells) == 1 && cells[0].State == "starting"
	})
	go s.Close()
	expectCode(t, c, wire.CodeShuttingDown, 42)
	requireClosed(t, c, "after shutting_down")
}
