// Command plainroot is the baseline of the root's cold start in make bench:
// a static Go binary that does what `cellroot serve --umbilical-fd 3` does
// before its first hello reply (take the descriptor, read the hello, answer
// it) and nothing else, then waits for the owner's EOF.
package main

import (
	"io"
	"net"
	"os"

	"github.com/cellproject/cell/wire"
)

func main() {
	f := os.NewFile(3, "umbilical")
	conn, err := net.FileConn(f)
	if err != nil {
		os.Exit(2)
	}
	payload, err := wire.ReadFrame(conn, wire.MaxFrame)
	if err != nil {
		os.Exit(1)
	}
	req, err := wire.DecodeRequest(payload)
	if err != nil || req.Op != wire.OpHello {
		os.Exit(1)
	}
	dir := os.TempDir()
	if err := wire.WriteMessage(conn, wire.Reply{ID: req.ID, OK: true, Session: "0000000000000000", RuntimeDir: dir, Token: "plain"}); err != nil {
		os.Exit(1)
	}
	io.Copy(io.Discard, conn)
}
