package sessionroot

import (
	"context"
	"fmt"
	"net"
	"os"

	"github.com/coreos/go-systemd/v22/activation"
)

// Owner says where the owner's umbilical comes from; exactly one is set.
type Owner struct {
	// FD is an inherited descriptor of a connected unix socket (what the
	// SDK passes); negative means unset.
	FD int
	// Listen is a socket path whose first accepted connection is the owner.
	Listen string
	// Activated takes the one connection systemd accepted (Accept=yes).
	Activated bool
}

// conn returns the owner's umbilical: the inherited descriptor, the
// connection systemd accepted for this instance, or the first connection
// accepted on the listen path.
func (o Owner) conn(ctx context.Context) (net.Conn, error) {
	switch {
	case o.Activated:
		files := activation.Files(true)
		if len(files) != 1 {
			for _, f := range files {
				f.Close()
			}
			return nil, fmt.Errorf("socket activation passed %d descriptors; the socket unit must use Accept=yes and pass exactly the accepted connection", len(files))
		}
		return fileConn(files[0], "activation")
	case o.FD >= 0:
		f := os.NewFile(uintptr(o.FD), "umbilical")
		if f == nil {
			return nil, fmt.Errorf("umbilical fd %d is not open", o.FD)
		}
		return fileConn(f, fmt.Sprintf("fd %d", o.FD))
	case o.Listen == "":
		return nil, fmt.Errorf("no source for the owner's umbilical")
	}
	ln, err := net.Listen("unix", o.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen for the owner: %w", err)
	}
	defer ln.Close()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	conn, err := ln.Accept()
	if err != nil {
		return nil, fmt.Errorf("accept the owner on %s: %w", o.Listen, err)
	}
	return conn, nil
}

// fileConn turns an inherited descriptor into the owner's connection; it
// must be a connected unix socket.
func fileConn(f *os.File, what string) (net.Conn, error) {
	defer f.Close()
	conn, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("umbilical %s: %w", what, err)
	}
	if _, ok := conn.(*net.UnixConn); !ok {
		conn.Close()
		return nil, fmt.Errorf("umbilical %s is not a unix socket", what)
	}
	return conn, nil
}
