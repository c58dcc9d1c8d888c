package cell

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The synapse format (docs/synapse.md): a 16-byte preface each way when a
// connection opens, then frames of a 16-byte header and raw payload bytes.
// Everything is little-endian.

// protoVersion is the one synapse version this SDK speaks.
const protoVersion = 1

// prefaceLen is the size of the client's and of the server's preface.
const prefaceLen = 16

// prefaceMagic opens both prefaces, so that a peer speaking something else
// (the umbilical's JSON frames, HTTP) is told apart at the first read.
var prefaceMagic = [4]byte{'S', 'Y', 'N', 'P'}

// Feature bits of a preface.
const (
	// featJunction in the client's preface asks to move the connection to a
	// gap junction; in the server's it accepts (see docs/synapse.md).
	featJunction uint32 = 1 << 0
)

// headerLen is the size of a frame header.
const headerLen = 16

// frameKind is a frame's type byte.
type frameKind uint8

const (
	kindRequest frameKind = 1 // client: a call; name is the method
	kindReply   frameKind = 2 // server: a call's reply body
	kindError   frameKind = 3 // server: a call's error; name is the code, payload rest the message
	kindNotify  frameKind = 4 // client: a one-way message, id 0, never answered
	kindData    frameKind = 5 // client: the next chunk of a streamed request body
	kindGoAway  frameKind = 6 // server: send no new calls on this connection
)

// Frame flags.
const (
	// flagStream on a request says its body continues in data frames.
	flagStream uint8 = 1 << 0
	// flagEnd on a data frame closes the stream.
	flagEnd uint8 = 1 << 1
)

// DefaultMaxBody is the default bound on a body in one frame (request,
// reply or stream chunk). Larger payloads go in streams ([Conn.Stream]).
const DefaultMaxBody = 16 << 20

// minBody is the least bound a side announces: error messages must fit.
const minBody = maxErrorMessage

// ownBound is the bound this side announces for a configured n (0: the
// default); it is at least minBody and at most DefaultMaxBody.
func ownBound(n int) int {
	if n <= 0 {
		return DefaultMaxBody
	}
	return min(max(n, minBody), DefaultMaxBody)
}

// peerBound is the largest body this side sends to a peer that announced n.
func peerBound(n uint32) int { return int(min(max(n, minBody), DefaultMaxBody)) }

// maxMethod bounds a method name (and an error code), like a cell name, so
// that a peer cannot make the other side log or hold arbitrarily long strings.
const maxMethod = 64

// maxErrorMessage bounds an error reply's message.
const maxErrorMessage = 4 << 10

// header is a decoded frame header.
type header struct {
	size    uint32 // payload bytes after the header: name then body
	kind    frameKind
	flags   uint8
	nameLen uint16 // leading payload bytes that are the method or code
	id      uint64
}

func (h header) put(b []byte) {
	binary.LittleEndian.PutUint32(b[0:4], h.size)
	b[4] = byte(h.kind)
	b[5] = h.flags
	binary.LittleEndian.PutUint16(b[6:8], h.nameLen)
	binary.LittleEndian.PutUint64(b[8:16], h.id)
}

// parseHeader decodes and checks a header against the rules that need no
// state: known kind and flags, name bounds, a payload within maxBody (plus
// the name). What must follow which frame is the reader's to check.
func parseHeader(b []byte, maxBody int) (header, error) {
	h := header{
		size:    binary.LittleEndian.Uint32(b[0:4]),
		kind:    frameKind(b[4]),
		flags:   b[5],
		nameLen: binary.LittleEndian.Uint16(b[6:8]),
		id:      binary.LittleEndian.Uint64(b[8:16]),
	}
	if uint32(h.nameLen) > h.size {
		return header{}, fmt.Errorf("%w: name of %d bytes in a payload of %d", ErrMalformed, h.nameLen, h.size)
	}
	if body := uint64(h.size - uint32(h.nameLen)); body > uint64(maxBody) {
		return header{}, &OversizeError{Length: body, Max: maxBody}
	}
	switch h.kind {
	case kindRequest, kindNotify:
		if h.nameLen == 0 || h.nameLen > maxMethod {
			return header{}, fmt.Errorf("%w: method of %d bytes", ErrMalformed, h.nameLen)
		}
		if (h.kind == kindRequest) != (h.id != 0) {
			return header{}, fmt.Errorf("%w: kind %d with id %d", ErrMalformed, h.kind, h.id)
		}
		if h.flags&^flagStream != 0 || (h.kind == kindNotify && h.flags != 0) {
			return header{}, fmt.Errorf("%w: flags %#x on kind %d", ErrMalformed, h.flags, h.kind)
		}
	case kindReply, kindData, kindGoAway:
		allowed := uint8(0)
		if h.kind == kindData {
			allowed = flagEnd
		}
		if h.nameLen != 0 || h.flags&^allowed != 0 {
			return header{}, fmt.Errorf("%w: name or flags on kind %d", ErrMalformed, h.kind)
		}
		if h.kind != kindGoAway && h.id == 0 {
			return header{}, fmt.Errorf("%w: kind %d with id 0", ErrMalformed, h.kind)
		}
		if h.kind == kindGoAway && h.size != 0 {
			return header{}, fmt.Errorf("%w: goaway with a payload", ErrMalformed)
		}
	case kindError:
		if h.nameLen > maxMethod || h.flags != 0 || h.id == 0 {
			return header{}, fmt.Errorf("%w: error frame header", ErrMalformed)
		}
		if h.size-uint32(h.nameLen) > maxErrorMessage {
			return header{}, fmt.Errorf("%w: error message of %d bytes", ErrMalformed, h.size-uint32(h.nameLen))
		}
	default:
		return header{}, fmt.Errorf("%w: unknown frame kind %d", ErrMalformed, h.kind)
	}
	return h, nil
}

// frame is one decoded frame; name and body are private copies, unless
// lent says that body is a slice of the reader's buffer, valid until its
// next read.
type frame struct {
	header
	name string
	body []byte
	lent bool
}

// readChunk is the most a reader allocates for a body before that much of
// it has arrived; past it the buffer doubles as bytes come, so that a peer
// that declares a large body and sends a little makes the reader hold
// little, while an honest large body costs amortised linear copying.
const readChunk = 1 << 20

// readBuffer is a frameReader's buffer: many small frames per read call.
const readBuffer = 64 << 10

// frameReader decodes frames through a buffer of its own. A failed read
// keeps what arrived, so the next call resumes the same frame: that lets a
// read deadline move the reading from one goroutine to another mid-frame.
// Bodies larger than the buffer are read straight into their slice.
type frameReader struct {
	maxBody int
	buf     []byte
	lo, hi  int // buf[lo:hi] has arrived and is not decoded yet

	// name is the last name decoded: a peer calls few methods, so most
	// frames repeat it, and share its string instead of allocating one.
	name string

	// lend: a request's or notification's body that arrives whole in buf
	// is lent as a slice of buf, not copied (frame.lent).
	lend bool

	// A frame whose body is being read past the buffer.
	part   frame
	inBody bool
	got    int // body bytes of part read so far
}

func newFrameReader(maxBody int) *frameReader {
	return &frameReader{maxBody: maxBody, buf: make([]byte, readBuffer)}
}

// complete reports whether a whole frame is buffered, so that the next call
// of next needs no read.
func (fr *frameReader) complete() bool {
	n := fr.hi - fr.lo
	if fr.inBody || n < headerLen {
		return false
	}
	return uint64(n-headerLen) >= uint64(binary.LittleEndian.Uint32(fr.buf[fr.lo:]))
}

// next decodes the next frame from r, allocating at most about twice what
// arrived (and at least readChunk), never more than maxBody plus a name. A
// clean end between frames is io.EOF; one inside a frame ErrTruncated.
func (fr *frameReader) next(r io.Reader) (frame, error) {
	if !fr.inBody {
		if err := fr.fill(r, headerLen); err != nil {
			return frame{}, err
		}
		h, err := parseHeader(fr.buf[fr.lo:fr.lo+headerLen], fr.maxBody)
		if err != nil {
			return frame{}, err
		}
		n := int(h.size) - int(h.nameLen)
		lead := headerLen + int(h.nameLen)
		if n <= len(fr.buf)-lead {
			lead += n // small: all of it through the buffer
		}
		if err := fr.fill(r, lead); err != nil {
			return frame{}, err
		}
		p := fr.buf[fr.lo+headerLen : fr.lo+lead]
		f := frame{header: h}
		if nb := p[:h.nameLen]; len(nb) > 0 {
			if string(nb) != fr.name {
				fr.name = string(nb)
			}
			f.name = fr.name
		}
		fr.lo += lead
		if len(p) > int(h.nameLen) || n == 0 {
			switch {
			case n == 0:
			case fr.lend && (h.kind == kindNotify || h.kind == kindRequest && h.flags&flagStream == 0):
				f.body, f.lent = p[h.nameLen:len(p):len(p)], true
			default:
				f.body = newBody(n)
				copy(f.body, p[h.nameLen:])
			}
			return f, nil
		}
		f.body = newBody(min(n, readChunk))
		fr.got = copy(f.body, fr.buf[fr.lo:fr.hi])
		fr.lo += fr.got
		fr.part, fr.inBody = f, true
	}
	n := int(fr.part.size) - int(fr.part.nameLen)
	for fr.got < n {
		if fr.got == len(fr.part.body) {
			grown := make([]byte, min(n, 2*len(fr.part.body)))
			copy(grown, fr.part.body)
			Recycle(fr.part.body)
			fr.part.body = grown
		}
		k, err := r.Read(fr.part.body[fr.got:])
		fr.got += k
		if err != nil && fr.got < n {
			return frame{}, truncated(err)
		}
	}
	f := fr.part
	fr.part, fr.inBody, fr.got = frame{}, false, 0
	return f, nil
}

// fill reads until n bytes are buffered, moving the unread ones to the
// front first when n would not fit behind them.
func (fr *frameReader) fill(r io.Reader, n int) error {
	for fr.hi-fr.lo < n {
		if fr.lo == fr.hi {
			fr.lo, fr.hi = 0, 0
		} else if len(fr.buf)-fr.lo < n {
			fr.hi = copy(fr.buf, fr.buf[fr.lo:fr.hi])
			fr.lo = 0
		}
		k, err := r.Read(fr.buf[fr.hi:])
		fr.hi += k
		if err != nil && fr.hi-fr.lo < n {
			if fr.hi > fr.lo {
				return truncated(err)
			}
			return err
		}
	}
	return nil
}

func truncated(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return ErrTruncated
	}
	return err
}

// preface is a decoded preface: a client's (minimum and maximum version) or
// a server's (chosen version in both; 0 refuses).
type preface struct {
	minVer, maxVer uint8
	features       uint32
	maxBody        uint32 // the largest body the sender accepts in one frame
}

func (p preface) bytes() [prefaceLen]byte {
	var b [prefaceLen]byte
	copy(b[:4], prefaceMagic[:])
	b[4], b[5] = p.minVer, p.maxVer
	binary.LittleEndian.PutUint32(b[8:12], p.features)
	binary.LittleEndian.PutUint32(b[12:16], p.maxBody)
	return b
}

func parsePreface(b []byte) (preface, error) {
	if len(b) != prefaceLen || [4]byte(b[:4]) != prefaceMagic {
		return preface{}, fmt.Errorf("%w: not a synapse preface", ErrMalformed)
	}
	if b[6] != 0 || b[7] != 0 {
		return preface{}, fmt.Errorf("%w: reserved preface bytes set", ErrMalformed)
	}
	p := preface{minVer: b[4], maxVer: b[5], features: binary.LittleEndian.Uint32(b[8:12]), maxBody: binary.LittleEndian.Uint32(b[12:16])}
	if p.minVer > p.maxVer {
		return preface{}, fmt.Errorf("%w: preface versions %d..%d", ErrMalformed, p.minVer, p.maxVer)
	}
	return p, nil
}
