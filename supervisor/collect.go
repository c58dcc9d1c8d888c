package supervisor

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/cellproject/cell/internal/rundir"
)

// Collect removes what dead sessions under base left behind: the processes
// their record names, still alive and still the same processes, then their
// dirs, records and locks. A session whose root lock is held is alive and is
// never touched. It returns the ids it collected.
func Collect(base string, log *zap.Logger) ([]string, error) {
	ids, err := rundir.Sessions(base)
	if err != nil {
		return nil, err
	}
	var collected []string
	var errs []error
	for _, id := range ids {
		lock, err := rundir.TryLock(rundir.RootLockPath(base, id))
		if errors.Is(err, rundir.ErrLocked) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		killed := killRecorded(rundir.RecordPath(base, id), log) + killNaming(filepath.Join(base, id))
		if err := rundir.RemoveAll(filepath.Join(base, id)); err != nil {
			errs = append(errs, fmt.Errorf("collect session %s: %w", id, err))
		}
		os.Remove(rundir.RecordPath(base, id))
		os.Remove(rundir.RecordTempPath(base, id))
		os.Remove(lock.Name())
		lock.Close()
		log.Info("collected dead session", zap.String("session", id), zap.Int("killed", killed))
		collected = append(collected, id)
	}
	return collected, errors.Join(errs...)
}

// killRecorded kills the process group of every recorded cell whose pid still
// belongs to the process that was recorded (same start time), so that a
// reused pid is never signalled.
func killRecorded(path string, log *zap.Logger) int {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	killed := 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 3 {
			continue
		}
		pid, err1 := strconv.Atoi(fields[0])
		start, err2 := strconv.ParseUint(fields[1], 10, 64)
		if err1 != nil || err2 != nil || pid <= 1 {
			continue
		}
		if now, err := processStartTime(pid); err != nil || now != start {
			continue
		}
		if err := killGroup(pid); err != nil {
			log.Warn("kill leftover cell", zap.String("cell", fields[2]), zap.Int("pid", pid), zap.Error(err))
			continue
		}
		killed++
	}
	return killed
}
