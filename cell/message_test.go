package cell

import (
	"bytes"
	"errors"
	"testing"
)

func TestDecodeMessage(t *testing.T) {
	for _, tc := range []struct {
		in      string
		request bool // decode as a request rather than a reply
		ok      bool
	}{
		{`{"id":1,"method":"see","body":"aGk="}`, true, true},
		{`{"id":1,"method":"see"}`, true, true},
		{` {"id":18446744073709551615,"method":"see"} `, true, true},
		{`{"id":1,"body":"cmVk"}`, false, true},
		{`{"id":1,"error":{"code":"x","message":"m"}}`, false, true},
		{`{"id":1,"error":{"message":"m"}}`, false, true},
		{`{"id":1}`, false, true},
		{`{"id":1}`, true, false},                      // request without a method
		{`{"id":1,"method":"see"}`, false, false},      // reply with a method
		{`{"id":0,"method":"see"}`, true, false},       // id 0
		{`{"method":"see"}`, true, false},              // no id
		{`{"id":1,"method":"see","x":1}`, true, false}, // unknown field
		{`{"id":1,"method":"see"}{}`, true, false},     // trailing data
		{`{"id":1,"method":"see"} x`, true, false},     // trailing garbage
		{`{"id":1,"body":"!!"}`, false, false},         // body not base64
		{`{"id":1,"body":"aGk=","error":{"message":"m"}}`, false, false},
		{`{"id":1,"method":"a","error":{"message":"m"}}`, true, false},
		{`{"id":-1,"method":"see"}`, true, false},
		{`{"id":1.5,"method":"see"}`, true, false},
		{`{"id":1,"error":{"message":"m","y":2}}`, false, false},
		{`[{"id":1}]`, false, false},
		{`null`, false, false},
		{``, false, false},
		{`{"id":1,"method":"` + string(bytes.Repeat([]byte("m"), maxMethod+1)) + `"}`, true, false},
	} {
		decode := decodeReply
		if tc.request {
			decode = decodeRequest
		}
		_, err := decode([]byte(tc.in))
		if (err == nil) != tc.ok {
			t.Errorf("decode(%s) err = %v, want ok=%v", tc.in, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Errorf("decode(%s) err = %v, not ErrMalformed", tc.in, err)
		}
	}
}

func TestMaxBodyFitsAFrame(t *testing.T) {
	m := message{ID: ^uint64(0), Method: string(bytes.Repeat([]byte("m"), maxMethod)), Body: make([]byte, MaxBody)}
	b, err := encodeMessage(m)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 64<<10 {
		t.Fatalf("largest request is %d bytes, over the frame bound", len(b))
	}
	e := message{ID: ^uint64(0), Error: toMessageError(errors.New(string(bytes.Repeat([]byte{0}, 2*maxErrorMessage))))}
	if b, err = encodeMessage(e); err != nil || len(b) > 64<<10 {
		t.Fatalf("largest error reply is %d bytes (%v), over the frame bound", len(b), err)
	}
}

// FuzzDecodeMessage checks that decoding never panics and that whatever it
// accepts survives an encode/decode round trip unchanged.
func FuzzDecodeMessage(f *testing.F) {
	f.Fuzz(func(t *testing.T, payload []byte) {
		m, err := decodeMessage(payload)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		b, err := encodeMessage(m)
		if err != nil {
			t.Fatalf("re-encode of an accepted message: %v", err)
		}
		m2, err := decodeMessage(b)
		if err != nil {
			t.Fatalf("decode of re-encoded %s: %v", b, err)
		}
		if m.ID != m2.ID || m.Method != m2.Method || !bytes.Equal(m.Body, m2.Body) || (m.Error == nil) != (m2.Error == nil) ||
			(m.Error != nil && *m.Error != *m2.Error) {
			t.Fatalf("round trip changed %+v into %+v", m, m2)
		}
	})
}
