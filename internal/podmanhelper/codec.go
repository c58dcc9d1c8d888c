package podmanhelper

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/cellproject/cell/internal/cellspec"
	"github.com/cellproject/cell/quota"
)

// enc appends payload fields.
type enc struct{ b []byte }

func (e *enc) u8(v uint8)   { e.b = append(e.b, v) }
func (e *enc) u32(v uint32) { e.b = binary.BigEndian.AppendUint32(e.b, v) }
func (e *enc) u64(v uint64) { e.b = binary.BigEndian.AppendUint64(e.b, v) }

func (e *enc) bool(v bool) {
	if v {
		e.u8(1)
	} else {
		e.u8(0)
	}
}

func (e *enc) str(s string) {
	e.u32(uint32(len(s)))
	e.b = append(e.b, s...)
}

func (e *enc) strs(l []string) {
	e.u32(uint32(len(l)))
	for _, s := range l {
		e.str(s)
	}
}

// dec reads payload fields; the first error sticks and every later read
// returns zero values.
type dec struct {
	b   []byte
	err error
}

func (d *dec) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrFrame, fmt.Sprintf(format, args...))
	}
}

func (d *dec) take(n int, what string) []byte {
	if d.err != nil {
		return nil
	}
	if n > len(d.b) {
		d.fail("%s: %d bytes needed, %d left", what, n, len(d.b))
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *dec) u8(what string) uint8 {
	if v := d.take(1, what); v != nil {
		return v[0]
	}
	return 0
}

func (d *dec) u32(what string) uint32 {
	if v := d.take(4, what); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (d *dec) u64(what string) uint64 {
	if v := d.take(8, what); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (d *dec) bool(what string) bool {
	switch v := d.u8(what); v {
	case 0:
		return false
	case 1:
		return true
	default:
		d.fail("%s: bool byte %d", what, v)
		return false
	}
}

func (d *dec) str(what string) string {
	n := d.u32(what)
	return string(d.take(int(n), what))
}

func (d *dec) strs(what string) []string {
	n := d.u32(what)
	// Each string takes at least its 4-byte length: a count the payload
	// cannot hold is refused before anything is allocated for it.
	if d.err == nil && uint64(n)*4 > uint64(len(d.b)) {
		d.fail("%s: %d strings in %d bytes", what, n, len(d.b))
	}
	if d.err != nil || n == 0 {
		return nil
	}
	l := make([]string, n)
	for i := range l {
		l[i] = d.str(what)
	}
	return l
}

// done reports the first error, or trailing bytes.
func (d *dec) done() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	return d.err
}

// encodeSpec is the launch payload: name, key, session, session dir, exec,
// args, backend, network, memory, cpu (float64 bits), pids, limits
// enforced, env. Output stays in the root: it comes back as output frames.
func encodeSpec(s cellspec.Spec) []byte {
	var e enc
	e.str(s.Name)
	e.str(s.Key)
	e.str(s.Session)
	e.str(s.SessionDir)
	e.str(s.Exec)
	e.strs(s.Args)
	e.str(string(s.Backend))
	e.bool(s.Network)
	e.u64(s.Limits.MemoryBytes)
	e.u64(math.Float64bits(s.Limits.CPU))
	e.u64(s.Limits.Pids)
	e.bool(s.LimitsEnforced)
	e.strs(s.Env)
	return e.b
}

func decodeSpec(p []byte) (cellspec.Spec, error) {
	d := dec{b: p}
	var s cellspec.Spec
	s.Name = d.str("name")
	s.Key = d.str("key")
	s.Session = d.str("session")
	s.SessionDir = d.str("session dir")
	s.Exec = d.str("exec")
	s.Args = d.strs("args")
	s.Backend = cellspec.Backend(d.str("backend"))
	s.Network = d.bool("network")
	s.Limits = quota.Limits{
		MemoryBytes: d.u64("memory"),
		CPU:         math.Float64frombits(d.u64("cpu")),
		Pids:        d.u64("pids"),
	}
	s.LimitsEnforced = d.bool("limits enforced")
	s.Env = d.strs("env")
	if err := d.done(); err != nil {
		return cellspec.Spec{}, fmt.Errorf("launch: %w", err)
	}
	return s, nil
}

// Info is what the helper's open tells about the Podman service in use.
type Info struct {
	Socket, Version string
	// Own is true when the helper started the service itself because no
	// podman.socket of the user answered.
	Own bool
}

func (i Info) String() string {
	s := fmt.Sprintf("API %s on %s", i.Version, i.Socket)
	if i.Own {
		s += " (a service of the helper's own: no podman.socket of the user answered)"
	}
	return s
}

func encodeInfo(i Info) []byte {
	var e enc
	e.str(i.Socket)
	e.str(i.Version)
	e.bool(i.Own)
	return e.b
}

func decodeInfo(p []byte) (Info, error) {
	d := dec{b: p}
	i := Info{Socket: d.str("socket"), Version: d.str("version"), Own: d.bool("own")}
	return i, d.done()
}

// encodeReply is a reply: ok, then the result or the error text.
func encodeReply(result []byte, err error) []byte {
	var e enc
	if err != nil {
		e.bool(false)
		e.str(err.Error())
		return e.b
	}
	e.bool(true)
	e.b = append(e.b, result...)
	return e.b
}

// decodeReply splits a reply into the result and the helper's error.
func decodeReply(p []byte) (result []byte, helperErr string, err error) {
	d := dec{b: p}
	if d.bool("ok") {
		return d.b, "", d.err
	}
	msg := d.str("error")
	if err := d.done(); err != nil {
		return nil, "", err
	}
	return nil, msg, nil
}

func encodeStr(s string) []byte {
	var e enc
	e.str(s)
	return e.b
}

func decodeStr(p []byte, what string) (string, error) {
	d := dec{b: p}
	s := d.str(what)
	return s, d.done()
}

func encodeStrs(l []string) []byte {
	var e enc
	e.strs(l)
	return e.b
}

func decodeStrs(p []byte, what string) ([]string, error) {
	d := dec{b: p}
	l := d.strs(what)
	return l, d.done()
}

func encodeU32(v uint32) []byte {
	var e enc
	e.u32(v)
	return e.b
}

func decodeU32(p []byte, what string) (uint32, error) {
	d := dec{b: p}
	v := d.u32(what)
	return v, d.done()
}

// decodeEmpty checks that a payload that carries nothing is empty.
func decodeEmpty(p []byte) error {
	d := dec{b: p}
	return d.done()
}
