package podman

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/cellproject/cell/internal/cellspec"
	"github.com/containers/podman/v5/pkg/bindings/containers"
	"github.com/containers/podman/v5/pkg/errorhandling"
	"go.uber.org/zap"
)

// removeTimeout bounds the removal of a container that has exited or is
// being forced; removal of an exited container takes milliseconds.
const removeTimeout = 30 * time.Second

// Instance is one cell's container.
type Instance struct {
	b    *Launcher
	id   string
	name string
	root string
	// logPath is the container's log file, beside its root.
	logPath string
	output  io.Writer
	// Exit is Done, closed once the container has exited and has been
	// removed, and ExitStatus, "exited N" (N is the cell's exit code; 137
	// and 143 are SIGKILL and SIGTERM as Podman reports them).
	*cellspec.Exit
	end func(status string)
}

func newInstance(b *Launcher, id, name, root string, out io.Writer) *Instance {
	in := &Instance{b: b, id: id, name: name, root: root, logPath: root + ".log", output: out}
	in.Exit, in.end = cellspec.NewExit()
	return in
}

// ID is the container's name (cell-<session>-<key>), which ps and the audit
// show and `podman ps` finds.
func (in *Instance) ID() string { return in.name }

// ContainerID is Podman's id of the container.
func (in *Instance) ContainerID() string { return in.id }

// Stop sends SIGTERM to the cell and waits for the container to be gone or
// ctx to end; when ctx ends (or had ended already, which skips the SIGTERM)
// it kills the container with SIGKILL, removes it and waits. It returns nil
// once the container is gone; an error only when it could be neither killed
// nor removed. It is safe to call many times, concurrently and after the
// cell exited.
func (in *Instance) Stop(ctx context.Context) error {
	if in.Ended() {
		return nil
	}
	if ctx.Err() == nil {
		// A failed SIGTERM (the container just exited) is no reason to
		// skip the wait: the force follows if it is still there.
		in.signal(ctx, "SIGTERM")
		select {
		case <-in.Done():
			return nil
		case <-ctx.Done():
		}
	}
	fctx, cancel := context.WithTimeout(context.Background(), removeTimeout)
	defer cancel()
	if err := in.b.forceRemove(fctx, in.id); err != nil {
		return fmt.Errorf("stop container %s: %w", in.name, err)
	}
	select {
	case <-in.Done():
		return nil
	case <-fctx.Done():
		return fmt.Errorf("stop container %s: removed but its watcher did not finish: %w", in.name, fctx.Err())
	}
}

func (in *Instance) signal(ctx context.Context, sig string) {
	cctx, cancel := in.b.callCtx(ctx)
	defer cancel()
	if err := containers.Kill(cctx, in.id, new(containers.KillOptions).WithSignal(sig)); err != nil && !isNotFound(err) {
		in.b.opts.Log.Debug("signal container", zap.String("container", in.name), zap.String("signal", sig), zap.Error(err))
	}
}

// watch waits for the container to exit, records how, makes sure it is
// removed, and closes done. It ends early only when the launcher closes, and
// then only after forcing the container out.
func (in *Instance) watch() {
	status := "unknown"
	defer in.b.wg.Done()
	defer in.b.forget(in)
	defer func() { in.end(status) }()
	defer os.Remove(in.logPath)
	defer os.RemoveAll(in.root)

	for {
		wctx, cancel := in.b.callCtx(in.b.life)
		code, err := containers.Wait(wctx, in.id, new(containers.WaitOptions).WithConditions([]string{"exited", "stopped"}))
		cancel()
		if err == nil {
			status = "exited " + strconv.Itoa(int(code))
			break
		}
		if isNotFound(err) {
			// Removed (by Podman's own --rm cleanup, or a forced stop)
			// before the wait could tell how it ended.
			status = "removed"
			break
		}
		if in.b.life.Err() != nil {
			status = "stopped with the backend"
			break
		}
		// The service hiccuped: the container may still run. Retry after
		// a pause rather than declare a running cell gone.
		in.b.opts.Log.Warn("wait for container", zap.String("container", in.name), zap.Error(err))
		select {
		case <-in.b.life.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	// Remove it ourselves too: Podman's automatic removal runs
	// asynchronously in conmon's cleanup, and Done promises it is gone.
	ctx, cancel := context.WithTimeout(context.Background(), removeTimeout)
	defer cancel()
	if err := in.b.forceRemove(ctx, in.id); err != nil {
		in.b.opts.Log.Warn("remove container", zap.String("container", in.name), zap.Error(err))
	}
}

// copyLogs copies the cell's output into the instance's writer. Conmon
// writes it to the container's log file (k8s-file format) in the private
// dir, which outlives the container's removal; the file is followed until
// the container is gone and then read to its end, so that the last words
// of a cell that exits at once are not lost with the container.
func (in *Instance) copyLogs() {
	defer in.b.wg.Done()
	if in.output == nil {
		return
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var f *os.File
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	var pending, partial []byte
	buf := make([]byte, 32<<10)
	drain := func() {
		if f == nil {
			var err error
			if f, err = os.Open(in.logPath); err != nil {
				return
			}
		}
		for {
			n, err := f.Read(buf)
			pending = append(pending, buf[:n]...)
			if n == 0 || err != nil {
				break
			}
		}
		for {
			i := bytes.IndexByte(pending, '\n')
			if i < 0 {
				return
			}
			partial = in.writeLogLine(pending[:i], partial)
			pending = pending[i+1:]
		}
	}
	for {
		select {
		case <-in.Done():
			drain()
			return
		case <-in.b.life.Done():
			drain()
			return
		case <-tick.C:
			drain()
		}
	}
}

// writeLogLine writes one k8s-file line ("TIME STREAM F|P TEXT") and returns
// the partial line carried to the next one.
func (in *Instance) writeLogLine(line, partial []byte) []byte {
	f := bytes.SplitN(line, []byte(" "), 4)
	if len(f) < 3 {
		return partial
	}
	var text []byte
	if len(f) == 4 {
		text = f[3]
	}
	partial = append(partial, text...)
	if string(f[2]) == "P" {
		return partial
	}
	in.output.Write(append(partial, '\n'))
	return partial[:0]
}

// discard removes a container that never became an instance.
func (in *Instance) discard() {
	ctx, cancel := context.WithTimeout(context.Background(), removeTimeout)
	defer cancel()
	if err := in.b.forceRemove(ctx, in.id); err != nil {
		in.b.opts.Log.Warn("remove failed container", zap.String("container", in.name), zap.Error(err))
	}
	os.RemoveAll(in.root)
	os.Remove(in.logPath)
}

// isNotFound reports whether err is the service's "no such container".
func isNotFound(err error) bool {
	var em *errorhandling.ErrorModel
	if errors.As(err, &em) {
		return em.ResponseCode == http.StatusNotFound
	}
	var ev errorhandling.ErrorModel
	if errors.As(err, &ev) {
		return ev.ResponseCode == http.StatusNotFound
	}
	return false
}
