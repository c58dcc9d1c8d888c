//go:build integration || vmlab

package integration

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cellproject/cell/cell"
	"github.com/cellproject/cell/wire"
)

// rawConn opens an umbilical connection that says nothing yet.
func rawConn(t *testing.T, s *cell.Session) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", filepath.Join(s.Dir(), "umbilical.sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// ownerClient opens a second owner connection with the owner token.
func ownerClient(t *testing.T, s *cell.Session) *wire.Client {
	t.Helper()
	c := wire.NewClient(rawConn(t, s))
	token := ""
	for _, kv := range s.Env() {
		if v, ok := strings.CutPrefix(kv, "CELL_TOKEN="); ok {
			token = v
		}
	}
	if _, err := c.Hello(testCtx(t), wire.RoleOwner, token); err != nil {
		t.Fatalf("hello as owner: %v", err)
	}
	return c
}

// requireClosed reads until the root closes the connection, allowing for
// one error reply first.
func requireClosed(t *testing.T, c net.Conn, what string) {
	t.Helper()
	for i := 0; i < 2; i++ {
		if _, err := wire.ReadFrame(c, wire.MaxFrame); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, wire.ErrTruncated) || isReset(err) {
				return
			}
			t.Fatalf("%s: reading: %v (want the root to close the connection)", what, err)
		}
	}
	t.Fatalf("%s: the connection stayed open", what)
}

func isReset(err error) bool { return strings.Contains(err.Error(), "connection reset") }

// readError reads one reply and returns its error code.
func readError(t *testing.T, c net.Conn) wire.Code {
	t.Helper()
	payload, err := wire.ReadFrame(c, wire.MaxFrame)
	if err != nil {
		t.Fatalf("read reply: %v", err)
	}
	rep, err := wire.DecodeReply(payload)
	if err != nil {
		t.Fatalf("decode reply: %v", err)
	}
	if rep.OK || rep.Error == nil {
		t.Fatalf("expected an error reply, got %+v", rep)
	}
	return rep.Error.Code
}

func TestHostileUmbilical(t *testing.T) {
	s, _ := startSession(t, testAllowlist)
	ctx := testCtx(t)

	t.Run("garbage", func(t *testing.T) {
		c := rawConn(t, s)
		c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		requireClosed(t, c, "HTTP garbage")
	})
	t.Run("oversize frame", func(t *testing.T) {
		c := rawConn(t, s)
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], wire.MaxFrame+1)
		c.Write(hdr[:])
		requireClosed(t, c, "oversize frame")
	})
	t.Run("truncated frame", func(t *testing.T) {
		c := rawConn(t, s)
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], 100)
		c.Write(append(hdr[:], []byte(`{"op":`)...))
		c.(*net.UnixConn).CloseWrite()
		requireClosed(t, c, "truncated frame")
	})
	t.Run("not hello first", func(t *testing.T) {
		c := rawConn(t, s)
		wire.WriteMessage(c, wire.Request{ID: 1, Op: wire.OpSpawn, Name: "probe"})
		if code := readError(t, c); code != wire.CodeHelloRequired {
			t.Errorf("code %s, want %s", code, wire.CodeHelloRequired)
		}
		requireClosed(t, c, "spawn before hello")
	})
	t.Run("bad version", func(t *testing.T) {
		c := rawConn(t, s)
		wire.WriteMessage(c, wire.Request{ID: 1, Op: wire.OpHello, Version: 99, Role: wire.RoleObserver})
		if code := readError(t, c); code != wire.CodeBadVersion {
			t.Errorf("code %s, want %s", code, wire.CodeBadVersion)
		}
	})
	t.Run("unknown token", func(t *testing.T) {
		for _, role := range []wire.Role{wire.RoleCell, wire.RoleOwner} {
			c := rawConn(t, s)
			wire.WriteMessage(c, wire.Request{ID: 1, Op: wire.OpHello, Version: wire.Version, Role: role, Token: strings.Repeat("ab", 32)})
			if code := readError(t, c); code != wire.CodeUnknownToken {
				t.Errorf("%s: code %s, want %s", role, code, wire.CodeUnknownToken)
			}
			requireClosed(t, c, "unknown token")
		}
	})
	t.Run("silent connection", func(t *testing.T) {
		c := rawConn(t, s)
		requireClosed(t, c, "a connection that never says hello")
	})
	t.Run("unknown op and bad json", func(t *testing.T) {
		cl := ownerClient(t, s)
		_, err := cl.Call(ctx, wire.Request{Op: "format-disk"})
		if !wire.IsCode(err, wire.CodeUnknownOp) {
			t.Errorf("unknown op: %v", err)
		}
		c := cl.Conn()
		wire.WriteFrame(c, []byte(`{"id":5,"op":"spawn","name":"probe","flags":"--privileged"}`))
		if code := readError(t, c); code != wire.CodeBadFrame {
			t.Errorf("unknown field: code %s, want %s", code, wire.CodeBadFrame)
		}
		wire.WriteFrame(c, []byte("\x00\xff\xfe not json"))
		if code := readError(t, c); code != wire.CodeBadFrame {
			t.Errorf("binary garbage in a frame: code %s, want %s", code, wire.CodeBadFrame)
		}
		// The connection still serves after the bad frames.
		if _, err := cl.List(ctx); err != nil {
			t.Errorf("list after bad frames: %v", err)
		}
	})
	t.Run("hostile names", func(t *testing.T) {
		cl := ownerClient(t, s)
		for _, name := range []string{"../probe", "a/b", "..", ".", "pro\x00be", strings.Repeat("a", 65), "", "-x", "probe\n"} {
			_, err := cl.Spawn(ctx, name, "")
			if !wire.IsCode(err, wire.CodeBadName) {
				t.Errorf("spawn %q: %v, want bad_name", name, err)
			}
		}
		if _, err := cl.Spawn(ctx, "probe", "../x"); !wire.IsCode(err, wire.CodeBadName) {
			t.Errorf("spawn with instance ../x: %v, want bad_name", err)
		}
	})
	t.Run("observer may only list", func(t *testing.T) {
		cl := wire.NewClient(rawConn(t, s))
		if _, err := cl.Hello(ctx, wire.RoleObserver, ""); err != nil {
			t.Fatal(err)
		}
		if _, err := cl.Spawn(ctx, "probe", ""); !wire.IsCode(err, wire.CodeNotPermitted) {
			t.Errorf("observer spawn: %v, want not_permitted", err)
		}
		if _, err := cl.List(ctx); err != nil {
			t.Errorf("observer list: %v", err)
		}
	})
	t.Run("flood", func(t *testing.T) {
		c := ownerClient(t, s).Conn()
		// Pipeline far more denied spawns than the rate allows, without
		// waiting for replies; the root must answer each, refusing the excess.
		const n = 300
		go func() {
			var buf bytes.Buffer
			for i := 0; i < n; i++ {
				payload := []byte(`{"id":` + strconv.Itoa(i+100) + `,"op":"spawn","name":"unlisted"}`)
				var hdr [4]byte
				binary.BigEndian.PutUint32(hdr[:], uint32(len(payload)))
				buf.Write(hdr[:])
				buf.Write(payload)
			}
			c.Write(buf.Bytes())
		}()
		limited := 0
		for i := 0; i < n; i++ {
			code := readError(t, c)
			if code == wire.CodeRateLimited {
				limited++
			} else if code != wire.CodeDenied {
				t.Fatalf("flood reply %d: code %s", i, code)
			}
		}
		if limited == 0 {
			t.Errorf("%d pipelined requests were all served: no rate limit", n)
		}
	})

	// Through all of it the root kept serving everyone else.
	conn, err := s.Grow(ctx, "probe")
	if err != nil {
		t.Fatalf("grow after the hostile input: %v", err)
	}
	defer conn.Close()
	if got, err := conn.Call(ctx, "pid", nil); err != nil || len(got) == 0 {
		t.Fatalf("probe after the hostile input: %q %v", got, err)
	}
}
