package cell

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	for _, f := range []frame{
		{header: header{kind: kindRequest, id: 1}, name: "see", body: []byte("hello")},
		{header: header{kind: kindRequest, flags: flagStream, id: 2}, name: "up"},
		{header: header{kind: kindReply, id: 3}, body: bytes.Repeat([]byte{9}, 3*readChunk+1)},
		{header: header{kind: kindError, id: 4}, name: "denied", body: []byte("no")},
		{header: header{kind: kindNotify}, name: "note", body: []byte{0}},
		{header: header{kind: kindData, flags: flagEnd, id: 5}},
		{header: header{kind: kindGoAway}},
	} {
		b := encodeFrame(f)
		got, err := newFrameReader(DefaultMaxBody).next(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("kind %d: %v", f.kind, err)
		}
		if got.kind != f.kind || got.id != f.id || got.flags != f.flags || got.name != f.name || !bytes.Equal(got.body, f.body) {
			t.Fatalf("kind %d: round trip gave %+v", f.kind, got.header)
		}
	}
}

func encodeFrame(f frame) []byte {
	b := make([]byte, headerLen, headerLen+len(f.name)+len(f.body))
	f.nameLen = uint16(len(f.name))
	f.size = uint32(len(f.name) + len(f.body))
	f.header.put(b)
	b = append(b, f.name...)
	return append(b, f.body...)
}

// A peer that declares a large body and sends a little makes the reader
// allocate about what arrived, not what was declared.
func TestReadFrameAllocatesWhatArrives(t *testing.T) {
	b := make([]byte, headerLen, headerLen+10)
	header{size: 16 << 20, kind: kindReply, id: 1}.put(b)
	b = append(b, "0123456789"...)
	allocs := testing.AllocsPerRun(10, func() {
		if _, err := newFrameReader(DefaultMaxBody).next(bytes.NewReader(b)); !errors.Is(err, ErrTruncated) {
			t.Fatalf("err = %v, want ErrTruncated", err)
		}
	})
	if allocs > 4 { // the reader, its buffer, the body, the bytes.Reader
		t.Fatalf("%v allocations", allocs)
	}
	var ms1, ms2 runtimeMem
	ms1.read()
	for range 20 {
		newFrameReader(DefaultMaxBody).next(bytes.NewReader(b))
	}
	ms2.read()
	if per := (ms2.total - ms1.total) / 20; per > 2*readChunk+readBuffer {
		t.Fatalf("%d bytes allocated per truncated 16 MiB frame, want at most %d", per, 2*readChunk+readBuffer)
	}
}

func TestParseHeaderRejects(t *testing.T) {
	for name, h := range map[string]header{
		"unknown kind":     {kind: 0, id: 1},
		"oversize":         {kind: kindReply, id: 1, size: 1025},
		"name past size":   {kind: kindRequest, id: 1, size: 1, nameLen: 2},
		"long method":      {kind: kindRequest, id: 1, size: 65, nameLen: 65},
		"request id 0":     {kind: kindRequest, size: 1, nameLen: 1},
		"notify with id":   {kind: kindNotify, id: 1, size: 1, nameLen: 1},
		"reply with name":  {kind: kindReply, id: 1, size: 1, nameLen: 1},
		"goaway with body": {kind: kindGoAway, size: 1},
		"end on a reply":   {kind: kindReply, id: 1, flags: flagEnd},
		"long error":       {kind: kindError, id: 1, size: maxErrorMessage + 1},
	} {
		var b [headerLen]byte
		h.put(b[:])
		if _, err := parseHeader(b[:], 1024); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzReadFrame(f *testing.F) {
	for _, fr := range []frame{
		{header: header{kind: kindRequest, id: 1}, name: "see", body: []byte("hello")},
		{header: header{kind: kindError, id: 4}, name: "denied", body: []byte("no")},
		{header: header{kind: kindData, flags: flagEnd, id: 5}, body: []byte("tail")},
		{header: header{kind: kindGoAway}},
	} {
		f.Add(encodeFrame(fr))
	}
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		rd := newFrameReader(4096)
		// The same bytes cut by deadlines decode alike, whether the
		// bodies are copied or lent from the reader's buffer.
		cut := &stutter{b: b, step: len(b)%7 + 1}
		crd := newFrameReader(4096)
		crd.lend = len(b)%2 == 1
		for {
			fr, err := rd.next(r)
			cfr, cerr := crd.next(cut)
			for errors.Is(cerr, os.ErrDeadlineExceeded) {
				cfr, cerr = crd.next(cut)
			}
			if (err == nil) != (cerr == nil) || err == nil && (cfr.header != fr.header || cfr.name != fr.name || !bytes.Equal(cfr.body, fr.body)) {
				t.Fatalf("cut reads decode otherwise: %v / %v", err, cerr)
			}
			if err != nil {
				if errors.Is(err, io.EOF) && r.Len() != 0 {
					t.Fatalf("EOF with %d bytes left", r.Len())
				}
				return
			}
			if len(fr.body) > 4096 || len(fr.name) > maxMethod {
				t.Fatalf("frame past its bounds: %d body, %d name", len(fr.body), len(fr.name))
			}
			// What was accepted encodes back to the same bytes.
			again := encodeFrame(fr)
			if back, err := newFrameReader(4096).next(bytes.NewReader(again)); err != nil || back.name != fr.name || !bytes.Equal(back.body, fr.body) {
				t.Fatalf("re-encoded frame does not decode alike: %v", err)
			}
		}
	})
}

func FuzzParsePreface(f *testing.F) {
	p := preface{minVer: 1, maxVer: 1, features: featJunction, maxBody: DefaultMaxBody}.bytes()
	f.Add(p[:])
	f.Add([]byte("SYNP\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := parsePreface(b)
		if err != nil {
			return
		}
		if got.minVer > got.maxVer {
			t.Fatalf("accepted versions %d..%d", got.minVer, got.maxVer)
		}
		if again := got.bytes(); !bytes.Equal(again[:], b) {
			t.Fatalf("accepted preface %x encodes as %x", b, again)
		}
	})
}

// runtimeMem reads the process's total allocation.
type runtimeMem struct{ total uint64 }

func (m *runtimeMem) read() {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m.total = ms.TotalAlloc
}

// stutter returns the bytes of b a few at a time, with a deadline error
// between reads, as a socket whose reader is being interrupted does.
type stutter struct {
	b    []byte
	step int
	cut  bool
}

func (s *stutter) Read(p []byte) (int, error) {
	if s.cut = !s.cut; s.cut {
		return 0, os.ErrDeadlineExceeded
	}
	if len(s.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), s.step)], s.b)
	s.b = s.b[n:]
	return n, nil
}

// A read cut by a deadline resumes its frame on the next call, wherever the
// cut fell: in a header, a name, a buffered body or one read past the buffer.
func TestFrameReaderResumes(t *testing.T) {
	frames := []frame{
		{header: header{kind: kindRequest, id: 1}, name: "see", body: []byte("hello")},
		{header: header{kind: kindReply, id: 2}, body: bytes.Repeat([]byte{7}, readBuffer+5)},
		{header: header{kind: kindError, id: 3}, name: "denied", body: []byte("no")},
		{header: header{kind: kindReply, id: 4}, body: bytes.Repeat([]byte{8}, 3*readChunk+1)},
		{header: header{kind: kindGoAway}},
	}
	var stream []byte
	for _, f := range frames {
		stream = append(stream, encodeFrame(f)...)
	}
	for _, step := range []int{1, 7, 4093, 1 << 20} {
		if step == 1 && testing.Short() {
			continue
		}
		r := &stutter{b: stream, step: step}
		rd := newFrameReader(DefaultMaxBody)
		for i, want := range frames {
			var got frame
			var err error
			for {
				if got, err = rd.next(r); !errors.Is(err, os.ErrDeadlineExceeded) {
					break
				}
			}
			if err != nil {
				t.Fatalf("step %d, frame %d: %v", step, i, err)
			}
			if got.kind != want.kind || got.id != want.id || got.name != want.name || !bytes.Equal(got.body, want.body) {
				t.Fatalf("step %d, frame %d: got %+v", step, i, got.header)
			}
		}
		for {
			if _, err := rd.next(r); !errors.Is(err, os.ErrDeadlineExceeded) {
				if !errors.Is(err, io.EOF) {
					t.Fatalf("step %d: after the last frame: %v, want io.EOF", step, err)
				}
				break
			}
		}
	}
}

// Once warm, sending a small frame allocates nothing (the header, name and
// body go into the channel's own buffer), and reading one allocates only
// the body that becomes the caller's: a method name seen last is reused.
func TestSmallFramesDoNotAllocate(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	ch := newChannel(a, DefaultMaxBody, DefaultMaxBody)
	var sent bytes.Buffer
	ch.out = func(bufs *net.Buffers) error {
		for _, p := range *bufs {
			sent.Write(p)
		}
		return nil
	}
	body := make([]byte, 64)
	ctx := context.Background()
	send := func() {
		if err := ch.send(ctx, header{kind: kindNotify}, "echo", body); err != nil {
			t.Fatal(err)
		}
		if err := ch.put(ctx, header{kind: kindRequest, id: 7}, "echo", body, holdBack); err != nil {
			t.Fatal(err)
		}
		if err := ch.flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	send()
	if n := testing.AllocsPerRun(100, func() { sent.Reset(); send() }); n != 0 {
		t.Fatalf("%v allocations sending two small frames", n)
	}

	stream := bytes.Repeat(sent.Bytes(), 101)
	r := bytes.NewReader(stream)
	fr := newFrameReader(DefaultMaxBody)
	next := func() {
		f, err := fr.next(r)
		if err != nil || f.name != "echo" || len(f.body) != len(body) {
			t.Fatalf("read %+v, %v", f.header, err)
		}
	}
	next()
	if n := testing.AllocsPerRun(100, next); n != 1 {
		t.Fatalf("%v allocations reading a small frame, want 1 (its body)", n)
	}
}
