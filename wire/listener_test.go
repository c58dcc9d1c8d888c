package wire

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// unixPair returns two connected Unix stream sockets.
func unixPair(t testing.TB) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "pair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	a, b := conn(fds[0]), conn(fds[1])
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// serveOne reads one request on root and answers it with files attached.
func serveOne(t *testing.T, root *net.UnixConn, files ...*os.File) {
	t.Helper()
	payload, err := ReadFrame(root, MaxFrame)
	if err != nil {
		t.Error(err)
		return
	}
	req, err := DecodeRequest(payload)
	if err != nil || req.Op != OpListener {
		t.Errorf("request %+v, %v", req, err)
		return
	}
	rep := Reply{ID: req.ID, OK: true, Key: "eye"}
	var oob []byte
	var fds []int
	for _, f := range files {
		fds = append(fds, int(f.Fd()))
	}
	if len(fds) > 0 {
		oob = syscall.UnixRights(fds...)
	}
	var buf bytesWriter
	WriteMessage(&buf, rep)
	if _, _, err := root.WriteMsgUnix(buf, oob, nil); err != nil {
		t.Error(err)
	}
}

func TestListenerHandover(t *testing.T) {
	path := filepath.Join(t.TempDir(), "eye.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	f, err := ln.File()
	if err != nil {
		t.Fatal(err)
	}
	ln.Close() // f alone keeps the socket listening, as the root's copy does
	defer f.Close()

	cell, root := unixPair(t)
	go func() {
		payload, err := ReadFrame(root, MaxFrame)
		if err != nil {
			t.Error(err)
			return
		}
		req, _ := DecodeRequest(payload)
		if err := WriteMessageFile(root, Reply{ID: req.ID, OK: true, Key: "eye"}, f); err != nil {
			t.Error(err)
		}
	}()
	got, err := NewClient(cell).Listener(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	// A connection made to the path reaches the handed listener.
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got.SetDeadline(time.Now().Add(5 * time.Second))
	a, err := got.Accept()
	if err != nil {
		t.Fatalf("accept on the handed listener: %v", err)
	}
	a.Close()
	// Closing the cell's copy leaves the socket and its file alone.
	got.Close()
	if _, err := os.Stat(path); err != nil {
		t.Errorf("closing the handed listener removed its file: %v", err)
	}
	if c, err := net.Dial("unix", path); err != nil {
		t.Errorf("the root's copy stopped listening when the cell closed its own: %v", err)
	} else {
		c.Close()
	}
}

func TestListenerBadReplies(t *testing.T) {
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	for _, tc := range []struct {
		name  string
		files []*os.File
	}{
		{"no descriptor", nil},
		{"two descriptors", []*os.File{devnull, devnull}},
		{"not a socket", []*os.File{devnull}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cell, root := unixPair(t)
			go serveOne(t, root, tc.files...)
			_, err := NewClient(cell).Listener(context.Background())
			if !errors.Is(err, ErrNoListener) {
				t.Errorf("err = %v, want ErrNoListener", err)
			}
		})
	}
	t.Run("error reply", func(t *testing.T) {
		cell, root := unixPair(t)
		go func() {
			payload, _ := ReadFrame(root, MaxFrame)
			req, _ := DecodeRequest(payload)
			WriteMessage(root, Reply{ID: req.ID, Error: &Error{Code: CodeNotFound, Message: "none"}})
		}()
		if _, err := NewClient(cell).Listener(context.Background()); !IsCode(err, CodeNotFound) {
			t.Errorf("err = %v, want not_found", err)
		}
	})
	t.Run("root gone", func(t *testing.T) {
		cell, root := unixPair(t)
		go func() { ReadFrame(root, MaxFrame); root.Close() }()
		if _, err := NewClient(cell).Listener(context.Background()); err == nil {
			t.Error("no error when the root closed the connection")
		}
	})
}

// FuzzReadFrameFile: whatever bytes arrive, ReadFrameFile agrees with
// ReadFrame on the payload and the error class.
func FuzzReadFrameFile(f *testing.F) {
	f.Add(frame([]byte(`{"id":1,"ok":true}`)))
	f.Add([]byte{0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add(append([]byte{0, 0, 0, 9}, "abc"...))
	f.Add(frame(nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, b := unixPair(t)
		go func() {
			a.Write(data)
			a.CloseWrite()
		}()
		got, files, err := ReadFrameFile(b, MaxFrame)
		want, wantErr := ReadFrame(bytes.NewReader(data), MaxFrame)
		if len(files) != 0 {
			t.Fatalf("descriptors from plain bytes: %v", files)
		}
		var o1, o2 *OversizeError
		switch {
		case (err == nil) != (wantErr == nil):
			t.Fatalf("ReadFrameFile err %v, ReadFrame err %v", err, wantErr)
		case err == nil && !bytes.Equal(got, want):
			t.Fatalf("payload %q, want %q", got, want)
		case errors.As(wantErr, &o2) != errors.As(err, &o1):
			t.Fatalf("ReadFrameFile err %v, ReadFrame err %v", err, wantErr)
		case errors.Is(wantErr, ErrTruncated) != errors.Is(err, ErrTruncated):
			t.Fatalf("ReadFrameFile err %v, ReadFrame err %v", err, wantErr)
		}
	})
}
