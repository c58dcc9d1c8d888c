package cellspec

import "sync"

// Exit is how a launched cell ends, the part every backend's instance type
// shares: a Done channel closed once, after the exit status is known. Embed
// it; only the holder of the end function that NewExit returns can end it.
type Exit struct {
	done   chan struct{}
	once   sync.Once
	mu     sync.Mutex // guards status
	status string
}

// NewExit returns a running instance's Exit and the function that ends it
// with a status; calls after the first do nothing.
func NewExit() (*Exit, func(status string)) {
	e := &Exit{done: make(chan struct{})}
	return e, e.end
}

func (e *Exit) end(status string) {
	e.once.Do(func() {
		e.mu.Lock()
		e.status = status
		e.mu.Unlock()
		close(e.done)
	})
}

// Done is closed once the cell has ended (what that takes is the backend's
// to say: reaped, container removed, ...).
func (e *Exit) Done() <-chan struct{} { return e.done }

// ExitStatus is how the cell ended ("exited N", "signal NAME", or the
// backend's reason) once Done is closed, and "" before.
func (e *Exit) ExitStatus() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.status
}

// Ended reports whether Done is closed: a Stop of an ended cell has
// nothing to do.
func (e *Exit) Ended() bool {
	select {
	case <-e.done:
		return true
	default:
		return false
	}
}
