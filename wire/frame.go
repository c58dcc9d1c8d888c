package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// MaxFrame is the largest frame payload either side accepts, in bytes. It is
// far above any legitimate message so that only a broken or hostile peer hits
// it, and small enough that a flood of maximal frames costs the root little.
const MaxFrame = 64 << 10

// headerLen is the size of the big-endian length prefix.
const headerLen = 4

// ErrTruncated means the peer closed the stream inside a frame.
var ErrTruncated = errors.New("wire: truncated frame")

// OversizeError is returned for a frame whose declared length exceeds the
// bound. The stream cannot be resynchronised after it, so the connection must
// be closed.
type OversizeError struct {
	Length uint32
	Max    int
}

func (e *OversizeError) Error() string {
	return fmt.Sprintf("wire: frame of %d bytes exceeds the limit of %d", e.Length, e.Max)
}

// WriteFrame writes payload as one frame. It writes header and payload in a
// single call so that concurrent writers serialised by the caller never
// interleave partial frames.
func WriteFrame(w io.Writer, payload []byte) error {
	if len(payload) > MaxFrame {
		return &OversizeError{Length: uint32(len(payload)), Max: MaxFrame}
	}
	buf := make([]byte, headerLen+len(payload))
	binary.BigEndian.PutUint32(buf, uint32(len(payload)))
	copy(buf[headerLen:], payload)
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("wire: write frame: %w", err)
	}
	return nil
}

// ReadFrame reads one frame of at most max bytes. It returns io.EOF only when
// the stream ends cleanly between frames, ErrTruncated when it ends inside
// one, and *OversizeError before reading a payload over max.
func ReadFrame(r io.Reader, max int) ([]byte, error) {
	var hdr [headerLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, ErrTruncated
		}
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if uint64(n) > uint64(max) {
		return nil, &OversizeError{Length: n, Max: max}
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, ErrTruncated
		}
		return nil, err
	}
	return payload, nil
}
