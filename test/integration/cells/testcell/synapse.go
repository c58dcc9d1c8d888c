package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/cellproject/cell/cell"
)

// The synapse probes (test/integration/synapse_test.go): methods named
// syn-* are answered here, with raw bodies, before the probes of main.go.

var noJunction = flag.Bool("no-junction", false, "refuse gap junctions (the fallback test)")

// boot tells instances apart across a restart: pids repeat in sandboxes.
var boot = func() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}()

// synapseOptions is how testcell serves: junctions offered unless refused.
func synapseOptions(o cell.ServeOptions) cell.ServeOptions {
	o.Junction = !*noJunction
	return o
}

// synapseHandler answers syn-* methods and streams, and hands the rest to h.
func synapseHandler(sess *cell.Session, h cell.Handler) cell.Handler {
	return synapse{sess: sess, next: h}
}

type synapse struct {
	sess *cell.Session
	next cell.Handler
}

func (s synapse) Handle(ctx context.Context, method string, body []byte) ([]byte, error) {
	switch method {
	case "syn-echo":
		return body, nil
	case "syn-boot":
		return []byte(boot), nil
	case "syn-hold":
		d, err := time.ParseDuration(string(body))
		if err != nil {
			return nil, err
		}
		select {
		case <-time.After(d):
			return []byte("held " + boot), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	case "syn-make":
		n, err := strconv.Atoi(string(body))
		if err != nil {
			return nil, err
		}
		out := make([]byte, n)
		for i := range out {
			out[i] = byte(i * 31)
		}
		return out, nil
	case "syn-grow":
		return s.grow(ctx, string(body))
	}
	return s.next.Handle(ctx, method, body)
}

// grow reaches another cell over a gap junction and checks a 1 MiB round
// trip there: cell to cell, sandbox to sandbox. The answer is
// "junction=<bool> ok" or the error.
func (s synapse) grow(ctx context.Context, name string) ([]byte, error) {
	c, err := s.sess.Grow(ctx, name, cell.WithJunction())
	if err != nil {
		return []byte("error " + err.Error()), nil
	}
	defer c.Close()
	msg := []byte(strings.Repeat("synapse!", 128<<10))
	got, err := c.Call(ctx, "syn-echo", msg)
	if err != nil {
		return []byte("error " + err.Error()), nil
	}
	if string(got) != string(msg) {
		return []byte("error: the echo differs"), nil
	}
	return []byte(fmt.Sprintf("junction=%v ok", c.Junction())), nil
}

// HandleStream answers a streamed syn-sum with "<bytes> <sha256>".
func (s synapse) HandleStream(ctx context.Context, method string, body io.Reader) ([]byte, error) {
	if method != "syn-sum" {
		return nil, cell.UnknownMethod(method)
	}
	sum := sha256.New()
	n, err := io.Copy(sum, body)
	if err != nil {
		return nil, err
	}
	return []byte(fmt.Sprintf("%d %x", n, sum.Sum(nil))), nil
}
