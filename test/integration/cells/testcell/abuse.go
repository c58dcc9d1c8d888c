package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cellproject/cell/cell"
)

// abuse runs the probes of test/integration/abuse_test.go: what a hostile or
// instance cell does through its session.
func abuse(ctx context.Context, sess *cell.Session, method, arg string) ([]byte, error) {
	switch method {
	case "self":
		// An instance cell learns its key from its hello only.
		return []byte(sess.Self()), nil
	case "stop":
		return result(sess.Stop(ctx, arg)), nil
	case "litter":
		// Leaves in the session dir what no later cleanup may trip on: a
		// dir of mode 0500 holding a file and a dir of mode 0.
		dir := filepath.Join(os.Getenv("CELL_RUNTIME_DIR"), arg)
		if err := os.MkdirAll(filepath.Join(dir, "locked"), 0o700); err != nil {
			return result(err), nil
		}
		if err := os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o400); err != nil {
			return result(err), nil
		}
		if err := os.Chmod(filepath.Join(dir, "locked"), 0); err != nil {
			return result(err), nil
		}
		return result(os.Chmod(dir, 0o500)), nil
	case "flood":
		return flood(ctx, arg)
	}
	return nil, cell.UnknownMethod(method)
}

// flood opens n connections to the umbilical ("n,hold"), every other one
// saying hello as observer, holds them for hold and reports how many it had
// open: the attack of issue 10's first finding, from inside a sandbox.
func flood(ctx context.Context, arg string) ([]byte, error) {
	nStr, holdStr, _ := strings.Cut(arg, ",")
	n, err := strconv.Atoi(nStr)
	if err != nil {
		return nil, err
	}
	hold, err := time.ParseDuration(holdStr)
	if err != nil {
		return nil, err
	}
	path := os.Getenv("CELL_UMBILICAL")
	hello := []byte(`{"id":1,"op":"hello","v":1,"role":"observer"}`)
	frame := append([]byte{0, 0, 0, byte(len(hello))}, hello...)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	end := time.Now().Add(hold)
	for i := 0; len(conns) < n && time.Now().Before(end) && ctx.Err() == nil; i++ {
		c, err := net.Dial("unix", path)
		if err != nil {
			time.Sleep(time.Millisecond) // the backlog is full: the root is behind
			continue
		}
		if i%2 == 0 {
			c.Write(frame)
		}
		conns = append(conns, c)
	}
	opened := len(conns)
	select {
	case <-time.After(time.Until(end)):
	case <-ctx.Done():
	}
	return []byte(strconv.Itoa(opened)), nil
}
