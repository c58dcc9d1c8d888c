package podmanhelper

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// kind is a frame's type.
type kind uint8

// Requests, root to helper.
const (
	kindOpen kind = iota + 1
	kindLaunch
	kindStop
	kindEnd
	kindCollect
	kindClose
	kindCancel
)

// Helper to root.
const (
	kindReply kind = iota + 16
	kindOutput
	kindExited
)

func (k kind) String() string {
	switch k {
	case kindOpen:
		return "open"
	case kindLaunch:
		return "launch"
	case kindStop:
		return "stop"
	case kindEnd:
		return "end"
	case kindCollect:
		return "collect"
	case kindClose:
		return "close"
	case kindCancel:
		return "cancel"
	case kindReply:
		return "reply"
	case kindOutput:
		return "output"
	case kindExited:
		return "exited"
	}
	return fmt.Sprintf("kind %d", uint8(k))
}

// ProtocolVersion is what open carries; a helper of another version refuses.
const ProtocolVersion = 1

// MaxFrame bounds a frame's length field: a spec with its environment is a
// few KiB, and output is sent in chunks of maxOutputChunk.
const MaxFrame = 1 << 20

// maxOutputChunk is the largest output payload one frame carries.
const maxOutputChunk = 32 << 10

// headerLen is kind and id, the bytes every length covers.
const headerLen = 5

// ErrFrame is wrapped by every error about a malformed frame or payload.
var ErrFrame = errors.New("podmanhelper: malformed frame")

// frame is one decoded frame.
type frame struct {
	kind    kind
	id      uint32
	payload []byte
}

// channel is the framing of one connection: the buffered reader, the
// serialised writer and the length cap. Both sides only call recv and send.
type channel struct {
	r *bufio.Reader
	w io.Writer
	// wmu serialises send: a frame goes out in one Write, whole.
	wmu sync.Mutex
	// hdr is recv's header buffer; recv is called from one goroutine.
	hdr [4 + headerLen]byte
}

func newChannel(rw io.ReadWriter) *channel {
	return &channel{r: bufio.NewReader(rw), w: rw}
}

// recv reads the next frame. io.EOF means the peer closed between frames;
// a frame cut short is io.ErrUnexpectedEOF; a length out of bounds wraps
// ErrFrame. The payload is the frame's own: it is never reused.
func (c *channel) recv() (frame, error) {
	if _, err := io.ReadFull(c.r, c.hdr[:4]); err != nil {
		return frame{}, err
	}
	n := binary.BigEndian.Uint32(c.hdr[:4])
	if n < headerLen || n > MaxFrame {
		return frame{}, fmt.Errorf("%w: length %d outside [%d, %d]", ErrFrame, n, headerLen, MaxFrame)
	}
	if _, err := io.ReadFull(c.r, c.hdr[4:]); err != nil {
		return frame{}, unexpected(err)
	}
	f := frame{kind: kind(c.hdr[4]), id: binary.BigEndian.Uint32(c.hdr[5:])}
	if n > headerLen {
		f.payload = make([]byte, n-headerLen)
		if _, err := io.ReadFull(c.r, f.payload); err != nil {
			return frame{}, unexpected(err)
		}
	}
	return f, nil
}

// unexpected turns an EOF inside a frame into io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// send writes one frame. It is safe for concurrent use.
func (c *channel) send(k kind, id uint32, payload []byte) error {
	if len(payload) > MaxFrame-headerLen {
		return fmt.Errorf("%w: %s payload of %d bytes is over the bound", ErrFrame, k, len(payload))
	}
	buf := make([]byte, 4+headerLen, 4+headerLen+len(payload))
	binary.BigEndian.PutUint32(buf, uint32(headerLen+len(payload)))
	buf[4] = byte(k)
	binary.BigEndian.PutUint32(buf[5:], id)
	buf = append(buf, payload...)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.w.Write(buf); err != nil {
		return fmt.Errorf("podmanhelper: send %s: %w", k, err)
	}
	return nil
}
