package wire

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

func frame(payload []byte) []byte {
	var b bytes.Buffer
	WriteFrame(&b, payload)
	return b.Bytes()
}

func TestReadFrame(t *testing.T) {
	oversize := make([]byte, 4)
	binary.BigEndian.PutUint32(oversize, MaxFrame+1)
	tests := []struct {
		name    string
		in      []byte
		want    []byte
		wantErr error
	}{
		{"one frame", frame([]byte(`{"id":1}`)), []byte(`{"id":1}`), nil},
		{"empty payload", frame(nil), []byte{}, nil},
		{"clean EOF", nil, nil, io.EOF},
		{"EOF inside header", []byte{0, 0}, nil, ErrTruncated},
		{"EOF inside payload", append([]byte{0, 0, 0, 9}, "abc"...), nil, ErrTruncated},
		{"oversize", oversize, nil, &OversizeError{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadFrame(bytes.NewReader(tt.in), MaxFrame)
			switch want := tt.wantErr.(type) {
			case nil:
				if err != nil || !bytes.Equal(got, tt.want) {
					t.Fatalf("ReadFrame = %q, %v; want %q", got, err, tt.want)
				}
			case *OversizeError:
				var oe *OversizeError
				if !errors.As(err, &oe) || oe.Length != MaxFrame+1 {
					t.Fatalf("err = %v, want OversizeError of %d", err, MaxFrame+1)
				}
				_ = want
			default:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
			}
		})
	}
}

func TestWriteFrameRefusesOversize(t *testing.T) {
	var oe *OversizeError
	if err := WriteFrame(io.Discard, make([]byte, MaxFrame+1)); !errors.As(err, &oe) {
		t.Fatalf("err = %v, want OversizeError", err)
	}
}

func TestDecodeRequestStrict(t *testing.T) {
	good := `{"id":3,"op":"spawn","name":"eye"}`
	req, err := DecodeRequest([]byte(good))
	if err != nil || req.ID != 3 || req.Op != OpSpawn || req.Name != "eye" {
		t.Fatalf("DecodeRequest(%s) = %+v, %v", good, req, err)
	}
	for _, bad := range []string{
		``, `null`, `[]`, `"x"`, `{`, `{"id":1}{"id":2}`, `{"id":1} x`,
		`{"id":1,"op":"spawn","mounts":["/"]}`, `{"id":-1}`, `{"id":"1"}`,
	} {
		if _, err := DecodeRequest([]byte(bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("DecodeRequest(%q) err = %v, want ErrMalformed", bad, err)
		}
	}
}

func TestErrorIsMatchesCode(t *testing.T) {
	err := error(&Error{Code: CodeDenied, Reason: "edge_denied", Message: "no"})
	if !errors.Is(err, &Error{Code: CodeDenied}) || errors.Is(err, &Error{Code: CodeBadName}) {
		t.Fatal("errors.Is does not match on the code")
	}
	if !IsCode(err, CodeDenied) {
		t.Fatal("IsCode")
	}
}

// TestClientCall runs the client against a scripted peer.
func TestClientCall(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() {
		for {
			payload, err := ReadFrame(b, MaxFrame)
			if err != nil {
				return
			}
			req, _ := DecodeRequest(payload)
			switch req.Op {
			case OpSpawn:
				WriteMessage(b, Reply{ID: req.ID, Error: &Error{Code: CodeDenied, Reason: "not_listed", Message: "no"}})
			case OpList:
				WriteMessage(b, Reply{ID: req.ID + 1, OK: true}) // a wrong id
			default:
				WriteMessage(b, Reply{ID: req.ID, OK: true, Session: "s"})
			}
		}
	}()
	c := NewClient(a)
	ctx := context.Background()
	if rep, err := c.Hello(ctx, RoleOwner, ""); err != nil || rep.Session != "s" {
		t.Fatalf("hello = %+v, %v", rep, err)
	}
	if _, err := c.Spawn(ctx, "x", ""); !IsCode(err, CodeDenied) {
		t.Fatalf("spawn err = %v, want denied", err)
	}
	if _, err := c.List(ctx); !errors.Is(err, ErrMalformed) {
		t.Fatalf("list with a mismatched reply id: err = %v, want ErrMalformed", err)
	}
}

func TestClientCallHonoursContext(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	go io.Copy(io.Discard, b) // a peer that never answers
	c := NewClient(a)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.List(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
}

func FuzzReadFrame(f *testing.F) {
	f.Add(frame([]byte(`{"id":1,"op":"hello","v":1,"role":"owner"}`)))
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 0, 0, 5, 'a'})
	f.Fuzz(func(t *testing.T, data []byte) {
		payload, err := ReadFrame(bytes.NewReader(data), MaxFrame)
		if err != nil {
			return
		}
		if len(payload) > MaxFrame || !bytes.Equal(frame(payload), data[:4+len(payload)]) {
			t.Fatalf("payload %q does not round-trip", payload)
		}
	})
}

func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"id":1,"op":"hello","v":1,"role":"cell","token":"ab"}`,
		`{"id":2,"op":"spawn","name":"retina","instance":"2"}`,
		`{"id":3,"op":"stop","name":"retina"}`,
		`{"id":4,"op":"list"}`,
		`{"id":1,"op":"spawn","name":"../x\u0000"}`,
		`{"id":1}{}`, `[]`, `{"op":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := DecodeRequest(data)
		if err != nil {
			return
		}
		// Whatever decodes must encode and decode to the same request.
		var b bytes.Buffer
		if err := WriteMessage(&b, req); err != nil {
			return // over the frame bound after re-encoding escapes
		}
		payload, err := ReadFrame(&b, MaxFrame)
		if err != nil {
			t.Fatal(err)
		}
		again, err := DecodeRequest(payload)
		if err != nil || again != req {
			t.Fatalf("round trip: %+v -> %+v, %v", req, again, err)
		}
	})
}
