package wire

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
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

// TestDecodeRequestRefusesWhatJSONForgives covers what encoding/json alone
// accepts: folded keys, duplicates, invalid UTF-8, missing required fields.
func TestDecodeRequestRefusesWhatJSONForgives(t *testing.T) {
	for _, bad := range []string{
		`{"ID":1,"op":"list"}`,
		`{"id":1,"OP":"list"}`,
		`{"id":1,"op":"hello","v":1,"role":"cell","to\u212Aen":"x"}`,
		"{\"id\":1,\"op\":\"hello\",\"v\":1,\"role\":\"cell\",\"to\u212Aen\":\"x\"}",
		`{"id":1,"op":"list","op":"spawn"}`,
		`{"id":1,"id":2,"op":"list"}`,
		"{\"id\":1,\"op\":\"spawn\",\"name\":\"a\xffb\"}",
		`{"id":1,"op":"spawn","name":"a\ud800b"}`,
		`{"id":1,"op":"spawn","name":"a\udc00b"}`,
		`{"id":1,"op":"spawn","name":"\ud800\u0041"}`,
		`{"op":"list"}`,
		`{"id":0,"op":"list"}`,
		`{"id":1}`,
		`{"id":1,"op":""}`,
		`{"id":1,"op":"hello","role":"observer"}`,
		`{"id":1,"op":"hello","v":0,"role":"observer"}`,
		`{"id":1,"op":"list","name":"x"}`,
		`{"id":1,"op":"stop","name":"x","instance":"y"}`,
		`{"id":1,"op":"spawn","name":"x","v":1}`,
	} {
		if req, err := DecodeRequest([]byte(bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("DecodeRequest(%q) = %+v, %v; want ErrMalformed", bad, req, err)
		}
	}
	for _, good := range []string{
		`{"id":1,"op":"spawn","name":"a\ud83d\ude00"}`, // a valid surrogate pair
		`{"id":1,"op":"hello","v":99,"role":"observer"}`,
		`{"id":1,"op":"format-disk","name":"x"}`, // unknown op: unknown_op, not bad_frame
		`{"id":1,"op":"list","cursor":"a"}`,
		` {"op":"stop","id":18446744073709551615,"name":"x@y"} `,
	} {
		if _, err := DecodeRequest([]byte(good)); err != nil {
			t.Errorf("DecodeRequest(%q): %v", good, err)
		}
	}
}

func TestDecodeReplyStrict(t *testing.T) {
	if _, err := DecodeReply([]byte(`{"id":1,"ok":true,"OK":false}`)); !errors.Is(err, ErrMalformed) {
		t.Errorf("folded duplicate: %v", err)
	}
	rep, err := DecodeReply([]byte(`{"id":1,"ok":true,"cells":[{"key":"a","name":"a","parent":"","depth":1,"backend":"bwrap","id":"1","state":"running","started":"2026-01-02T03:04:05Z"}],"next":"a"}`))
	if err != nil || len(rep.Cells) != 1 || rep.Next != "a" {
		t.Fatalf("list page: %+v, %v", rep, err)
	}
}

// TestClientListFollowsPages checks that List concatenates pages and refuses
// a cursor that does not advance.
func TestClientListFollowsPages(t *testing.T) {
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
			switch req.Cursor {
			case "":
				WriteMessage(b, Reply{ID: req.ID, OK: true, Cells: []CellInfo{{Key: "a"}}, Next: "a"})
			case "a":
				WriteMessage(b, Reply{ID: req.ID, OK: true, Cells: []CellInfo{{Key: "b"}}})
			}
		}
	}()
	cells, err := NewClient(a).List(context.Background())
	if err != nil || len(cells) != 2 || cells[0].Key != "a" || cells[1].Key != "b" {
		t.Fatalf("List = %+v, %v", cells, err)
	}

	c, d := net.Pipe()
	defer c.Close()
	defer d.Close()
	go func() {
		for {
			payload, err := ReadFrame(d, MaxFrame)
			if err != nil {
				return
			}
			req, _ := DecodeRequest(payload)
			WriteMessage(d, Reply{ID: req.ID, OK: true, Next: "a"}) // never advances
		}
	}()
	if _, err := NewClient(c).List(context.Background()); !errors.Is(err, ErrMalformed) {
		t.Fatalf("a cursor that does not advance: %v", err)
	}
}

// FuzzCheckObject holds the strict pre-check to its promise: whatever it
// accepts is one object of known, distinct, exactly spelled keys.
func FuzzCheckObject(f *testing.F) {
	for _, s := range []string{
		`{"id":1,"op":"list"}`, `{"id":1,"id":1}`, `{"Id":1}`, `{"id":"\ud800"}`,
		`{"id":"\ud83d\ude00"}`, `{"id":{"a":[1,{"b":2}]}}`, "{\"id\":\"\xff\"}", `{"id":1}x`,
		`{"id":"\\ud800"}`, `{"id":"\"\u"}`,
	} {
		f.Add([]byte(s))
	}
	known := map[string]bool{"id": true, "op": true}
	f.Fuzz(func(t *testing.T, data []byte) {
		present, err := checkObject(data, known)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatalf("accepted %q, which is not a JSON object: %v", data, err)
		}
		if len(m) != len(present) {
			t.Fatalf("accepted %q with keys %v but JSON sees %d keys", data, present, len(m))
		}
		for k := range m {
			if !known[k] || !present[k] {
				t.Fatalf("accepted %q with key %q", data, k)
			}
		}
		// A U+FFFD after decoding that the peer did not write means
		// something invalid was replaced.
		var decoded any
		json.Unmarshal(data, &decoded)
		wroteFFFD := bytes.Contains(data, []byte("\uFFFD")) || bytes.Contains(bytes.ToLower(data), []byte(`\ufffd`))
		if !utf8.Valid(data) || (!wroteFFFD && strings.ContainsRune(fmt.Sprint(decoded), utf8.RuneError)) {
			t.Fatalf("accepted %q, which holds invalid Unicode", data)
		}
	})
}
