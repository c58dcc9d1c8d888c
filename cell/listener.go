package cell

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"

	"github.com/cellproject/cell/internal/rundir"
	"github.com/cellproject/cell/wire"
)

// listen gets the cell key's listening socket. Under a root it is the one
// the root bound in the session dir before launching this cell, handed over
// on the umbilical (wire.OpListener, docs/listener.md): taking it is what
// tells the root this cell serves. When the root holds none for this process
// (a root older than the handover answers unknown_op; a process it did not
// launch, not_found) the cell binds its own socket, under its
// single-instance lock, as cells did before. release undoes what listen did
// to the session dir; the caller closes ln.
func listen(ctx context.Context, s *Session, key string, log *slog.Logger) (ln *net.UnixListener, release func(), err error) {
	err = s.request(ctx, func(c *wire.Client) error {
		var err error
		ln, err = c.Listener(ctx)
		return err
	})
	switch {
	case err == nil:
		return ln, func() {}, nil
	case !wire.IsCode(err, wire.CodeUnknownOp) && !wire.IsCode(err, wire.CodeNotFound):
		return nil, nil, fmt.Errorf("take listener: %w", err)
	}
	log.Debug("the root holds no listener for this cell; binding its own", "err", err)
	return bindOwn(s.Dir(), key, log)
}

// bindOwn binds <dir>/<key>.sock itself, holding <key>.lock so that only one
// process serves the key.
func bindOwn(dir, key string, log *slog.Logger) (*net.UnixListener, func(), error) {
	lockPath := rundir.LockPath(dir, key)
	lock, err := rundir.TryLock(lockPath)
	if err != nil {
		if errors.Is(err, rundir.ErrLocked) {
			return nil, nil, fmt.Errorf("%w (%w)", ErrAlreadyRunning, err)
		}
		return nil, nil, err
	}
	// Remove the lock file before releasing the lock: once released, a new
	// instance may already have created its own file at the same path.
	unlock := func() {
		if err := os.Remove(lockPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
			log.Warn("remove lock file", "err", err)
		}
		lock.Close()
	}
	sockPath := rundir.SocketPath(dir, key)
	// Only the lock holder may remove the socket: without the lock it could
	// be a live instance's.
	if err := os.Remove(sockPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		unlock()
		return nil, nil, fmt.Errorf("remove stale socket: %w", err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sockPath, Net: "unix"})
	if err != nil {
		unlock()
		return nil, nil, err
	}
	// Removal is ours to order (socket before lock), not the listener's.
	ln.SetUnlinkOnClose(false)
	release := func() {
		if err := os.Remove(sockPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
			log.Warn("remove socket", "err", err)
		}
		unlock()
	}
	// The session dir is 0700 already; this keeps the socket private even
	// if it were not.
	if err := os.Chmod(sockPath, 0o600); err != nil {
		ln.Close()
		release()
		return nil, nil, err
	}
	return ln, release, nil
}

// Upgrade asks the root to replace the running cell key with a new instance
// on the same listener, from the binary its allowlist entry names now: the
// new instance takes the socket, the old one drains. Only the owner may. On
// an error (a *wire.Error: wire.CodeNotFound, wire.CodeUpgradeFailed) the
// old instance keeps serving.
func (s *Session) Upgrade(ctx context.Context, key string) error {
	err := s.request(ctx, func(c *wire.Client) error {
		_, err := c.Upgrade(ctx, key)
		return err
	})
	if err != nil {
		return fmt.Errorf("upgrade %s: %w", key, err)
	}
	return nil
}

// AwaitFailure blocks until a cell of the session fails past its restart
// limit, and returns that failure (a *wire.Error with wire.CodeCellFailed
// naming the cell and its last exit status), or until ctx or the session
// ends. It uses a connection of its own, so the session's other requests go
// on meanwhile. Only the owner may.
func (s *Session) AwaitFailure(ctx context.Context) error {
	c, _, err := s.dial(ctx)
	if err != nil {
		return fmt.Errorf("await failure: %w", err)
	}
	defer c.Close()
	_, err = c.Call(ctx, wire.Request{Op: wire.OpAwaitFailure})
	return err
}
