// Command testcell is the cell the integration tests launch under many names:
// it serves requests that try things a sandbox must forbid or allow, and
// reports what happened, so that the tests observe the sandbox from inside.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/cellproject/cell/cell"
)

func main() {
	idle := flag.Duration("idle", time.Minute, "exit after this long without a connection")
	block := flag.Bool("block", false, "only sleep until killed (a child for the fork probe)")
	once := flag.String("once", "", "start only once: exit 1 when this file exists, else create it (an upgrade that fails)")
	flag.Parse()
	if *block {
		select {}
	}
	if *once != "" {
		f, err := os.OpenFile(*once, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			fmt.Fprintln(os.Stderr, "testcell: started once already:", err)
			os.Exit(1)
		}
		f.Close()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	sess, err := cell.Join(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testcell:", err)
		os.Exit(1)
	}
	h := cell.HandlerFunc(func(ctx context.Context, method string, body []byte) ([]byte, error) {
		return handle(ctx, sess, method, string(body))
	})
	if err := cell.Serve(ctx, synapseHandler(sess, h), synapseOptions(cell.ServeOptions{Session: sess, IdleTimeout: *idle})); err != nil {
		fmt.Fprintln(os.Stderr, "testcell:", err)
		os.Exit(1)
	}
}

// handle runs one probe. Every answer is "ok" or the error text, so that the
// test decides what it expected.
func handle(ctx context.Context, sess *cell.Session, method, arg string) ([]byte, error) {
	switch method {
	case "vandal":
		return vandal(arg)
	case "crash":
		os.Exit(3)
		return nil, nil
	case "hog":
		// Allocate and touch memory until the limit kills the cell; an
		// answer means no limit stopped it.
		var chunks [][]byte
		for i := 0; i < 256; i++ {
			c := make([]byte, 8<<20)
			for j := range c {
				if j%4096 == 0 {
					c[j] = 1
				}
			}
			chunks = append(chunks, c)
		}
		return []byte(fmt.Sprintf("survived %d MiB", len(chunks)*8)), nil
	case "fork":
		n, err := strconv.Atoi(arg)
		if err != nil {
			return nil, err
		}
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		started := 0
		var firstErr error
		for i := 0; i < n; i++ {
			p, err := os.StartProcess(self, []string{self, "-block"}, &os.ProcAttr{})
			if err != nil {
				firstErr = err
				break
			}
			defer p.Kill()
			started++
		}
		return []byte(fmt.Sprintf("started %d: %v", started, firstErr)), nil
	case "pid":
		return []byte(strconv.Itoa(os.Getpid())), nil
	case "env":
		return json.Marshal(os.Environ())
	case "read":
		_, err := os.ReadFile(arg)
		return result(err), nil
	case "write":
		err := os.WriteFile(arg, []byte("written by testcell\n"), 0o600)
		return result(err), nil
	case "append":
		f, err := os.OpenFile(arg, os.O_WRONLY|os.O_APPEND, 0)
		if err == nil {
			_, err = f.Write([]byte("x"))
			f.Close()
		}
		return result(err), nil
	case "remove":
		return result(os.Remove(arg)), nil
	case "dial":
		conn, err := net.DialTimeout("tcp", arg, 2*time.Second)
		if err == nil {
			conn.Close()
		}
		return result(err), nil
	case "procs":
		entries, err := os.ReadDir("/proc")
		if err != nil {
			return nil, err
		}
		var pids []int
		for _, e := range entries {
			if pid, err := strconv.Atoi(e.Name()); err == nil {
				pids = append(pids, pid)
			}
		}
		return json.Marshal(pids)
	case "grow":
		conn, err := sess.Grow(ctx, arg)
		if err != nil {
			return result(err), nil
		}
		defer conn.Close()
		pid, err := conn.Call(ctx, "pid", nil)
		if err != nil {
			return result(err), nil
		}
		return append([]byte("ok "), pid...), nil
	case "exec":
		// A sandbox that lets a cell start a host program defeats the broker.
		_, err := os.StartProcess(arg, []string{arg}, &os.ProcAttr{})
		return result(err), nil
	case "capsid":
		return capsidProbe(arg)
	default:
		return abuse(ctx, sess, method, arg)
	}
}

func result(err error) []byte {
	if err == nil {
		return []byte("ok")
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return []byte("error " + errno.Error())
	}
	return []byte("error " + err.Error())
}
