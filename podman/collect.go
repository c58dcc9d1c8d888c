package podman

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containers/podman/v5/pkg/bindings/containers"
	"go.uber.org/zap"

	"github.com/cellproject/cell/internal/rundir"
)

// Containers lists the ids and labels of every container, in any state,
// that carries LabelSession and this backend's LabelBase.
func (b *Launcher) Containers(ctx context.Context) (map[string]map[string]string, error) {
	cctx, cancel := b.callCtx(ctx)
	defer cancel()
	list, err := containers.List(cctx, new(containers.ListOptions).WithAll(true).WithFilters(map[string][]string{
		"label": {LabelSession, LabelBase + "=" + b.opts.Base},
	}))
	if err != nil {
		return nil, fmt.Errorf("podman: list containers: %w", err)
	}
	out := make(map[string]map[string]string, len(list))
	for _, c := range list {
		// The filter is the service's; check again, since removing a
		// container that is not ours is the one thing never to do.
		if c.Labels[LabelSession] == "" || c.Labels[LabelBase] != b.opts.Base {
			continue
		}
		out[c.ID] = c.Labels
	}
	return out, nil
}

// removeWhere force-removes our containers whose labels match, and returns
// how many it removed.
func (b *Launcher) removeWhere(ctx context.Context, match func(map[string]string) bool) (int, error) {
	list, err := b.Containers(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for id, labels := range list {
		if !match(labels) {
			continue
		}
		err := b.removeRetrying(ctx, id)
		if err != nil {
			errs = append(errs, fmt.Errorf("podman: remove container %s of session %s: %w", id, labels[LabelSession], err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// removeRetrying force-removes container id, trying again a few times: a
// container whose runtime died under it (runc init killed, a create cut
// short) first fails with "container state improper" until Podman has
// synced its state, and then goes. A container already gone is no error.
func (b *Launcher) removeRetrying(ctx context.Context, id string) error {
	var err error
	for attempt := range 4 {
		if attempt > 0 {
			select {
			case <-time.After(time.Duration(attempt) * 250 * time.Millisecond):
			case <-ctx.Done():
				return errors.Join(err, ctx.Err())
			}
		}
		if err = b.forceRemove(ctx, id); err == nil {
			return nil
		}
	}
	return err
}

// CollectDead removes every container of this runtime dir whose session is
// not live, in every state: first the conmon and runc init a root killed
// mid-create left (they hold the container), then the containers Podman
// knows, then storage-only ones that only `podman ps --external` shows; and
// the private dirs of backends that died without closing. It returns the
// sessions it removed containers of.
func (b *Launcher) CollectDead(ctx context.Context, live func(session string) bool) ([]string, error) {
	killed, killErr := killLeftoverConmons(b.opts.Base, live)
	if killed > 0 {
		b.opts.Log.Info("killed conmon and runc processes of dead sessions", zap.Int("processes", killed))
	}
	dead := map[string]bool{}
	external, extErr := b.removeExternal(ctx, live)
	for _, s := range external {
		dead[s] = true
	}
	ofDead := func(labels map[string]string) bool {
		s := labels[LabelSession]
		if live(s) {
			return false
		}
		dead[s] = true
		return true
	}
	_, err := b.removeWhere(ctx, ofDead)
	if killed > 0 || len(dead) > 0 {
		// A dead root's own service may have been finishing a create or a
		// start when it died: once more after a moment, for what it wrote
		// after the first pass looked.
		select {
		case <-time.After(settleAfterCollect):
			_, again := b.removeWhere(ctx, ofDead)
			err = errors.Join(err, again)
		case <-ctx.Done():
		}
	}
	sessions := make([]string, 0, len(dead))
	for s := range dead {
		sessions = append(sessions, s)
	}
	if len(sessions) > 0 {
		b.opts.Log.Info("removed containers of dead sessions", zap.Strings("sessions", sessions))
	}
	return sessions, errors.Join(killErr, extErr, err, b.collectPrivateDirs())
}

// removeExternal removes the storage-only containers of dead sessions, which
// Podman lists only with External: a create cut short left them in storage
// without a database record. Having no labels to go by, they are known by
// ContainerName's pattern, which names the session; a storage-only container
// of a live session (one being created right now) is left alone.
func (b *Launcher) removeExternal(ctx context.Context, live func(string) bool) ([]string, error) {
	cctx, cancel := b.callCtx(ctx)
	defer cancel()
	list, err := containers.List(cctx, new(containers.ListOptions).WithAll(true).WithExternal(true))
	if err != nil {
		return nil, fmt.Errorf("podman: list external containers: %w", err)
	}
	var sessions []string
	var errs []error
	for _, c := range list {
		if c.State != "storage" {
			continue // in the database: removeWhere goes by its labels
		}
		session := ""
		for _, n := range c.Names {
			if s, ok := sessionOfName(n); ok {
				session = s
			}
		}
		if session == "" || live(session) {
			continue
		}
		if err := b.removeRetrying(ctx, c.ID); err != nil {
			errs = append(errs, fmt.Errorf("podman: remove container %s of dead session %s: %w", c.ID, session, err))
			continue
		}
		sessions = append(sessions, session)
	}
	return sessions, errors.Join(errs...)
}

// settleAfterCollect is how long CollectDead waits before its second pass.
const settleAfterCollect = 500 * time.Millisecond

// collectPrivateDirs removes the private dirs whose backend is gone: their
// lock is free.
func (b *Launcher) collectPrivateDirs() error {
	entries, err := os.ReadDir(b.opts.Base)
	if err != nil {
		return fmt.Errorf("podman: list runtime dir: %w", err)
	}
	var errs []error
	for _, e := range entries {
		dir := filepath.Join(b.opts.Base, e.Name())
		if !e.IsDir() || !strings.HasPrefix(e.Name(), rundir.PodmanPrivatePrefix) || dir == b.priv {
			continue
		}
		lock, dead, err := rundir.DeadPrivate(dir)
		if err != nil {
			errs = append(errs, err)
		}
		if !dead {
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, fmt.Errorf("podman: remove dead private dir: %w", err))
		}
		if lock != nil {
			lock.Close()
		}
	}
	return errors.Join(errs...)
}
