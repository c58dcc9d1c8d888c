package app

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watchSettle is how long Watch waits after a change for more changes
// before it rebuilds: an editor's save is several events.
const watchSettle = 300 * time.Millisecond

// Watch rebuilds the app's cells whenever a file under its cells/ dir
// changes, and upgrades in place (Session.Upgrade) each running cell whose
// source changed, printing to opts.Progress what it did. A failed build or
// upgrade is printed and leaves the old instance serving. It returns when
// ctx ends (nil) or the watch itself fails.
func (r *Running) Watch(ctx context.Context, opts Options) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch %s: %w", r.App.Dir, err)
	}
	defer w.Close()
	root := filepath.Join(r.App.Dir, CellsDir)
	if err := addTree(w, root); err != nil {
		return fmt.Errorf("watch %s: %w", root, err)
	}
	built := map[string]string{}
	for _, b := range r.Builds {
		built[b.Name] = b.SourceSHA256
	}
	progress(opts.Progress, "watch: watching %s for changes", root)

	var settle <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-w.Errors:
			return fmt.Errorf("watch %s: %w", root, err)
		case ev := <-w.Events:
			if ev.Has(fsnotify.Create) {
				addTree(w, ev.Name) // a new subdir is watched too; a file is skipped
			}
			settle = time.After(watchSettle)
		case <-settle:
			settle = nil
			r.rebuild(ctx, opts, built)
		}
	}
}

// rebuild builds the app and upgrades the running cells whose source hash
// changed since built, which it updates.
func (r *Running) rebuild(ctx context.Context, opts Options, built map[string]string) {
	_, res, err := Build(ctx, r.App.Dir, opts)
	if err != nil {
		progress(opts.Progress, "watch: build failed, running cells keep serving: %v", err)
		return
	}
	running := map[string]bool{}
	if cells, err := r.List(ctx); err == nil {
		for _, c := range cells {
			running[c.Key] = true
		}
	}
	for _, b := range res {
		if built[b.Name] == b.SourceSHA256 {
			continue
		}
		if !running[b.Name] {
			built[b.Name] = b.SourceSHA256
			progress(opts.Progress, "watch: %s rebuilt; not running, its next start uses the new build", b.Name)
			continue
		}
		if err := r.Upgrade(ctx, b.Name); err != nil {
			// Left unrecorded: the next change tries this cell again.
			progress(opts.Progress, "watch: %s rebuilt, upgrade failed, the old instance keeps serving: %v", b.Name, err)
			continue
		}
		built[b.Name] = b.SourceSHA256
		progress(opts.Progress, "watch: %s source changed: rebuilt and upgraded in place", b.Name)
	}
}

// addTree watches dir and every dir below it; a path that is not a dir is
// left alone.
func addTree(w *fsnotify.Watcher, dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		return w.Add(p)
	})
}
