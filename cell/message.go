package cell

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// MaxBody is the largest request or reply body, in bytes. The body travels
// base64-encoded (4/3 the size) inside a frame of at most wire.MaxFrame bytes;
// this bound leaves room for the encoding and the other fields.
const MaxBody = 46 << 10

// maxMethod bounds a method name, like a cell name, so that a peer cannot make
// the other side log or hold arbitrarily long strings.
const maxMethod = 64

// message is one frame's JSON object, request or reply; see the package doc.
type message struct {
	ID     uint64        `json:"id"`
	Method string        `json:"method,omitempty"`
	Body   []byte        `json:"body,omitempty"`
	Error  *messageError `json:"error,omitempty"`
}

type messageError struct {
	Code    string `json:"code,omitempty"`
	Message string `json:"message"`
}

// decodeMessage parses one payload strictly and checks the rules every
// message obeys. Whether it must be a request or a reply is checked by the
// caller, which knows which side it is on.
func decodeMessage(payload []byte) (message, error) {
	trimmed := bytes.TrimSpace(payload)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return message{}, fmt.Errorf("%w: not a JSON object", ErrMalformed)
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	var m message
	if err := dec.Decode(&m); err != nil {
		return message{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return message{}, fmt.Errorf("%w: trailing data after the message", ErrMalformed)
	}
	switch {
	case m.ID == 0:
		return message{}, fmt.Errorf("%w: id 0", ErrMalformed)
	case len(m.Method) > maxMethod:
		return message{}, fmt.Errorf("%w: method of %d bytes", ErrMalformed, len(m.Method))
	case len(m.Body) > MaxBody:
		return message{}, fmt.Errorf("%w: body of %d bytes", ErrMalformed, len(m.Body))
	case m.Method != "" && m.Error != nil:
		return message{}, fmt.Errorf("%w: request with an error", ErrMalformed)
	case m.Error != nil && len(m.Body) > 0:
		return message{}, fmt.Errorf("%w: reply with both body and error", ErrMalformed)
	}
	return m, nil
}

// decodeRequest is decodeMessage for the serving side.
func decodeRequest(payload []byte) (message, error) {
	m, err := decodeMessage(payload)
	if err != nil {
		return message{}, err
	}
	if m.Method == "" {
		return message{}, fmt.Errorf("%w: request %d without a method", ErrMalformed, m.ID)
	}
	return m, nil
}

// decodeReply is decodeMessage for the calling side.
func decodeReply(payload []byte) (message, error) {
	m, err := decodeMessage(payload)
	if err != nil {
		return message{}, err
	}
	if m.Method != "" {
		return message{}, fmt.Errorf("%w: reply %d with a method", ErrMalformed, m.ID)
	}
	return m, nil
}

func encodeMessage(m message) ([]byte, error) {
	if len(m.Body) > MaxBody {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, len(m.Body), MaxBody)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("cell: encode message: %w", err)
	}
	return b, nil
}
